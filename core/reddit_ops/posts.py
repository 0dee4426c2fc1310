"""The post queue: drafts, pre-flight, scheduling with pacing, approval, edits, cancel.

A post moves draft → (pending_approval →) queued → publishing → published | failed, or to
cancelled from draft, pending_approval or queued. Each queued post has one `reddit.submit` job
whose `run_at` is the post's `scheduled_for`; the post row is the source of truth for what
happens to the post, the job is how it gets run. Approving, rejecting and cancelling a post
go through `JobService` (one path per state change): the job kind's steering hooks
(`core.reddit_ops.steering`) move the post in the same write, whether the operator pressed
the post's button or the generic job card. Times are UTC: callers convert what the operator
typed with `core.reddit_ops.when.parse_when`.

Reads run lock-free (`uow.read()`); every change is one short `uow.write()` with its audit
row, and nothing talks to Reddit inside one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.actor import Actor
from core.clock import Clock
from core.errors import Conflict, InvalidInput, NotFound
from core.reddit_ops import listing
from core.reddit_ops.clients import RedditClients
from core.reddit_ops.common import SUBMIT
from core.reddit_ops.fate import fate
from core.reddit_ops.listing import ListedEntry
from core.reddit_ops.pacing import PacingDecision
from core.reddit_ops.post_fields import EDITABLE_FIELDS, clean_fields, parse_subreddit
from core.reddit_ops.post_views import PostView, QueueResult, draft_of
from core.reddit_ops.preflight import (
    Level,
    PreflightReport,
    SubredditFacts,
    check_post,
    fetch_subreddit,
    preflight,
)
from core.reddit_ops.slots import plan_slot
from core.services.audit import record
from core.services.jobs import JobService
from storage.models import JobStatus, Role
from storage.reddit_models import PostKind, PostSource, PostStatus, RedditAccount, RedditPost
from storage.repositories import jobs as job_repo
from storage.repositories import reddit as repo
from storage.uow import UnitOfWork

SUBMIT_MAX_ATTEMPTS = 6
MAX_SUBREDDIT_GAP_MINUTES = 7 * 24 * 60
WAITING_JOB = (JobStatus.pending_approval, JobStatus.queued, JobStatus.failed)
# What `/posts published` and `/posts all` show.
PUBLISHED = (PostStatus.published,)
LISTED_ALL = (
    PostStatus.pending_approval,
    PostStatus.queued,
    PostStatus.publishing,
    PostStatus.published,
    PostStatus.failed,
    PostStatus.cancelled,
)


class PostService:
    """Compose, check, schedule and steer posts. Viewers read; operators change."""

    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        jobs: JobService,
        *,
        clients: RedditClients | None = None,
    ) -> None:
        self.uow = uow
        self.clock = clock
        self.jobs = jobs
        self.clients = clients

    # -- reading --------------------------------------------------------------------------
    async def get(self, actor: Actor, post_id: int) -> PostView:
        async with self.uow.read() as session:
            post = await self._load(session, actor, post_id)
            account = await repo.get_account(session, post.account_id)
        return PostView.of(post, account.username if account else None)

    async def upcoming(
        self, actor: Actor, account_id: int | None = None, limit: int = 20, offset: int = 0
    ) -> list[PostView]:
        """Posts still to go out (pending approval, queued, publishing), soonest first."""
        return await self._list(
            actor, repo.UPCOMING, account_id=account_id, limit=limit, offset=offset
        )

    async def count_upcoming(self, actor: Actor, account_id: int | None = None) -> int:
        return await self.count(actor, repo.UPCOMING, account_id)

    async def count(
        self, actor: Actor, statuses: tuple[str, ...], account_id: int | None = None
    ) -> int:
        async with self.uow.read() as session:
            return await repo.count_posts(
                session, actor.tenant_id, statuses=statuses, account_id=account_id
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
        return await self._list(
            actor, statuses, account_id=account_id, limit=limit, offset=offset, newest_first=True
        )

    async def listed(self, actor: Actor, which: str, limit: int) -> list[ListedEntry]:
        """The posts of `/posts published` (or `all`: everything past the draft), each with
        what became of it on Reddit (a `ListingSource`)."""
        statuses = PUBLISHED if which == listing.PUBLISHED else LISTED_ALL
        views = await self.recent(actor, limit=limit, statuses=statuses)
        return [
            ListedEntry(
                kind="comment" if v.kind == PostKind.comment else "post",
                id=v.id,
                username=v.username,
                subreddit=v.subreddit,
                # a comment shows its first words (its row's title is the thread's)
                text=(v.body or "") if v.kind == PostKind.comment else v.title,
                status=v.status,
                state=fate(v),
                at=v.published_at or v.updated_at,
                permalink=v.permalink,
            )
            for v in views
        ]

    async def drafts(self, actor: Actor, limit: int = 20) -> list[PostView]:
        return await self._list(actor, (PostStatus.draft,), limit=limit)

    async def _list(self, actor: Actor, statuses: tuple[str, ...], **kw: Any) -> list[PostView]:
        async with self.uow.read() as session:
            posts = await repo.list_posts(session, actor.tenant_id, statuses=statuses, **kw)
            accounts = await repo.list_accounts(session, actor.tenant_id)
        names = {a.id: a.username for a in accounts}
        return [PostView.of(p, names.get(p.account_id)) for p in posts]

    @staticmethod
    async def _load(session: AsyncSession, actor: Actor, post_id: int) -> RedditPost:
        post = await repo.get_post(session, post_id, actor.tenant_id)
        if post is None:
            raise NotFound(f"Post #{post_id} does not exist in your workspace.")
        return post

    @staticmethod
    async def _account(session: AsyncSession, actor: Actor, account_id: int) -> RedditAccount:
        account = await repo.get_account(session, account_id, actor.tenant_id)
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
        raw = _raw_fields(locals())
        now = self.clock.now()
        async with self.uow.write() as session:
            account = await self._account(session, actor, account_id)
            fields = await clean_fields(session, actor.tenant_id, raw)
            post = await repo.add_post(
                session,
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
            await self._audit(
                session, actor, "reddit.post.draft", post, {"subreddit": post.subreddit}
            )
        return PostView.of(post, account.username)

    async def rehearse(
        self,
        actor: Actor,
        *,
        account_id: int,
        when: datetime | None = None,
        **raw: Any,
    ) -> Rehearsal:
        """Everything queueing would check — fields, pre-flight, where pacing puts it — and
        nothing saved: the HTTP API's `dry_run`. Reads Reddit (the subreddit's rules)."""
        actor.require(Role.operator, "compose posts")
        now = self.clock.now()
        async with self.uow.read() as session:
            account = await self._account(session, actor, account_id)
            fields = await clean_fields(session, actor.tenant_id, _raw_fields(raw))
            decision = await plan_slot(
                session,
                account,
                subreddit=fields["subreddit"],
                desired=max(when or now, now),
                include_planned=True,
                exclude_post_id=None,
                tz=actor.timezone,
            )
        client = await self.clients.client(account) if self.clients is not None else None
        report = await preflight(client, draft_of(RedditPost(**fields)))
        return Rehearsal(report, decision, account.username)

    async def update(self, actor: Actor, post_id: int, **changes: Any) -> PostView:
        """Edit a draft, pending or queued post (not once it is being published).

        Changing the account or subreddit of a scheduled post re-checks its pacing; the post
        may move (its `pacing_note` says why).
        """
        actor.require(Role.operator, "edit posts")
        unknown = set(changes) - EDITABLE_FIELDS
        if unknown:
            raise InvalidInput(f"These cannot be edited: {', '.join(sorted(unknown))}.")
        now = self.clock.now()
        async with self.uow.write() as session:
            post = await self._load(session, actor, post_id)
            self._require_editable(post)
            if post.kind == PostKind.comment:
                raise InvalidInput(
                    f"Comment #{post.id} cannot be edited; cancel it and /reply again."
                )
            values = await clean_fields(session, actor.tenant_id, changes, partial=True)
            account = await self._account(
                session, actor, int(values.get("account_id", post.account_id))
            )
            values["updated_at"] = now
            replan = post.status in (PostStatus.pending_approval, PostStatus.queued) and (
                values.get("account_id", post.account_id) != post.account_id
                or values.get("subreddit_key", post.subreddit_key) != post.subreddit_key
            )
            decision = None
            if replan:
                decision = await plan_slot(
                    session,
                    account,
                    subreddit=values.get("subreddit", post.subreddit),
                    desired=max(post.requested_for or post.scheduled_for or now, now),
                    include_planned=True,
                    exclude_post_id=post.id,
                    tz=actor.timezone,
                )
                values.update(scheduled_for=decision.scheduled_for, pacing_note=decision.reason)
            updated = await repo.update_post(
                session, post.id, values, tenant_id=actor.tenant_id, from_statuses=repo.EDITABLE
            )
            if updated is None:
                raise Conflict(await self._why_not(session, actor, post_id, "edited"))
            if updated.status != PostStatus.draft:
                problems = [f for f in check_post(draft_of(updated)) if f.level == Level.error]
                if problems:
                    raise InvalidInput(
                        "That edit would break the post: "
                        + "; ".join(f.text for f in problems)
                        + "."
                    )
            if decision is not None:
                await self._move_job(session, actor, updated, decision.scheduled_for, now)
            await self._audit(
                session, actor, "reddit.post.edit", updated, {"fields": sorted(changes)}
            )
        return PostView.of(updated, account.username)

    async def check_vault_image(self, actor: Actor, item_id: int) -> str | None:
        """The name of vault item `item_id` if a post can use it as its image (InvalidInput
        says why not), so a guided flow can ask again at once."""
        actor.require(Role.operator, "compose posts")
        async with self.uow.read() as session:
            fields = await clean_fields(
                session, actor.tenant_id, {"vault_item_id": item_id}, partial=True
            )
        return fields.get("image_name")

    # -- checking (reads Reddit: no transaction is open meanwhile) -------------------------
    async def subreddit_facts(
        self, actor: Actor, account_id: int, subreddit: str
    ) -> SubredditFacts:
        """What the subreddit takes, as the account sees it (about, rules, flairs).

        Without a client or credentials the facts are empty and say why.
        """
        name = parse_subreddit(subreddit)
        async with self.uow.read() as session:
            account = await self._account(session, actor, account_id)
        client = await self.clients.client(account) if self.clients is not None else None
        if client is None:
            return SubredditFacts(name=name)
        return await fetch_subreddit(client, name)

    async def preflight(self, actor: Actor, post_id: int) -> PreflightReport:
        """Check the post against Reddit's limits and the subreddit's rules (reads Reddit)."""
        async with self.uow.read() as session:
            post = await self._load(session, actor, post_id)
            account = await self._account(session, actor, post.account_id)
        client = await self.clients.client(account) if self.clients is not None else None
        return await preflight(client, draft_of(post))

    async def plan(
        self, actor: Actor, post_id: int, when: datetime | None = None
    ) -> PacingDecision:
        """Where the post would land if queued for `when` (nothing changes)."""
        now = self.clock.now()
        async with self.uow.read() as session:
            post = await self._load(session, actor, post_id)
            account = await self._account(session, actor, post.account_id)
            return await plan_slot(
                session,
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
        now = self.clock.now()
        desired = max(when or now, now)
        async with self.uow.write() as session:
            post = await self._load(session, actor, post_id)
            if post.status not in (PostStatus.draft, PostStatus.failed):
                raise Conflict(await self._why_not(session, actor, post_id, "queued"))
            problems = [f for f in check_post(draft_of(post)) if f.level == Level.error]
            if problems:
                raise InvalidInput("Fix this first: " + "; ".join(f.text for f in problems) + ".")
            account = await self._account(session, actor, post.account_id)
            decision = await plan_slot(
                session,
                account,
                subreddit=post.subreddit,
                desired=desired,
                include_planned=True,
                exclude_post_id=post.id,
                tz=actor.timezone,
            )
            status = PostStatus.pending_approval if requires_approval else PostStatus.queued
            moved = await repo.update_post(
                session,
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
                raise Conflict(await self._why_not(session, actor, post_id, "queued"))
            job_id = await self._new_job(
                session, actor, moved, decision.scheduled_for, requires_approval
            )
            await self._audit(
                session,
                actor,
                "reddit.post.queue",
                moved,
                {
                    "scheduled_for": decision.scheduled_for.isoformat(),
                    "moved": decision.moved,
                    "approval": requires_approval,
                },
            )
        return QueueResult(PostView.of(moved, account.username), decision, job_id)

    async def reschedule(self, actor: Actor, post_id: int, when: datetime) -> QueueResult:
        """Move a pending or queued post to `when` (UTC); pacing may move it further."""
        actor.require(Role.operator, "reschedule posts")
        now = self.clock.now()
        desired = max(when, now)
        async with self.uow.write() as session:
            post = await self._load(session, actor, post_id)
            if post.status not in (PostStatus.pending_approval, PostStatus.queued):
                raise Conflict(await self._why_not(session, actor, post_id, "rescheduled"))
            account = await self._account(session, actor, post.account_id)
            decision = await plan_slot(
                session,
                account,
                subreddit=post.subreddit,
                desired=desired,
                include_planned=True,
                exclude_post_id=post.id,
                tz=actor.timezone,
            )
            moved = await repo.update_post(
                session,
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
                raise Conflict(await self._why_not(session, actor, post_id, "rescheduled"))
            job_id = await self._move_job(session, actor, moved, decision.scheduled_for, now)
            await self._audit(
                session,
                actor,
                "reddit.post.reschedule",
                moved,
                {"scheduled_for": decision.scheduled_for.isoformat(), "moved": decision.moved},
            )
        return QueueResult(PostView.of(moved, account.username), decision, job_id)

    async def post_now(self, actor: Actor, post_id: int) -> QueueResult:
        """Send a queued post as soon as pacing allows (drafts are queued for now)."""
        async with self.uow.read() as session:
            post = await self._load(session, actor, post_id)
        if post.status in (PostStatus.draft, PostStatus.failed):
            return await self.queue(actor, post_id, None)
        return await self.reschedule(actor, post_id, self.clock.now())

    async def approve(self, actor: Actor, post_id: int) -> PostView:
        """Let a post that waits for approval run at its scheduled time: its submit job is
        approved, and the job's steering hook queues the post in the same write."""
        actor.require(Role.operator, "approve posts")
        await self._steer(actor, post_id, (PostStatus.pending_approval,), "approved")
        return await self.get(actor, post_id)

    async def reject(self, actor: Actor, post_id: int) -> PostView:
        """Turn down a post that waits for approval (it is cancelled with its job)."""
        actor.require(Role.operator, "reject posts")
        await self._steer(actor, post_id, (PostStatus.pending_approval,), "rejected")
        return await self.get(actor, post_id)

    async def cancel(self, actor: Actor, post_id: int) -> PostView:
        """Cancel a draft, pending or queued post; one being published cannot be stopped."""
        actor.require(Role.operator, "cancel posts")
        await self._steer(actor, post_id, tuple(repo.EDITABLE), "cancelled")
        return await self.get(actor, post_id)

    async def _steer(
        self, actor: Actor, post_id: int, from_statuses: tuple[str, ...], verb: str
    ) -> None:
        """One write: the post's waiting job is steered through `JobService` (its hook moves
        the post); a post without a waiting job (a draft, a failed post) moves on its own."""
        now = self.clock.now()
        async with self.uow.write() as session:
            post = await self._load(session, actor, post_id)
            if post.status not in from_statuses:
                raise Conflict(await self._why_not(session, actor, post_id, verb))
            job = (
                await job_repo.get(session, post.job_id, post.tenant_id)
                if post.job_id is not None
                else None
            )
            if job is not None and job.status in WAITING_JOB:
                steer = {
                    "approved": self.jobs.approve,
                    "rejected": self.jobs.reject,
                    "cancelled": self.jobs.cancel,
                }[verb]
                await steer(actor, job.id)
                return
            if verb == "approved":  # its job is gone: a new one, approved from the start
                moved = await repo.update_post(
                    session,
                    post.id,
                    {"status": PostStatus.queued, "updated_at": now},
                    tenant_id=actor.tenant_id,
                    from_statuses=from_statuses,
                )
                assert moved is not None
                await self._new_job(session, actor, moved, moved.scheduled_for or now, False)
            else:
                moved = await repo.update_post(
                    session,
                    post.id,
                    {
                        "status": PostStatus.cancelled,
                        "last_error_message": f"{verb} by {actor.label}",
                        "updated_at": now,
                    },
                    tenant_id=actor.tenant_id,
                    from_statuses=from_statuses,
                )
                assert moved is not None
            action = {"approved": "approve", "rejected": "reject", "cancelled": "cancel"}[verb]
            await self._audit(session, actor, f"reddit.post.{action}", moved, None)

    # -- subreddit pacing -----------------------------------------------------------------
    async def set_subreddit_gap(self, actor: Actor, subreddit: str, minutes: int) -> None:
        """Keep `minutes` between the workspace's posts to `subreddit` (0 removes the rule)."""
        actor.require(Role.operator, "change pacing")
        name = parse_subreddit(subreddit)
        if not 0 <= minutes <= MAX_SUBREDDIT_GAP_MINUTES:
            raise InvalidInput("The gap must be 0 to 10080 minutes (a week).")
        now = self.clock.now()
        async with self.uow.write() as session:
            if minutes == 0:
                await repo.delete_subreddit_pacing(session, actor.tenant_id, name.lower())
            else:
                await repo.set_subreddit_pacing(
                    session,
                    tenant_id=actor.tenant_id,
                    subreddit=name,
                    minutes=minutes,
                    by=actor.user_id,
                    now=now,
                )
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="reddit.subreddit.pacing",
                target=f"subreddit:{name.lower()}",
                details={"min_gap_minutes": minutes},
            )

    async def subreddit_gaps(self, actor: Actor) -> dict[str, int]:
        """Subreddit → minimum gap in minutes, for the subreddits that have a rule."""
        async with self.uow.read() as session:
            rows = await repo.list_subreddit_pacing(session, actor.tenant_id)
        return {row.subreddit: row.min_gap_minutes for row in rows}

    # -- helpers (inside the caller's write) ----------------------------------------------
    @staticmethod
    def _require_editable(post: RedditPost) -> None:
        if post.status not in repo.EDITABLE:
            state = post.status.replace("_", " ")
            raise Conflict(f"Post #{post.id} is {state}; it can no longer be edited.")

    async def _new_job(
        self,
        session: AsyncSession,
        actor: Actor | None,
        post: RedditPost,
        run_at: datetime,
        requires_approval: bool,
    ) -> int | None:
        """The post's submit job, in the caller's write; the engine wakes (or the operators
        are asked to approve) after the commit."""
        job_id = await self.jobs.submit(
            post.tenant_id,
            SUBMIT,
            {"post_id": post.id},
            actor=actor,
            run_at=run_at,
            requires_approval=requires_approval,
            max_attempts=SUBMIT_MAX_ATTEMPTS,
        )
        await repo.update_post(session, post.id, {"job_id": job_id})
        post.job_id = job_id
        return job_id

    async def _move_job(
        self,
        session: AsyncSession,
        actor: Actor | None,
        post: RedditPost,
        run_at: datetime,
        now: datetime,
    ) -> int | None:
        """Point the post's submit job at `run_at`; a job that is gone is replaced."""
        if post.job_id is not None:
            job = await job_repo.get(session, post.job_id, post.tenant_id)
            if job is not None and job.status == JobStatus.running:
                raise Conflict(f"Post #{post.id} is being sent right now.")
            moved = await job_repo.transition(
                session,
                job_id=post.job_id,
                tenant_id=post.tenant_id,
                from_statuses=WAITING_JOB,
                values={"run_at": run_at, "updated_at": now},
            )
            if moved is not None:
                self.uow.after_commit(lambda: self._wake(run_at))
                return moved.id
        pending = post.status == PostStatus.pending_approval
        return await self._new_job(session, actor, post, run_at, pending)

    @staticmethod
    async def _why_not(session: AsyncSession, actor: Actor, post_id: int, what: str) -> str:
        post = await repo.get_post(session, post_id, actor.tenant_id)
        if post is None:
            return f"Post #{post_id} no longer exists."
        return f"Post #{post_id} is {post.status.replace('_', ' ')}; it cannot be {what}."

    async def _audit(
        self,
        session: AsyncSession,
        actor: Actor,
        action: str,
        post: RedditPost,
        details: dict[str, Any] | None,
    ) -> None:
        await record(
            session,
            self.clock,
            tenant_id=actor.tenant_id,
            actor=actor,
            action=action,
            target=f"reddit_post:{post.id}",
            details=details,
        )

    def _wake(self, run_at: datetime) -> None:
        if self.jobs.engine is not None:
            self.jobs.engine.wake_at(run_at)


@dataclass(frozen=True, slots=True)
class Rehearsal:
    """What queueing a post would find and do (`PostService.rehearse`)."""

    report: PreflightReport
    decision: PacingDecision
    username: str


# what a draft holds: every editable field but the account, which is its own argument
_DRAFT_FIELDS = EDITABLE_FIELDS - {"account_id"}


def _raw_fields(values: dict[str, Any]) -> dict[str, Any]:
    """The draft fields among `values` (a call's arguments), for `clean_fields`."""
    defaults = {"nsfw": False, "spoiler": False, "send_replies": True}
    return {k: values.get(k, defaults.get(k)) for k in _DRAFT_FIELDS}
