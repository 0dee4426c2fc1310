"""A post as the chat shows it, and what queueing one decided."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.reddit_ops.pacing import PacingDecision
from core.reddit_ops.preflight import Draft
from storage.reddit_models import RedditPost
from storage.repositories import reddit as repo


@dataclass(frozen=True, slots=True)
class PostView:
    """A post as the chat shows it."""

    id: int
    account_id: int
    username: str | None
    source: str
    subreddit: str
    kind: str
    title: str
    body: str | None
    url: str | None
    vault_item_id: int | None
    image_blob_key: str | None
    image_name: str | None
    flair_id: str | None
    flair_text: str | None
    nsfw: bool
    spoiler: bool
    scheduled_for: datetime | None
    requested_for: datetime | None
    pacing_note: str | None
    status: str
    requires_approval: bool
    job_id: int | None
    fullname: str | None
    permalink: str | None
    dry_run: bool
    published_at: datetime | None
    score: int | None
    num_comments: int | None
    upvote_ratio: float | None
    removed_by_category: str | None
    content_deleted: bool
    hidden_since: datetime | None  # missing from /api/info: the account cannot see it now
    last_error_code: str | None
    last_error_message: str | None
    created_by: int | None
    created_at: datetime
    updated_at: datetime

    @property
    def has_image(self) -> bool:
        return self.vault_item_id is not None or self.image_blob_key is not None

    @property
    def editable(self) -> bool:
        return self.status in repo.EDITABLE

    @property
    def draft(self) -> Draft:
        return Draft(
            subreddit=self.subreddit,
            kind=self.kind,
            title=self.title,
            body=self.body,
            url=self.url,
            has_image=self.has_image,
            flair_id=self.flair_id,
            flair_text=self.flair_text,
            nsfw=self.nsfw,
            spoiler=self.spoiler,
        )

    @classmethod
    def of(cls, post: RedditPost, username: str | None = None) -> PostView:
        return cls(
            id=post.id,
            account_id=post.account_id,
            username=username,
            source=post.source,
            subreddit=post.subreddit,
            kind=post.kind,
            title=post.title,
            body=post.body,
            url=post.url,
            vault_item_id=post.vault_item_id,
            image_blob_key=post.image_blob_key,
            image_name=post.image_name,
            flair_id=post.flair_id,
            flair_text=post.flair_text,
            nsfw=post.nsfw,
            spoiler=post.spoiler,
            scheduled_for=post.scheduled_for,
            requested_for=post.requested_for,
            pacing_note=post.pacing_note,
            status=post.status,
            requires_approval=post.requires_approval,
            job_id=post.job_id,
            fullname=post.fullname,
            permalink=post.permalink,
            dry_run=post.dry_run,
            published_at=post.published_at,
            score=post.score,
            num_comments=post.num_comments,
            upvote_ratio=post.upvote_ratio,
            removed_by_category=post.removed_by_category,
            content_deleted=post.content_deleted_at is not None,
            hidden_since=post.hidden_since,
            last_error_code=post.last_error_code,
            last_error_message=post.last_error_message,
            created_by=post.created_by,
            created_at=post.created_at,
            updated_at=post.updated_at,
        )


@dataclass(frozen=True, slots=True)
class QueueResult:
    """A queued (or moved) post, where pacing put it and why, and its submit job."""

    post: PostView
    decision: PacingDecision
    job_id: int | None


def draft_of(post: RedditPost) -> Draft:
    return Draft(
        subreddit=post.subreddit,
        kind=post.kind,
        title=post.title,
        body=post.body,
        url=post.url,
        has_image=post.vault_item_id is not None or post.image_blob_key is not None,
        flair_id=post.flair_id,
        flair_text=post.flair_text,
        nsfw=post.nsfw,
        spoiler=post.spoiler,
    )
