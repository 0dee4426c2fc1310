"""Vault tables: items (files), claim links and the claim access log.

Kept apart from `storage.models` so the vault can evolve on its own; the tables share the one
`Base.metadata` (and its naming convention), so Alembic sees them together.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId
from storage.types import UTCDateTime


class VaultKind(enum.StrEnum):
    """How Telegram knows the file, which decides how it is sent back (photo, video, …)."""

    document = "document"
    photo = "photo"
    video = "video"
    audio = "audio"
    voice = "voice"
    animation = "animation"
    # Not files: a bundle of other items (a batch link) and a destination URL (a short link).
    batch = "batch"
    url = "url"

    @property
    def is_file(self) -> bool:
        return self not in (VaultKind.batch, VaultKind.url)


FILE_KINDS = tuple(k.value for k in VaultKind if k.is_file)


class ClaimerKind(enum.StrEnum):
    telegram = "telegram"  # claimer_id is the Telegram user id
    http = "http"  # claimer_id is the client address


class ClaimOutcome(enum.StrEnum):
    delivered = "delivered"  # a use was spent
    redelivered = "redelivered"  # the same claimer again; no use spent
    denied_malformed = "denied:malformed"
    denied_unknown = "denied:unknown"
    denied_expired = "denied:expired"
    denied_used_up = "denied:used_up"
    denied_revoked = "denied:revoked"
    denied_deleted = "denied:deleted"
    denied_telegram_only = "denied:telegram_only"  # HTTP asked for a file we hold no bytes of
    denied_rate_limited = "denied:rate_limited"  # too many failed attempts; code not looked up
    # Written after a `delivered` / `redelivered` row when the file then did not reach the
    # person (the outbox gave up on the send); the use stays theirs, a re-claim is free.
    undelivered_source = "undelivered:source"  # the stored copy could not be read
    undelivered_unreachable = "undelivered:unreachable"  # bot blocked, chat gone
    undelivered_rejected = "undelivered:rejected"  # Telegram refused the file
    undelivered_gave_up = "undelivered:gave_up"  # Telegram kept failing
    undelivered_unknown = "undelivered:unknown"  # sent, but the answer was lost

    @property
    def delivers(self) -> bool:
        return self in (ClaimOutcome.delivered, ClaimOutcome.redelivered)


class VaultItem(Base):
    """One file. `blob_key` None means Telegram holds the only copy (sent by `tg_file_id`)."""

    __tablename__ = "vault_items"
    __table_args__ = (
        # Same bytes, one live item per workspace (deleted items do not block a re-upload).
        Index(
            "uq_vault_items_tenant_sha256_live",
            "tenant_id",
            "sha256",
            unique=True,
            sqlite_where=text("deleted_at IS NULL AND sha256 IS NOT NULL"),
            postgresql_where=text("deleted_at IS NULL AND sha256 IS NOT NULL"),
        ),
        # Telegram-only items have no sha256; Telegram's file_unique_id is their identity.
        Index(
            "uq_vault_items_tenant_tg_unique_live",
            "tenant_id",
            "tg_file_unique_id",
            unique=True,
            sqlite_where=text(
                "deleted_at IS NULL AND blob_key IS NULL AND tg_file_unique_id IS NOT NULL"
            ),
            postgresql_where=text(
                "deleted_at IS NULL AND blob_key IS NULL AND tg_file_unique_id IS NOT NULL"
            ),
        ),
        Index("ix_vault_items_tenant_unique_id", "tenant_id", "tg_file_unique_id"),
        # Listings: newest first per workspace, optionally by kind.
        Index("ix_vault_items_tenant_created", "tenant_id", "created_at"),
        Index("ix_vault_items_tenant_kind", "tenant_id", "kind"),
        Index("ix_vault_items_blob_key", "blob_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    sha256: Mapped[str | None] = mapped_column(String(64))  # None: bytes never fetched
    size: Mapped[int | None] = mapped_column(BigInteger)  # None: Telegram did not say
    mime: Mapped[str] = mapped_column(String(127))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    blob_key: Mapped[str | None] = mapped_column(String(80))
    nsfw: Mapped[bool] = mapped_column(Boolean, default=False)
    tg_file_id: Mapped[str | None] = mapped_column(String(255))
    tg_file_unique_id: Mapped[str | None] = mapped_column(String(64))
    uploaded_by: Mapped[int | None] = mapped_column(BigInteger)  # Telegram user id
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    target_url: Mapped[str | None] = mapped_column(Text)  # kind `url`: where a click goes

    @property
    def is_file(self) -> bool:
        return self.kind not in (VaultKind.batch, VaultKind.url)


class VaultBatchMember(Base):
    """An item of a batch (a `batch` item): a batch link delivers its members, in order."""

    __tablename__ = "vault_batch_members"
    __table_args__ = (
        UniqueConstraint("batch_id", "item_id", name="uq_vault_batch_members_item"),
        Index("ix_vault_batch_members_item", "item_id"),
    )

    batch_id: Mapped[int] = mapped_column(
        ForeignKey("vault_items.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("vault_items.id", ondelete="CASCADE"))


class VaultLink(Base):
    """A claim link. Only `code_hash` (sha256 of the code) is stored, never the code."""

    __tablename__ = "vault_links"
    __table_args__ = (
        Index("ix_vault_links_tenant_item", "tenant_id", "item_id"),
        Index("ix_vault_links_tenant_expires", "tenant_id", "expires_at"),
        Index("ix_vault_links_expires_revoked", "expires_at", "revoked_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("vault_items.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    max_uses: Mapped[int] = mapped_column(Integer)
    used_count: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_by: Mapped[int | None] = mapped_column(BigInteger)  # None with revoked_at: system
    protect_content: Mapped[bool] = mapped_column(Boolean, default=False)
    # the HTTP claim page shows kind and size but not the name (the download still carries it)
    hide_name: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    auto_delete_seconds: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    @property
    def uses_left(self) -> int:
        return max(0, self.max_uses - self.used_count)

    def state(self, now: datetime) -> str:
        """`active`, `revoked`, `expired` or `used_up` (first that applies, in that order)."""
        if self.revoked_at is not None:
            return "revoked"
        if now >= self.expires_at:
            return "expired"
        if self.used_count >= self.max_uses:
            return "used_up"
        return "active"


class VaultClaim(Base):
    """The access log: every claim attempt, delivered or denied. Never holds the code."""

    __tablename__ = "vault_claims"
    __table_args__ = (
        # One spending delivery per claimer and link; a second one is a `redelivered` row.
        # The unique index is what keeps two simultaneous taps by one person to one use.
        Index(
            "uq_vault_claims_delivered_once",
            "link_id",
            "claimer_kind",
            "claimer_id",
            unique=True,
            sqlite_where=text("outcome = 'delivered'"),
            postgresql_where=text("outcome = 'delivered'"),
        ),
        Index("ix_vault_claims_link_claimer", "link_id", "claimer_kind", "claimer_id"),
        Index("ix_vault_claims_item_at", "item_id", "at"),
        Index("ix_vault_claims_tenant_at", "tenant_id", "at"),
        Index("ix_vault_claims_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # NULL for codes that match no link (malformed / unknown): they belong to no workspace.
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    link_id: Mapped[int | None] = mapped_column(ForeignKey("vault_links.id", ondelete="SET NULL"))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("vault_items.id", ondelete="SET NULL"))
    claimer_kind: Mapped[str] = mapped_column(String(16))
    claimer_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class VaultAlbumPart(Base):
    """A file that arrived as part of an album (one Telegram `media_group_id`), so the whole
    album can be linked at once. Old rows are pruned with the access log."""

    __tablename__ = "vault_album_parts"
    __table_args__ = (Index("ix_vault_album_parts_created", "created_at"),)

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    media_group_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    item_id: Mapped[int] = mapped_column(
        ForeignKey("vault_items.id", ondelete="CASCADE"), primary_key=True
    )
    message_id: Mapped[int] = mapped_column(BigInteger)  # the album's order
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
