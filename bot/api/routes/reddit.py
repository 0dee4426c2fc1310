"""The Reddit queue over HTTP: accounts and their health, posts (queue with the chat's
pre-flight and pacing, or rehearse with `dry_run`), reschedule, cancel, backfills."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from bot.api.models import MAX_ID, PageQuery, Strict, json_int
from bot.api.registry import Call, Registry
from core.errors import InvalidInput
from core.reddit_ops import BACKFILL_SUBMISSIONS, INBOX, REFRESH_STATS
from storage.models import Role
from storage.reddit_models import PostStatus
from storage.repositories import reddit as repo

BACKFILLS = {"history": BACKFILL_SUBMISSIONS, "stats": REFRESH_STATS, "inbox": INBOX}
LISTS: dict[str, tuple[str, ...]] = {
    "upcoming": tuple(repo.UPCOMING),
    **{s.value: (s.value,) for s in PostStatus},
}


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    auth_kind: str
    client_id: str | None
    has_credentials: bool
    dry_run: bool = Field(description="Validated, never sent: no credentials, or marked so.")
    status: str
    status_reason: str | None
    cooldown_until: datetime | None
    last_check_at: datetime | None
    link_karma: int | None
    comment_karma: int | None
    posts_per_day: int
    min_gap_minutes: int


class AccountList(BaseModel):
    items: list[AccountOut]


class AccountPath(Strict):
    account_id: int = Field(ge=1, le=MAX_ID)


class PostPath(Strict):
    post_id: int = Field(ge=1, le=MAX_ID)


class JobQueued(BaseModel):
    job_id: int | None = Field(description="null when the same job is already queued.")


class BackfillPath(AccountPath):
    what: Literal["history", "stats", "inbox"]


class PostOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: int
    username: str | None
    subreddit: str
    kind: str
    title: str
    body: str | None
    url: str | None
    vault_item_id: int | None
    flair_id: str | None
    flair_text: str | None
    nsfw: bool
    spoiler: bool
    status: str
    scheduled_for: datetime | None
    requested_for: datetime | None
    pacing_note: str | None
    requires_approval: bool
    job_id: int | None
    fullname: str | None
    permalink: str | None
    dry_run: bool
    published_at: datetime | None
    score: int | None
    num_comments: int | None
    removed_by_category: str | None
    last_error_code: str | None
    last_error_message: str | None
    created_at: datetime
    updated_at: datetime


class PostList(BaseModel):
    items: list[PostOut]
    total: int
    limit: int
    offset: int


class PostQuery(PageQuery):
    status: Literal[tuple(LISTS)] = "upcoming"  # type: ignore[valid-type]
    account_id: int | None = Field(None, ge=1, le=MAX_ID)


class Finding(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    level: str
    code: str
    text: str


class PostIn(Strict):
    account_id: json_int(ge=1, le=MAX_ID)  # type: ignore[valid-type]
    subreddit: str = Field(min_length=2, max_length=64)
    kind: Literal["self", "link", "image"]
    title: str = Field(min_length=1, max_length=300)
    body: str | None = Field(None, max_length=40_000)
    url: str | None = Field(None, max_length=2000)
    vault_item_id: json_int(ge=1, le=MAX_ID) | None = None  # type: ignore[valid-type]
    flair_id: str | None = Field(None, max_length=64)
    flair_text: str | None = Field(None, max_length=64)
    nsfw: bool = False
    spoiler: bool = False
    send_replies: bool = True
    when: AwareDatetime | None = Field(None, description="UTC or with an offset; null = now.")
    requires_approval: bool = False
    dry_run: bool = Field(
        False, description="Check and plan only: pre-flight and pacing answer, nothing saved."
    )


class QueuedOut(BaseModel):
    dry_run: bool
    post: PostOut | None = Field(description="null on a dry run: nothing was saved.")
    scheduled_for: datetime
    moved: bool
    pacing_note: str | None
    preflight: list[Finding]


class RescheduleIn(Strict):
    when: AwareDatetime


def post_out(view: Any) -> PostOut:
    return PostOut.model_validate(view)


def register(reg: Registry) -> None:
    @reg.route(
        "GET",
        "/reddit/accounts",
        summary="Reddit accounts",
        tag="reddit",
        role=Role.viewer,
        response=AccountList,
    )
    async def list_accounts(call: Call[Any, Any, Any]) -> AccountList:
        views = await call.services.reddit_accounts.list(call.actor)
        return AccountList(items=[AccountOut.model_validate(v) for v in views])

    @reg.route(
        "GET",
        "/reddit/accounts/{account_id:\\d+}",
        summary="A Reddit account and its health",
        tag="reddit",
        role=Role.viewer,
        response=AccountOut,
        path_params=AccountPath,
    )
    async def get_account(call: Call[AccountPath, Any, Any]) -> AccountOut:
        view = await call.services.reddit_accounts.get(call.actor, call.path.account_id)
        return AccountOut.model_validate(view)

    @reg.route(
        "POST",
        "/reddit/accounts/{account_id:\\d+}/check",
        summary="Check an account's health now",
        tag="reddit",
        role=Role.operator,
        response=JobQueued,
        path_params=AccountPath,
    )
    async def check_account(call: Call[AccountPath, Any, Any]) -> JobQueued:
        job_id = await call.services.reddit_accounts.check_now(call.actor, call.path.account_id)
        return JobQueued(job_id=job_id)

    @reg.route(
        "POST",
        "/reddit/accounts/{account_id:\\d+}/backfill/{what}",
        summary="Backfill history, refresh stats or read the inbox now",
        tag="reddit",
        role=Role.operator,
        response=JobQueued,
        path_params=BackfillPath,
    )
    async def backfill(call: Call[BackfillPath, Any, Any]) -> JobQueued:
        actor = call.actor
        actor.require(Role.operator, "run Reddit backfills")
        view = await call.services.reddit_accounts.get(actor, call.path.account_id)
        job_id = await call.services.jobs.submit(
            actor.tenant_id,
            BACKFILLS[call.path.what],
            {"account_id": view.id},
            actor=actor,
            max_attempts=3,
        )
        return JobQueued(job_id=job_id)

    @reg.route(
        "GET",
        "/reddit/posts",
        summary="Posts by status",
        tag="reddit",
        role=Role.viewer,
        response=PostList,
        query=PostQuery,
    )
    async def list_posts(call: Call[Any, PostQuery, Any]) -> PostList:
        q, posts = call.query, call.services.reddit_posts
        statuses = LISTS[q.status]
        page = {"account_id": q.account_id, "limit": q.limit, "offset": q.offset}
        if q.status == "upcoming":  # soonest first
            views = await posts.upcoming(call.actor, **page)
        else:  # newest first
            views = await posts.recent(call.actor, statuses=statuses, **page)
        total = await posts.count(call.actor, statuses, q.account_id)
        return PostList(
            items=[post_out(v) for v in views], total=total, limit=q.limit, offset=q.offset
        )

    @reg.route(
        "GET",
        "/reddit/posts/{post_id:\\d+}",
        summary="A post",
        tag="reddit",
        role=Role.viewer,
        response=PostOut,
        path_params=PostPath,
    )
    async def get_post(call: Call[PostPath, Any, Any]) -> PostOut:
        return post_out(await call.services.reddit_posts.get(call.actor, call.path.post_id))

    @reg.route(
        "POST",
        "/reddit/posts",
        summary="Queue a post (or rehearse it with dry_run)",
        tag="reddit",
        role=Role.operator,
        response=QueuedOut,
        status=201,
        body=PostIn,
        problems=(404,),  # the account or vault item named in the body
    )
    async def queue_post(call: Call[Any, Any, PostIn]) -> QueuedOut:
        posts, b = call.services.reddit_posts, call.body
        fields = b.model_dump(exclude={"account_id", "when", "requires_approval", "dry_run"})
        rehearsal = await posts.rehearse(call.actor, account_id=b.account_id, when=b.when, **fields)
        findings = [Finding.model_validate(f) for f in rehearsal.report.findings]
        if rehearsal.report.errors:
            raise InvalidInput(
                "Pre-flight refused the post: " + "; ".join(f.text for f in rehearsal.report.errors)
            )
        if b.dry_run:
            d = rehearsal.decision
            return QueuedOut(
                dry_run=True,
                post=None,
                scheduled_for=d.scheduled_for,
                moved=d.moved,
                pacing_note=d.reason,
                preflight=findings,
            )
        draft = await posts.create_draft(call.actor, account_id=b.account_id, **fields)
        queued = await posts.queue(
            call.actor, draft.id, b.when, requires_approval=b.requires_approval
        )
        d = queued.decision
        return QueuedOut(
            dry_run=False,
            post=post_out(queued.post),
            scheduled_for=d.scheduled_for,
            moved=d.moved,
            pacing_note=d.reason,
            preflight=findings,
        )

    @reg.route(
        "POST",
        "/reddit/posts/{post_id:\\d+}/reschedule",
        summary="Move a post (pacing may move it further)",
        tag="reddit",
        role=Role.operator,
        response=PostOut,
        path_params=PostPath,
        body=RescheduleIn,
    )
    async def reschedule_post(call: Call[PostPath, Any, RescheduleIn]) -> PostOut:
        result = await call.services.reddit_posts.reschedule(
            call.actor, call.path.post_id, call.body.when
        )
        return post_out(result.post)

    def steer(name: str, summary: str) -> None:
        async def handler(call: Call[PostPath, Any, Any]) -> PostOut:
            posts = call.services.reddit_posts
            return post_out(await getattr(posts, name)(call.actor, call.path.post_id))

        handler.__name__ = f"{name}_post"
        reg.route(
            "POST",
            f"/reddit/posts/{{post_id:\\d+}}/{name}",
            summary=summary,
            tag="reddit",
            role=Role.operator,
            response=PostOut,
            path_params=PostPath,
        )(handler)

    steer("cancel", "Cancel a post that has not gone out")
    steer("approve", "Approve a post waiting for approval")
    steer("reject", "Reject a post waiting for approval")
