"""Reddit tables: connected accounts, the post queue, the inbox, backfill cursors, pacing.

Kept apart from `storage.models` like the vault tables; they share `Base.metadata` (and its
naming convention), so Alembic sees them together.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

import storage.vault_models  # noqa: F401  (reddit_posts.vault_item_id points at vault_items)
from storage.models import Base, BigId
from storage.types import UTCDateTime

DEFAULT_POSTS_PER_DAY = 10
DEFAULT_MIN_GAP_MINUTES = 30


class AccountStatus(enum.StrEnum):
    active = "active"
    paused = "paused"  # an operator paused it
    suspended = "suspended"  # Reddit says the account is suspended
    auth_failed = "auth_failed"  # Reddit refused the stored credentials


class AuthKind(enum.StrEnum):
    script = "script"  # password grant of a script app the account is a developer of
    refresh_token = "refresh_token"  # web/installed app the account authorised once
    none = "none"  # no credentials: dry run only


class PostKind(enum.StrEnum):
    self = "self"
    link = "link"
    image = "image"
    # A reply (/reply): `parent_fullname` is the post or comment it answers, `title` that
    # post's title, `url` the parent's permalink, `body` the markdown text.
    comment = "comment"


class PostStatus(enum.StrEnum):
    draft = "draft"
    pending_approval = "pending_approval"
    queued = "queued"
    publishing = "publishing"  # a submit may be on its way; never resend without looking
    published = "published"
    failed = "failed"
    cancelled = "cancelled"


class PostSource(enum.StrEnum):
    opsdeck = "opsdeck"  # composed and queued here
    history = "history"  # imported by the submission-history backfill


class RedditAccount(Base):
    """One of the team's own Reddit accounts. Secrets are SecretBox tokens, never plaintext."""

    __tablename__ = "reddit_accounts"
    __table_args__ = (
        # Reddit names are case-insensitive; `username_key` is the lowercased name.
        UniqueConstraint("tenant_id", "username_key", name="uq_reddit_accounts_tenant_username"),
        Index("ix_reddit_accounts_status", "status"),
        Index("ix_reddit_accounts_client_id", "client_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    username: Mapped[str] = mapped_column(String(32))
    username_key: Mapped[str] = mapped_column(String(32))
    auth_kind: Mapped[str] = mapped_column(String(16))
    client_id: Mapped[str | None] = mapped_column(String(64))
    client_secret_enc: Mapped[str | None] = mapped_column(Text)
    password_enc: Mapped[str | None] = mapped_column(Text)
    refresh_token_enc: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(String(255))  # None: the configured one
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Reddit asked this account to wait (RATELIMIT): nothing is submitted before this.
    cooldown_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    link_karma: Mapped[int | None] = mapped_column(Integer)
    comment_karma: Mapped[int | None] = mapped_column(Integer)
    # Pacing: at most `posts_per_day` in any 24 h and `min_gap_minutes` apart (0 = no rule).
    posts_per_day: Mapped[int] = mapped_column(Integer, default=DEFAULT_POSTS_PER_DAY)
    min_gap_minutes: Mapped[int] = mapped_column(Integer, default=DEFAULT_MIN_GAP_MINUTES)
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    @property
    def has_credentials(self) -> bool:
        return self.auth_kind != AuthKind.none and bool(self.client_id)

    @property
    def is_dry_run(self) -> bool:
        """Validated fully, nothing sent: marked dry-run, or nothing to log in with."""
        return self.dry_run or not self.has_credentials


class RedditPost(Base):
    """A post from draft to published (or imported from the account's history)."""

    __tablename__ = "reddit_posts"
    __table_args__ = (
        # One row per Reddit post and account; NULL fullnames (not yet published) don't clash.
        UniqueConstraint("account_id", "fullname", name="uq_reddit_posts_account_fullname"),
        Index("ix_reddit_posts_account_status_when", "account_id", "status", "scheduled_for"),
        Index("ix_reddit_posts_tenant_status_when", "tenant_id", "status", "scheduled_for"),
        Index("ix_reddit_posts_tenant_sub_status", "tenant_id", "subreddit_key", "status"),
        Index("ix_reddit_posts_published_at", "status", "published_at"),
        Index("ix_reddit_posts_job_id", "job_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("reddit_accounts.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16), default=PostSource.opsdeck)
    subreddit: Mapped[str] = mapped_column(String(32))
    subreddit_key: Mapped[str] = mapped_column(String(32))  # lowercased, for pacing
    kind: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    parent_fullname: Mapped[str | None] = mapped_column(String(32))  # comments: t3_… or t1_…
    # An image comes from a vault item, or from bytes stored under `image_blob_key`.
    vault_item_id: Mapped[int | None] = mapped_column(
        ForeignKey("vault_items.id", ondelete="SET NULL")
    )
    image_blob_key: Mapped[str | None] = mapped_column(String(80))
    image_name: Mapped[str | None] = mapped_column(String(255))
    image_mime: Mapped[str | None] = mapped_column(String(127))
    flair_id: Mapped[str | None] = mapped_column(String(36))
    flair_text: Mapped[str | None] = mapped_column(String(64))
    nsfw: Mapped[bool] = mapped_column(Boolean, default=False)
    spoiler: Mapped[bool] = mapped_column(Boolean, default=False)
    send_replies: Mapped[bool] = mapped_column(Boolean, default=True)
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When pacing (or Reddit) moved the post: the time the operator asked for and why.
    requested_for: Mapped[datetime | None] = mapped_column(UTCDateTime())
    pacing_note: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    requires_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    # The first time a submit went out, and whether Reddit accepted one whose post we have not
    # seen yet (image posts): both mean "look before sending again".
    attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reddit_accepted: Mapped[bool] = mapped_column(Boolean, default=False)
    fullname: Mapped[str | None] = mapped_column(String(32))
    permalink: Mapped[str | None] = mapped_column(Text)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)  # "published" without sending
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    score: Mapped[int | None] = mapped_column(Integer)
    num_comments: Mapped[int | None] = mapped_column(Integer)
    upvote_ratio: Mapped[float | None] = mapped_column(Float)
    removed_by_category: Mapped[str | None] = mapped_column(String(32))
    removal_notified: Mapped[bool] = mapped_column(Boolean, default=False)
    # Deleted on Reddit: title/body/url/image were wiped from our copy at this time.
    content_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Missing from /api/info since: the account cannot see the post's subreddit any more
    # (private, quarantined, banned from). Our copy is kept; cleared when it shows again.
    hidden_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    hidden_notified: Mapped[bool] = mapped_column(Boolean, default=False)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error_message: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RedditInboxMessage(Base):
    """A private message or comment reply from an account's inbox."""

    __tablename__ = "reddit_inbox"
    __table_args__ = (
        UniqueConstraint("account_id", "fullname", name="uq_reddit_inbox_account_fullname"),
        Index("ix_reddit_inbox_tenant_notified", "tenant_id", "notified"),
        Index("ix_reddit_inbox_account_created", "account_id", "created_utc"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("reddit_accounts.id", ondelete="CASCADE"))
    fullname: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(4))  # t1 comment reply, t4 private message
    author: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    subreddit: Mapped[str | None] = mapped_column(String(32))
    context: Mapped[str | None] = mapped_column(Text)
    link_title: Mapped[str | None] = mapped_column(Text)
    was_comment: Mapped[bool] = mapped_column(Boolean, default=False)
    created_utc: Mapped[datetime | None] = mapped_column(UTCDateTime())
    unread_on_reddit: Mapped[bool] = mapped_column(Boolean, default=False)
    seen: Mapped[bool] = mapped_column(Boolean, default=False)  # an operator opened it
    notified: Mapped[bool] = mapped_column(Boolean, default=False)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RedditCursor(Base):
    """Where a backfill of one account stopped, so the next run resumes there."""

    __tablename__ = "reddit_cursors"
    __table_args__ = (
        UniqueConstraint("account_id", "kind", name="uq_reddit_cursors_account_kind"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("reddit_accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # "submitted", "inbox"
    cursor: Mapped[str | None] = mapped_column(String(64))  # Reddit's `after`; None = top
    progress: Mapped[int] = mapped_column(Integer, default=0)  # items seen this pass
    passes: Mapped[int] = mapped_column(Integer, default=0)  # full passes completed
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SubredditPacing(Base):
    """Minimum gap between the workspace's posts to one subreddit (all accounts together)."""

    __tablename__ = "reddit_subreddit_pacing"
    __table_args__ = (
        UniqueConstraint("tenant_id", "subreddit_key", name="uq_reddit_subreddit_pacing_sub"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    subreddit: Mapped[str] = mapped_column(String(32))
    subreddit_key: Mapped[str] = mapped_column(String(32))
    min_gap_minutes: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
