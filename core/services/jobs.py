"""Operators steering the job queue: list, approve, reject, retry, cancel, pause.

Every transition is one conditional UPDATE in one short `uow.write()`, so a double press or a
race between two operators changes the job once; the loser gets a Conflict that says who did
it first. Approve, reject and cancel are the one path for a job's state: a kind that owns rows
of its own moves them in the same write through its steering hooks (core/jobs/registry.py).
Wake-ups and notifications run after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.actor import Actor
from core.clock import Clock
from core.errors import Conflict, InvalidInput, NotFound
from core.jobs.queue import enqueue
from core.jobs.registry import JobRegistry, Steer, SteerAction
from core.notifier import Notifier
from core.services.audit import record
from core.services.operators import operator_name
from core.timefmt import fmt
from storage.models import Job, JobStatus, Role
from storage.repositories import audit as audit_repo
from storage.repositories import jobs as job_repo
from storage.repositories import tenants as tenant_repo
from storage.uow import UnitOfWork

if TYPE_CHECKING:
    from core.jobs.engine import JobEngine

STATUS_FILTERS: dict[str, tuple[str, ...]] = {
    "all": (),
    "active": (JobStatus.pending_approval, JobStatus.queued, JobStatus.running, JobStatus.failed),
    "pending": (JobStatus.pending_approval,),
    "queued": (JobStatus.queued,),
    "running": (JobStatus.running,),
    "failed": (JobStatus.failed, JobStatus.dead),
    "dead": (JobStatus.dead,),
    "succeeded": (JobStatus.succeeded,),
    "cancelled": (JobStatus.cancelled,),
}
RETRYABLE = (JobStatus.failed, JobStatus.dead)
CANCELLABLE = (JobStatus.pending_approval, JobStatus.queued, JobStatus.failed)
PAST_TENSE = {
    "job.approve": "approved",
    "job.reject": "rejected",
    "job.retry": "retried",
    "job.cancel": "cancelled",
    "job.cancel_requested": "asked to cancel",
}


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[Job]
    total: int
    page: int
    pages: int


def parse_status_filter(text: str | None) -> str:
    key = (text or "active").strip().lower()
    if key not in STATUS_FILTERS:
        raise InvalidInput(f"Unknown status {text!r}. Use one of: {', '.join(STATUS_FILTERS)}.")
    return key


class JobService:
    """The job queue as operators see it. Reads run lock-free; each change is one write."""

    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        notifier: Notifier,
        engine: JobEngine | None = None,
        registry: JobRegistry | None = None,
    ) -> None:
        self.uow = uow
        self.clock = clock
        self.notifier = notifier
        self.engine = engine
        self.registry = registry if registry is not None else (engine and engine.registry)

    # -- reading --------------------------------------------------------------------------------
    async def page(
        self,
        actor: Actor,
        status: str = "active",
        kind: str | None = None,
        page: int = 0,
        size: int = 8,
    ) -> JobPage:
        page = max(0, page)
        jobs, total = await self.slice(actor, status, kind, page * size, size)
        pages = max(1, -(-total // size))
        if page >= pages and total:
            return await self.page(actor, status, kind, pages - 1, size)
        return JobPage(jobs, total, page, pages)

    async def slice(
        self, actor: Actor, status: str, kind: str | None, offset: int, limit: int
    ) -> tuple[list[Job], int]:
        """Jobs by offset and limit (the HTTP API pages this way), filtered like `page`."""
        statuses = STATUS_FILTERS[parse_status_filter(status)]
        async with self.uow.read() as session:
            return await job_repo.list_page(
                session,
                tenant_id=actor.tenant_id,
                statuses=statuses,
                kind=kind,
                offset=max(0, offset),
                limit=limit,
            )

    async def get(self, actor: Actor, job_id: int) -> Job:
        async with self.uow.read() as session:
            job = await job_repo.get(session, job_id, actor.tenant_id)
        if job is None:
            raise NotFound(f"Job #{job_id} does not exist in your workspace.")
        return job

    async def count_retryable(self, actor: Actor) -> int:
        async with self.uow.read() as session:
            return len(await job_repo.ids_with_status(session, actor.tenant_id, RETRYABLE))

    async def counts(self, actor: Actor) -> dict[str, int]:
        async with self.uow.read() as session:
            return await job_repo.count_by_status(session, actor.tenant_id)

    async def is_paused(self, actor: Actor) -> bool:
        async with self.uow.read() as session:
            tenant = await tenant_repo.get(session, actor.tenant_id)
        return bool(tenant and tenant.queue_paused)

    # -- creating ----------------------------------------------------------------------------------
    async def submit(
        self,
        tenant_id: int,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        actor: Actor | None = None,
        run_at: datetime | None = None,
        requires_approval: bool = False,
        dedupe_key: str | None = None,
        max_attempts: int = 5,
        priority: int = 0,
    ) -> int | None:
        """Queue a job, with its audit row. Inside a caller's `uow.write()` it joins that
        transaction, and the engine is woken (or the operators told) after its commit."""
        now = self.clock.now()
        async with self.uow.write() as session:
            job_id = await self._insert(
                session,
                tenant_id,
                kind,
                payload,
                actor,
                now,
                run_at,
                requires_approval,
                dedupe_key,
                max_attempts,
                priority,
            )
            if job_id is not None:
                when = run_at or now
                self.uow.after_commit(
                    lambda: self.after_commit(tenant_id, job_id, when, requires_approval)
                )
        return job_id

    async def _insert(
        self,
        session: AsyncSession,
        tenant_id: int,
        kind: str,
        payload: dict[str, Any] | None,
        actor: Actor | None,
        now: datetime,
        run_at: datetime | None,
        requires_approval: bool,
        dedupe_key: str | None,
        max_attempts: int,
        priority: int,
    ) -> int | None:
        job_id = await enqueue(
            session,
            tenant_id=tenant_id,
            kind=kind,
            now=now,
            payload=payload,
            run_at=run_at,
            requires_approval=requires_approval,
            dedupe_key=dedupe_key,
            max_attempts=max_attempts,
            priority=priority,
            created_by=actor.user_id if actor else None,
        )
        if job_id is not None:
            await record(
                session,
                self.clock,
                tenant_id=tenant_id,
                actor=actor,
                action="job.create",
                target=f"job:{job_id}",
                details={"kind": kind},
            )
        return job_id

    async def after_commit(
        self, tenant_id: int, job_id: int | None, run_at: datetime, requires_approval: bool
    ) -> None:
        """What follows a new job's commit: the operators are asked, or the engine woken."""
        if job_id is None:
            return
        if requires_approval:
            await self.notifier.job_needs_attention(tenant_id, job_id, "approval")
        elif self.engine is not None:
            self.engine.wake_at(run_at)

    # -- steering ----------------------------------------------------------------------------------
    async def approve(self, actor: Actor, job_id: int) -> Job:
        """Let a job that waits for approval run; its kind's own rows move with it."""
        actor.require(Role.operator, "approve jobs")
        return await self._move(
            actor,
            job_id,
            (JobStatus.pending_approval,),
            "job.approve",
            steer="approve",
            wake=True,
            status=JobStatus.queued,
            approved_by=actor.user_id,
        )

    async def reject(self, actor: Actor, job_id: int) -> Job:
        """Turn a job that waits for approval down (it is cancelled, with its kind's rows)."""
        actor.require(Role.operator, "reject jobs")
        return await self._move(
            actor,
            job_id,
            (JobStatus.pending_approval,),
            "job.reject",
            steer="reject",
            status=JobStatus.cancelled,
            last_error="rejected",
            finished_at=self.clock.now(),
        )

    async def retry(self, actor: Actor, job_id: int) -> Job:
        """Run a failed or dead job now; a dead job gets its full attempts back."""
        actor.require(Role.operator, "retry jobs")
        current = await self.get(actor, job_id)
        values: dict[str, Any] = {
            "status": JobStatus.queued,
            "run_at": self.clock.now(),
            "finished_at": None,
        }
        if current.status == JobStatus.dead:
            values["attempts"] = 0
        return await self._move(actor, job_id, RETRYABLE, "job.retry", wake=True, **values)

    async def retry_all(self, actor: Actor) -> int:
        """Retry every failed and dead job of the workspace; returns how many."""
        actor.require(Role.operator, "retry jobs")
        now = self.clock.now()
        done = 0
        async with self.uow.write() as session:
            ids = await job_repo.ids_with_status(session, actor.tenant_id, RETRYABLE)
            for job_id in ids:
                job = await job_repo.get(session, job_id, actor.tenant_id)
                if job is None:
                    continue
                values: dict[str, Any] = {
                    "status": JobStatus.queued,
                    "run_at": now,
                    "finished_at": None,
                    "updated_at": now,
                    "finished_by": actor.user_id,
                }
                if job.status == JobStatus.dead:
                    values["attempts"] = 0
                moved = await job_repo.transition(
                    session,
                    job_id=job_id,
                    tenant_id=actor.tenant_id,
                    from_statuses=RETRYABLE,
                    values=values,
                )
                if moved is not None:
                    done += 1
                    await record(
                        session,
                        self.clock,
                        tenant_id=actor.tenant_id,
                        actor=actor,
                        action="job.retry",
                        target=f"job:{job_id}",
                        details={"bulk": True},
                    )
            if done:
                self.uow.after_commit(lambda: self._wake(now))
        return done

    async def cancel(self, actor: Actor, job_id: int) -> Job:
        """Cancel a waiting job at once (with its kind's rows); a running one is asked to stop
        (cooperatively: its handler sees `cancel_requested`)."""
        actor.require(Role.operator, "cancel jobs")
        current = await self.get(actor, job_id)
        if current.status == JobStatus.running:
            if current.cancel_requested:
                raise await self._stale(actor, current)
            job = await self._move(
                actor, job_id, (JobStatus.running,), "job.cancel_requested", cancel_requested=True
            )
            if self.engine is not None:
                self.engine.request_cancel(job_id)
            return job
        return await self._move(
            actor,
            job_id,
            CANCELLABLE,
            "job.cancel",
            steer="cancel",
            status=JobStatus.cancelled,
            finished_at=self.clock.now(),
            last_error=f"cancelled by {actor.label}",
        )

    async def set_paused(self, actor: Actor, paused: bool) -> bool:
        """Pause or resume the workspace's queue; False when it already was."""
        actor.require(Role.operator, "pause or resume the queue")
        async with self.uow.write() as session:
            changed = await tenant_repo.set_paused(session, actor.tenant_id, paused)
            if changed:
                await record(
                    session,
                    self.clock,
                    tenant_id=actor.tenant_id,
                    actor=actor,
                    action="queue.pause" if paused else "queue.resume",
                    target="queue",
                )
                if not paused:
                    self.uow.after_commit(lambda: self._wake(self.clock.now()))
        return changed

    # -- helpers ---------------------------------------------------------------------------------
    async def _move(
        self,
        actor: Actor,
        job_id: int,
        from_statuses: tuple[str, ...],
        action: str,
        *,
        steer: SteerAction | None = None,
        wake: bool = False,
        **values: Any,
    ) -> Job:
        """One conditional UPDATE of the job row, its kind's hook and the audit row: one write."""
        now = self.clock.now()
        values.setdefault("updated_at", now)
        values.setdefault("finished_by", actor.user_id)
        async with self.uow.write() as session:
            job = await job_repo.transition(
                session,
                job_id=job_id,
                tenant_id=actor.tenant_id,
                from_statuses=from_statuses,
                values=values,
            )
            if job is not None:
                hook = (
                    self.registry.steering(job.kind).hook(steer)
                    if steer and self.registry
                    else None
                )
                if hook is not None:
                    await hook(Steer(session, job, actor, steer, now))  # type: ignore[arg-type]
                await record(
                    session,
                    self.clock,
                    tenant_id=actor.tenant_id,
                    actor=actor,
                    action=action,
                    target=f"job:{job_id}",
                    details={"kind": job.kind},
                )
                if wake:
                    run_at = job.run_at
                    self.uow.after_commit(lambda: self._wake(run_at))
        if job is None:
            raise await self._stale(actor, await self.get(actor, job_id))
        return job

    async def _stale(self, actor: Actor, job: Job) -> Conflict:
        """Why this press changes nothing: the job's state now and who put it there."""
        async with self.uow.read() as session:
            last = await audit_repo.last_for_target(session, actor.tenant_id, f"job:{job.id}")
            who = None
            if last is not None and last.action in PAST_TENSE and last.actor_id != actor.user_id:
                who = await operator_name(session, actor.tenant_id, last.actor_id)
        state = job.status.replace("_", " ")
        if last is not None and last.action in PAST_TENSE:
            when = fmt(last.at, actor.timezone)
            return Conflict(
                f"Job #{job.id} was already {PAST_TENSE[last.action]} by {who or 'you'} at "
                f"{when}; it is now {state}."
            )
        return Conflict(f"Job #{job.id} is {state} now; nothing changed.")

    def _wake(self, run_at: datetime) -> None:
        if self.engine is not None:
            self.engine.wake_at(run_at)
