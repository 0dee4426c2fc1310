"""The post queue: drafts, pre-flight, scheduling with pacing, approval, edits, cancel.

A post moves draft → (pending_approval →) queued → publishing → published | failed, or to
cancelled from draft, pending_approval or queued. Each queued post has one `reddit.submit` job
whose `run_at` is the post's `scheduled_for`; the post row is the source of truth for what
happens to the post, the job is how it gets run. Times are UTC: callers convert what the
operator typed with `core.reddit_ops.when.parse_when`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.actor import Actor
from core.clock import Clock
from core.errors import Conflict, InvalidInput, NotFound
from core.reddit import RedditAPIError, normalize_subreddit
from core.reddit_ops.accounts import RedditClients
from core.reddit_ops.common import SUBMIT
from core.reddit_ops.pacing import DAY, PacingDecision, PacingRules, earliest_allowed
from core.reddit_ops.preflight import (
    Draft,
    Level,
    PreflightReport,
    SubredditFacts,
    check_post,
    fetch_subreddit,
    preflight,
)
from core.services.audit import record
from core.services.jobs import JobService
from storage.models import JobStatus, Role
from storage.reddit_models import (
    PostKind,
    PostSource,
    PostStatus,
    RedditAccount,
    RedditPost,
)
from storage.repositories import jobs as job_repo
from storage.repositories import reddit as repo

SUBMIT_MAX_ATTEMPTS = 6
BODY_MAX = 40_000  # Reddit's limit for a text post
IMAGE_MAX_BYTES = 20 * 1024 * 1024  # the largest image Reddit's media upload takes
MAX_SUBREDDIT_GAP_MINUTES = 7 * 24 * 60
# How far ahead pacing looks for planned posts that could clash.
PLAN_HORIZON = timedelta(days=400)
WAITING_JOB = (JobStatus.pending_approval, JobStatus.queued, JobStatus.failed)
EDITABLE_FIELDS = frozenset(
    {
        "account_id",
        "subreddit",
        "kind",
        "title",
        "body",
        "url",
        "vault_item_id",
        "image_blob_key",
        "image_name",
        "image_mime",
        "flair_id",
        "flair_text",
        "nsfw",
        "spoiler",
        "send_replies",
    }
)


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


async def plan_slot(
    session: AsyncSession,
    account: RedditAccount,
    *,
    subreddit: str,
    desired: datetime,
    include_planned: bool,
    exclude_post_id: int | None,
    tz: str = "UTC",
    lock: bool = False,
) -> PacingDecision:
    """Where a post of `account` to `subreddit` asked for `desired` may go.

    Planning (`include_planned`) counts queued and pending posts at their scheduled times;
    the submit job counts only what went out or is going out. `lock` takes the subreddit's
    pacing row FOR UPDATE (PostgreSQL) so two submits to one subreddit decide one at a time.
    """
    key = subreddit.lower()
    pacing = await repo.subreddit_pacing(session, account.tenant_id, key, for_update=lock)
    sub_gap = timedelta(minutes=pacing.min_gap_minutes) if pacing else timedelta(0)
    rules = PacingRules(
        posts_per_day=account.posts_per_day,
        min_gap=timedelta(minutes=account.min_gap_minutes),
        subreddit_gap=sub_gap,
        cooldown_until=account.cooldown_until,
    )
    start = desired - max(DAY, rules.min_gap, sub_gap)
    end = desired + PLAN_HORIZON
    account_times = await repo.pacing_times(
        session,
        start=start,
        end=end,
        account_id=account.id,
        include_planned=include_planned,
        exclude_post_id=exclude_post_id,
    )
    subreddit_times: list[datetime] = []
    if sub_gap > timedelta(0):
        subreddit_times = await repo.pacing_times(
            session,
            start=start,
            end=end,
            tenant_id=account.tenant_id,
            subreddit_key=key,
            include_planned=include_planned,
            exclude_post_id=exclude_post_id,
        )
    return earliest_allowed(
        desired,
        rules,
        account_times=account_times,
        subreddit_times=subreddit_times,
        username=account.username,
        subreddit=subreddit,
        tz=tz,
    )


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _too_big(what: str, size: int) -> str:
    shown, cap = _mb(size), _mb(IMAGE_MAX_BYTES)
    if shown == cap:  # just over the limit: do not print the limit as the size
        shown = f"over {cap}"
    return f"{what} is {shown}; Reddit takes pictures up to {cap}."


def image_file_problem(
    *, mime: str | None, size: int | None, what: str = "This file"
) -> str | None:
    """Why a file offered as a post's picture cannot be one, judged from what Telegram says
    before any byte is fetched (None: worth fetching; the bytes are checked after)."""
    declared = (mime or "").split(";")[0].strip().lower()
    if declared and declared != "application/octet-stream" and not declared.startswith("image/"):
        return f"{what} is {declared}, not a picture."
    if size is not None and size > IMAGE_MAX_BYTES:
        return _too_big(what, size)
    return None


def parse_subreddit(text: str) -> str:
    try:
        return normalize_subreddit(text or "")
    except RedditAPIError as exc:
        raise InvalidInput(f"{exc.message}; give a name like r/test.") from None


class PostService:
    """Compose, check, schedule and steer posts. Viewers read; operators change.

    Bound to one session; every mutating method commits (with its audit row) at the end and
    only then wakes the job engine.
    """

    def __init__(
        self,
        session: AsyncSession,
        clock: Clock,
        jobs: JobService,
        *,
        clients: RedditClients | None = None,
    ) -> None:
        self.session = session
        self.clock = clock
        self.jobs = jobs
        self.clients = clients

    # -- reading --------------------------------------------------------------------------
    async def get(self, actor: Actor, post_id: int) -> PostView:
        post = await self._load(actor, post_id)
        account = await repo.get_account(self.session, post.account_id)
        return PostView.of(post, account.username if account else None)

    async def upcoming(
        self, actor: Actor, account_id: int | None = None, limit: int = 20, offset: int = 0
    ) -> list[PostView]:
        """Posts still to go out (pending approval, queued, publishing), soonest first."""
        posts = await repo.list_posts(
            self.session,
            actor.tenant_id,
            statuses=repo.UPCOMING,
            account_id=account_id,
            limit=limit,
            offset=offset,
        )
        views = await self._views(actor, posts)
        return [v for v in views if v.status in repo.UPCOMING]  # a job card may have moved one

    async def count_upcoming(self, actor: Actor, account_id: int | None = None) -> int:
        return await repo.count_posts(
            self.session, actor.tenant_id, statuses=repo.UPCOMING, account_id=account_id
        )

    async def recent(
        self,
        actor: Actor,
        account_id: int | None = None,
        limit: int = 20,
        offset: int = 0,
        statuses: tuple[str, ...] = (PostStatus.published, PostStatus.failed),
    ) -> list[PostView]:
        """What happened lately (published and failed by default), newest first."""
        posts = await repo.list_posts(
            self.session,
            actor.tenant_id,
            statuses=statuses,
            account_id=account_id,
            limit=limit,
            offset=offset,
            newest_first=True,
        )
        return await self._views(actor, posts)

    async def drafts(self, actor: Actor, limit: int = 20) -> list[PostView]:
        posts = await repo.list_posts(
            self.session, actor.tenant_id, statuses=(PostStatus.draft,), limit=limit
        )
        return await self._views(actor, posts)

    async def _views(self, actor: Actor, posts: list[RedditPost]) -> list[PostView]:
        names = {a.id: a.username for a in await repo.list_accounts(self.session, actor.tenant_id)}
        posts = [await self._follow_job(p) for p in posts]
        return [PostView.of(p, names.get(p.account_id)) for p in posts]

    async def _load(self, actor: Actor, post_id: int) -> RedditPost:
        post = await repo.get_post(self.session, post_id, actor.tenant_id)
        if post is None:
            raise NotFound(f"Post #{post_id} does not exist in your workspace.")
        return await self._follow_job(post)

    async def _follow_job(self, post: RedditPost) -> RedditPost:
        """Catch a post that waits for approval up with its submit job when the job was
        approved or rejected on the generic job card (/jobs), which knows nothing of posts:
        approved there → the post is queued; rejected (or cancelled) there → the post is
        cancelled, so it never waits for approval behind a job that will not run. (A queued
        post whose job was cancelled on /jobs stays queued: Post now or Reschedule give it a
        new job.)"""
        if post.job_id is None or post.status != PostStatus.pending_approval:
            return post
        job = await job_repo.get(self.session, post.job_id, post.tenant_id)
        values: dict[str, Any] | None = None
        if job is not None and job.status == JobStatus.cancelled:
            why = job.last_error or "its job was cancelled"
            if why == "rejected":
                why = "rejected on the job card"
            values = {"status": PostStatus.cancelled, "last_error_message": why}
        elif job is not None and job.status in (
            JobStatus.queued,
            JobStatus.running,
            JobStatus.failed,
        ):
            values = {"status": PostStatus.queued}
        if values is None:
            return post
        values["updated_at"] = self.clock.now()
        moved = await repo.update_post(self.session, post.id, values, from_statuses=(post.status,))
        if moved is None:  # the submit job moved it meanwhile
            return await repo.get_post(self.session, post.id, post.tenant_id) or post
        await record(
            self.session,
            self.clock,
            tenant_id=post.tenant_id,
            actor=None,
            action="reddit.post.follow_job",
            target=f"reddit_post:{post.id}",
            details={"job": post.job_id, "status": moved.status},
        )
        await self.session.commit()
        return moved

    async def _account(self, actor: Actor, account_id: int) -> RedditAccount:
        account = await repo.get_account(self.session, account_id, actor.tenant_id)
        if account is None:
            raise NotFound(f"Reddit account #{account_id} does not exist in your workspace.")
        return account

    # -- composing ------------------------------------------------------------------------
    async def create_draft(
        self,
        actor: Actor,
        *,
        account_id: int,
        subreddit: str,
        kind: str,
        title: str,
        body: str | None = None,
        url: str | None = None,
        vault_item_id: int | None = None,
        image_blob_key: str | None = None,
        image_name: str | None = None,
        image_mime: str | None = None,
        flair_id: str | None = None,
        flair_text: str | None = None,
        nsfw: bool = False,
        spoiler: bool = False,
        send_replies: bool = True,
    ) -> PostView:
        """Save a draft. Fields are checked for shape here; rules come with `preflight`."""
        actor.require(Role.operator, "compose posts")
        account = await self._account(actor, account_id)
        fields = await self._clean(
            actor,
            {
                "subreddit": subreddit,
                "kind": kind,
                "title": title,
                "body": body,
                "url": url,
                "vault_item_id": vault_item_id,
                "image_blob_key": image_blob_key,
                "image_name": image_name,
                "image_mime": image_mime,
                "flair_id": flair_id,
                "flair_text": flair_text,
                "nsfw": nsfw,
                "spoiler": spoiler,
                "send_replies": send_replies,
            },
        )
        now = self.clock.now()
        post = await repo.add_post(
            self.session,
            RedditPost(
                tenant_id=actor.tenant_id,
                account_id=account.id,
                source=PostSource.opsdeck,
                status=PostStatus.draft,
                requires_approval=False,
                reddit_accepted=False,
                dry_run=False,
                removal_notified=False,
                created_by=actor.user_id,
                created_at=now,
                updated_at=now,
                **fields,
            ),
        )
        await self._audit(actor, "reddit.post.draft", post, {"subreddit": post.subreddit})
        await self.session.commit()
        return PostView.of(post, account.username)

    async def update(self, actor: Actor, post_id: int, **changes: Any) -> PostView:
        """Edit a draft, pending or queued post (not once it is being published).

        Changing the account or subreddit of a scheduled post re-checks its pacing; the post
        may move (its `pacing_note` says why).
        """
        actor.require(Role.operator, "edit posts")
        unknown = set(changes) - EDITABLE_FIELDS
        if unknown:
            raise InvalidInput(f"These cannot be edited: {', '.join(sorted(unknown))}.")
        post = await self._load(actor, post_id)
        self._require_editable(post)
        values = await self._clean(actor, changes, partial=True)
        account = await repo.get_account(self.session, post.account_id, actor.tenant_id)
        if "account_id" in values:
            account = await self._account(actor, int(values["account_id"]))
        assert account is not None
        now = self.clock.now()
        values["updated_at"] = now
        replan = post.status in (PostStatus.pending_approval, PostStatus.queued) and (
            values.get("account_id", post.account_id) != post.account_id
            or values.get("subreddit_key", post.subreddit_key) != post.subreddit_key
        )
        decision = None
        if replan:
            decision = await plan_slot(
                self.session,
                account,
                subreddit=values.get("subreddit", post.subreddit),
                desired=max(post.requested_for or post.scheduled_for or now, now),
                include_planned=True,
                exclude_post_id=post.id,
                tz=actor.timezone,
            )
            values.update(scheduled_for=decision.scheduled_for, pacing_note=decision.reason)
        updated = await repo.update_post(
            self.session, post.id, values, tenant_id=actor.tenant_id, from_statuses=repo.EDITABLE
        )
        if updated is None:
            await self.session.rollback()
            raise Conflict(await self._why_not(actor, post_id, "edited"))
        if updated.status != PostStatus.draft:
            problems = [f for f in check_post(draft_of(updated)) if f.level == Level.error]
            if problems:
                await self.session.rollback()
                raise InvalidInput(
                    "That edit would break the post: " + "; ".join(f.text for f in problems) + "."
                )
        if decision is not None:
            await self._move_job(updated, decision.scheduled_for, now)
        await self._audit(actor, "reddit.post.edit", updated, {"fields": sorted(changes)})
        await self.session.commit()
        if decision is not None:
            self._wake(decision.scheduled_for)
        return PostView.of(updated, account.username)

    async def _clean(
        self, actor: Actor, raw: dict[str, Any], *, partial: bool = False
    ) -> dict[str, Any]:
        """Check and normalise post fields; raises InvalidInput with what to fix."""
        out: dict[str, Any] = {}
        if "account_id" in raw:
            out["account_id"] = int(raw["account_id"])
        if "subreddit" in raw:
            out["subreddit"] = parse_subreddit(str(raw["subreddit"]))
            out["subreddit_key"] = out["subreddit"].lower()
        if "kind" in raw:
            kind = str(raw["kind"] or "").strip().lower()
            if kind == "text":
                kind = PostKind.self
            if kind not in {k.value for k in PostKind}:
                raise InvalidInput("A post is a text (self), link or image post.")
            out["kind"] = kind
        if "title" in raw:
            title = " ".join(str(raw["title"] or "").split())
            if not title:
                raise InvalidInput("The title is empty.")
            if len(title) > 300:
                raise InvalidInput(f"The title has {len(title)} characters; Reddit allows 300.")
            out["title"] = title
        if "body" in raw:
            body = raw["body"]
            body = body.strip() if isinstance(body, str) else None
            if body and len(body) > BODY_MAX:
                raise InvalidInput(f"The text has {len(body)} characters; Reddit allows 40,000.")
            out["body"] = body or None
        if "url" in raw:
            url = str(raw["url"]).strip() if raw["url"] else None
            if url and not url.lower().startswith(("http://", "https://")):
                raise InvalidInput("A link starts with http:// or https://.")
            out["url"] = url
        if "vault_item_id" in raw and raw["vault_item_id"] is not None:
            item_id = int(raw["vault_item_id"])
            image = await repo.vault_image(self.session, actor.tenant_id, item_id)
            if image is None:
                raise InvalidInput(f"Vault item #{item_id} does not exist (or was deleted).")
            if image.blob_key is None:
                raise InvalidInput(
                    f"Vault item #{item_id} has no stored copy of its bytes (Telegram holds "
                    "the only one); send the picture to the bot again."
                )
            if not image.mime.startswith("image/"):
                raise InvalidInput(f"Vault item #{item_id} is {image.mime}, not an image.")
            if image.size is not None and image.size > IMAGE_MAX_BYTES:
                raise InvalidInput(_too_big(f"Vault item #{item_id}", image.size))
            out["vault_item_id"] = item_id
            out.setdefault("image_name", image.name)
            out.setdefault("image_mime", image.mime)
        elif "vault_item_id" in raw:
            out["vault_item_id"] = None
        for key in ("image_blob_key", "image_name", "image_mime"):
            if key in raw and raw[key] is not None:
                out[key] = str(raw[key])
            elif key in raw and key not in out:
                out[key] = None
        if "flair_id" in raw:
            flair_id = str(raw["flair_id"]).strip() if raw["flair_id"] else None
            if flair_id and len(flair_id) > 36:
                raise InvalidInput("That flair id is longer than Reddit's 36 characters.")
            out["flair_id"] = flair_id
        if "flair_text" in raw:
            text = str(raw["flair_text"]).strip() if raw["flair_text"] else None
            if text and len(text) > 64:
                raise InvalidInput("The flair text is longer than Reddit's 64 characters.")
            out["flair_text"] = text
        for key in ("nsfw", "spoiler", "send_replies"):
            if key in raw:
                out[key] = bool(raw[key])
        if not partial:
            kind = out["kind"]
            if kind == PostKind.link and not out.get("url"):
                raise InvalidInput("A link post needs a link.")
            if kind == PostKind.image and not (
                out.get("vault_item_id") or out.get("image_blob_key")
            ):
                raise InvalidInput("An image post needs an image (send a photo or pick one).")
        return out

    async def check_vault_image(self, actor: Actor, item_id: int) -> str | None:
        """The name of vault item `item_id` if a post can use it as its image (InvalidInput
        says why not), so a guided flow can ask again at once."""
        actor.require(Role.operator, "compose posts")
        fields = await self._clean(actor, {"vault_item_id": item_id}, partial=True)
        return fields.get("image_name")

    # -- checking -------------------------------------------------------------------------
    async def subreddit_facts(
        self, actor: Actor, account_id: int, subreddit: str
    ) -> SubredditFacts:
        """What the subreddit takes, as the account sees it (about, rules, flairs).

        Without a client or credentials the facts are empty and say why.
        """
        account = await self._account(actor, account_id)
        name = parse_subreddit(subreddit)
        await self._end_transaction()
        client = await self.clients.client(account) if self.clients is not None else None
        if client is None:
            return SubredditFacts(name=name)
        return await fetch_subreddit(client, name)

    async def preflight(self, actor: Actor, post_id: int) -> PreflightReport:
        """Check the post against Reddit's limits and the subreddit's rules (reads Reddit)."""
        post = await self._load(actor, post_id)
        account = await self._account(actor, post.account_id)
        await self._end_transaction()
        client = await self.clients.client(account) if self.clients is not None else None
        return await preflight(client, draft_of(post))

    async def plan(
        self, actor: Actor, post_id: int, when: datetime | None = None
    ) -> PacingDecision:
        """Where the post would land if queued for `when` (nothing changes)."""
        post = await self._load(actor, post_id)
        account = await self._account(actor, post.account_id)
        now = self.clock.now()
        return await plan_slot(
            self.session,
            account,
            subreddit=post.subreddit,
            desired=max(when or now, now),
            include_planned=True,
            exclude_post_id=post.id,
            tz=actor.timezone,
        )

    # -- scheduling -----------------------------------------------------------------------
    async def queue(
        self,
        actor: Actor,
        post_id: int,
        when: datetime | None = None,
        *,
        requires_approval: bool = False,
    ) -> QueueResult:
        """Queue a draft (or a failed post again) for `when` (UTC; None = now).

        Pacing may move it later; the result says where and why. With `requires_approval`
        the post waits for an operator's approval (`approve`) before it can run.
        """
        actor.require(Role.operator, "queue posts")
        post = await self._load(actor, post_id)
        if post.status not in (PostStatus.draft, PostStatus.failed):
            raise Conflict(await self._why_not(actor, post_id, "queued"))
        problems = [f for f in check_post(draft_of(post)) if f.level == Level.error]
        if problems:
            raise InvalidInput("Fix this first: " + "; ".join(f.text for f in problems) + ".")
        account = await self._account(actor, post.account_id)
        now = self.clock.now()
        desired = max(when or now, now)
        decision = await plan_slot(
            self.session,
            account,
            subreddit=post.subreddit,
            desired=desired,
            include_planned=True,
            exclude_post_id=post.id,
            tz=actor.timezone,
        )
        status = PostStatus.pending_approval if requires_approval else PostStatus.queued
        moved = await repo.update_post(
            self.session,
            post.id,
            {
                "status": status,
                "requires_approval": requires_approval,
                "scheduled_for": decision.scheduled_for,
                "requested_for": desired,
                "pacing_note": decision.reason,
                "attempted_at": None,
                "reddit_accepted": False,
                "last_error_code": None,
                "last_error_message": None,
                "updated_at": now,
            },
            tenant_id=actor.tenant_id,
            from_statuses=(PostStatus.draft, PostStatus.failed),
        )
        if moved is None:
            await self.session.rollback()
            raise Conflict(await self._why_not(actor, post_id, "queued"))
        job_id = await self._new_job(actor, moved, decision.scheduled_for, requires_approval)
        await self._audit(
            actor,
            "reddit.post.queue",
            moved,
            {
                "scheduled_for": decision.scheduled_for.isoformat(),
                "moved": decision.moved,
                "approval": requires_approval,
            },
        )
        await self.session.commit()
        await self.jobs.after_commit(
            actor.tenant_id, job_id, decision.scheduled_for, requires_approval
        )
        return QueueResult(PostView.of(moved, account.username), decision, job_id)

    async def reschedule(self, actor: Actor, post_id: int, when: datetime) -> QueueResult:
        """Move a pending or queued post to `when` (UTC); pacing may move it further."""
        actor.require(Role.operator, "reschedule posts")
        post = await self._load(actor, post_id)
        if post.status not in (PostStatus.pending_approval, PostStatus.queued):
            raise Conflict(await self._why_not(actor, post_id, "rescheduled"))
        account = await self._account(actor, post.account_id)
        now = self.clock.now()
        desired = max(when, now)
        decision = await plan_slot(
            self.session,
            account,
            subreddit=post.subreddit,
            desired=desired,
            include_planned=True,
            exclude_post_id=post.id,
            tz=actor.timezone,
        )
        moved = await repo.update_post(
            self.session,
            post.id,
            {
                "scheduled_for": decision.scheduled_for,
                "requested_for": desired,
                "pacing_note": decision.reason,
                "updated_at": now,
            },
            tenant_id=actor.tenant_id,
            from_statuses=(PostStatus.pending_approval, PostStatus.queued),
        )
        if moved is None:
            await self.session.rollback()
            raise Conflict(await self._why_not(actor, post_id, "rescheduled"))
        job_id = await self._move_job(moved, decision.scheduled_for, now, actor=actor)
        await self._audit(
            actor,
            "reddit.post.reschedule",
            moved,
            {"scheduled_for": decision.scheduled_for.isoformat(), "moved": decision.moved},
        )
        await self.session.commit()
        self._wake(decision.scheduled_for)
        return QueueResult(PostView.of(moved, account.username), decision, job_id)

    async def post_now(self, actor: Actor, post_id: int) -> QueueResult:
        """Send a queued post as soon as pacing allows (drafts are queued for now)."""
        post = await self._load(actor, post_id)
        if post.status in (PostStatus.draft, PostStatus.failed):
            return await self.queue(actor, post_id, None)
        return await self.reschedule(actor, post_id, self.clock.now())

    async def approve(self, actor: Actor, post_id: int) -> PostView:
        """Let a post that waits for approval run at its scheduled time."""
        actor.require(Role.operator, "approve posts")
        post = await self._load(actor, post_id)
        now = self.clock.now()
        moved = await repo.update_post(
            self.session,
            post.id,
            {"status": PostStatus.queued, "updated_at": now},
            tenant_id=actor.tenant_id,
            from_statuses=(PostStatus.pending_approval,),
        )
        if moved is None:
            await self.session.rollback()
            raise Conflict(await self._why_not(actor, post_id, "approved"))
        if moved.job_id is not None:
            await job_repo.transition(
                self.session,
                job_id=moved.job_id,
                tenant_id=actor.tenant_id,
                from_statuses=(JobStatus.pending_approval,),
                values={
                    "status": JobStatus.queued,
                    "approved_by": actor.user_id,
                    "finished_by": actor.user_id,
                    "updated_at": now,
                },
            )
            await record(
                self.session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="job.approve",
                target=f"job:{moved.job_id}",
                details={"kind": SUBMIT},
            )
        await self._audit(actor, "reddit.post.approve", moved, None)
        await self.session.commit()
        self._wake(moved.scheduled_for or now)
        return await self.get(actor, post_id)

    async def reject(self, actor: Actor, post_id: int) -> PostView:
        """Turn down a post that waits for approval (it is cancelled)."""
        actor.require(Role.operator, "reject posts")
        return await self._cancel(
            actor, post_id, (PostStatus.pending_approval,), f"rejected by {actor.label}", "reject"
        )

    async def cancel(self, actor: Actor, post_id: int) -> PostView:
        """Cancel a draft, pending or queued post; one being published cannot be stopped."""
        actor.require(Role.operator, "cancel posts")
        return await self._cancel(
            actor, post_id, tuple(repo.EDITABLE), f"cancelled by {actor.label}", "cancel"
        )

    async def _cancel(
        self, actor: Actor, post_id: int, from_statuses: tuple[str, ...], why: str, verb: str
    ) -> PostView:
        post = await self._load(actor, post_id)
        now = self.clock.now()
        moved = await repo.update_post(
            self.session,
            post.id,
            {"status": PostStatus.cancelled, "last_error_message": why, "updated_at": now},
            tenant_id=actor.tenant_id,
            from_statuses=from_statuses,
        )
        if moved is None:
            await self.session.rollback()
            raise Conflict(await self._why_not(actor, post_id, f"{verb}ed"))
        if moved.job_id is not None:
            # A running job sees the cancelled post and stops before sending.
            await job_repo.transition(
                self.session,
                job_id=moved.job_id,
                tenant_id=actor.tenant_id,
                from_statuses=WAITING_JOB,
                values={
                    "status": JobStatus.cancelled,
                    "last_error": why,
                    "finished_at": now,
                    "finished_by": actor.user_id,
                    "updated_at": now,
                },
            )
        await self._audit(actor, f"reddit.post.{verb}", moved, None)
        await self.session.commit()
        return await self.get(actor, post_id)

    # -- subreddit pacing -----------------------------------------------------------------
    async def set_subreddit_gap(self, actor: Actor, subreddit: str, minutes: int) -> None:
        """Keep `minutes` between the workspace's posts to `subreddit` (0 removes the rule)."""
        actor.require(Role.operator, "change pacing")
        name = parse_subreddit(subreddit)
        if not 0 <= minutes <= MAX_SUBREDDIT_GAP_MINUTES:
            raise InvalidInput("The gap must be 0 to 10080 minutes (a week).")
        now = self.clock.now()
        if minutes == 0:
            await repo.delete_subreddit_pacing(self.session, actor.tenant_id, name.lower())
        else:
            await repo.set_subreddit_pacing(
                self.session,
                tenant_id=actor.tenant_id,
                subreddit=name,
                minutes=minutes,
                by=actor.user_id,
                now=now,
            )
        await record(
            self.session,
            self.clock,
            tenant_id=actor.tenant_id,
            actor=actor,
            action="reddit.subreddit.pacing",
            target=f"subreddit:{name.lower()}",
            details={"min_gap_minutes": minutes},
        )
        await self.session.commit()

    async def subreddit_gaps(self, actor: Actor) -> dict[str, int]:
        """Subreddit → minimum gap in minutes, for the subreddits that have a rule."""
        rows = await repo.list_subreddit_pacing(self.session, actor.tenant_id)
        return {row.subreddit: row.min_gap_minutes for row in rows}

    # -- helpers --------------------------------------------------------------------------
    def _require_editable(self, post: RedditPost) -> None:
        if post.status not in repo.EDITABLE:
            state = post.status.replace("_", " ")
            raise Conflict(f"Post #{post.id} is {state}; it can no longer be edited.")

    async def _new_job(
        self, actor: Actor | None, post: RedditPost, run_at: datetime, requires_approval: bool
    ) -> int | None:
        job_id = await self.jobs.submit(
            post.tenant_id,
            SUBMIT,
            {"post_id": post.id},
            actor=actor,
            run_at=run_at,
            requires_approval=requires_approval,
            max_attempts=SUBMIT_MAX_ATTEMPTS,
            commit=False,
        )
        await repo.update_post(self.session, post.id, {"job_id": job_id})
        post.job_id = job_id
        return job_id

    async def _move_job(
        self, post: RedditPost, run_at: datetime, now: datetime, *, actor: Actor | None = None
    ) -> int | None:
        """Point the post's submit job at `run_at`; a job that is gone is replaced."""
        if post.job_id is not None:
            job = await job_repo.get(self.session, post.job_id, post.tenant_id)
            if job is not None and job.status == JobStatus.running:
                raise Conflict(f"Post #{post.id} is being sent right now.")
            moved = await job_repo.transition(
                self.session,
                job_id=post.job_id,
                tenant_id=post.tenant_id,
                from_statuses=WAITING_JOB,
                values={"run_at": run_at, "updated_at": now},
            )
            if moved is not None:
                return moved.id
        pending = post.status == PostStatus.pending_approval
        return await self._new_job(actor, post, run_at, pending)

    async def _why_not(self, actor: Actor, post_id: int, what: str) -> str:
        post = await repo.get_post(self.session, post_id, actor.tenant_id)
        if post is None:
            return f"Post #{post_id} no longer exists."
        return f"Post #{post_id} is {post.status.replace('_', ' ')}; it cannot be {what}."

    async def _audit(
        self, actor: Actor, action: str, post: RedditPost, details: dict[str, Any] | None
    ) -> None:
        await record(
            self.session,
            self.clock,
            tenant_id=actor.tenant_id,
            actor=actor,
            action=action,
            target=f"reddit_post:{post.id}",
            details=details,
        )

    async def _end_transaction(self) -> None:
        """Before talking to Reddit: hold no transaction (on SQLite it is the write lock)."""
        await self.session.commit()

    def _wake(self, run_at: datetime) -> None:
        if self.jobs.engine is not None:
            self.jobs.engine.wake_at(run_at)
