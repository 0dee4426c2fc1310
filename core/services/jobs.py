"""Operators steering the job queue: list, approve, reject, retry, cancel, pause.

Every transition is one conditional UPDATE, so a double press or a race between two operators
changes the job once; the loser gets a Conflict that says who did it first.
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
from core.notifier import Notifier
from core.services.audit import record
from core.services.operators import operator_name
from core.timefmt import fmt
from storage.models import Job, JobStatus, Role
from storage.repositories import audit as audit_repo
from storage.repositories import jobs as job_repo
from storage.repositories import tenants as tenant_repo

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
    def __init__(
        self,
        session: AsyncSession,
        clock: Clock,
        notifier: Notifier,
        engine: JobEngine | None = None,
    ) -> None:
        self.session = session
        self.clock = clock
        self.notifier = notifier
        self.engine = engine

    # -- reading --------------------------------------------------------------------------------
    async def page(
        self,
        actor: Actor,
        status: str = "active",
        kind: str | None = None,
        page: int = 0,
        size: int = 8,
    ) -> JobPage:
        statuses = STATUS_FILTERS[parse_status_filter(status)]
        page = max(0, page)
        jobs, total = await job_repo.list_page(
            self.session,
            tenant_id=actor.tenant_id,
            statuses=statuses,
            kind=kind,
            offset=page * size,
            limit=size,
        )
        pages = max(1, -(-total // size))
        if page >= pages and total:
            return await self.page(actor, status, kind, pages - 1, size)
        return JobPage(jobs, total, page, pages)

    async def get(self, actor: Actor, job_id: int) -> Job:
        job = await job_repo.get(self.session, job_id, actor.tenant_id)
        if job is None:
            raise NotFound(f"Job #{job_id} does not exist in your workspace.")
        return job

    async def count_retryable(self, actor: Actor) -> int:
        return len(await job_repo.ids_with_status(self.session, actor.tenant_id, RETRYABLE))

    async def counts(self, actor: Actor) -> dict[str, int]:
        return await job_repo.count_by_status(self.session, actor.tenant_id)

    async def is_paused(self, actor: Actor) -> bool:
        tenant = await tenant_repo.get(self.session, actor.tenant_id)
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
        commit: bool = True,
    ) -> int | None:
        """Queue a job; with `commit=False` it joins the caller's transaction (see after_commit)."""
        now = self.clock.now()
        job_id = await enqueue(
            self.session,
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
                self.session,
                self.clock,
                tenant_id=tenant_id,
                actor=actor,
                action="job.create",
                target=f"job:{job_id}",
                details={"kind": kind},
            )
        if commit:
            await self.session.commit()
            await self.after_commit(tenant_id, job_id, run_at or now, requires_approval)
        return job_id

    async def after_commit(
        self, tenant_id: int, job_id: int | None, run_at: datetime, requires_approval: bool
    ) -> None:
        if job_id is None:
            return
        if requires_approval:
            await self.notifier.job_needs_attention(tenant_id, job_id, "approval")
        elif self.engine is not None:
            self.engine.wake_at(run_at)

    # -- steering ----------------------------------------------------------------------------------
    async def approve(self, actor: Actor, job_id: int) -> Job:
        actor.require(Role.operator, "approve jobs")
        job = await self._move(
            actor,
            job_id,
            (JobStatus.pending_approval,),
            "job.approve",
            status=JobStatus.queued,
            approved_by=actor.user_id,
        )
        self._wake(job.run_at)
        return job

    async def reject(self, actor: Actor, job_id: int) -> Job:
        actor.require(Role.operator, "reject jobs")
        return await self._move(
            actor,
            job_id,
            (JobStatus.pending_approval,),
            "job.reject",
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
        job = await self._move(actor, job_id, RETRYABLE, "job.retry", **values)
        self._wake(job.run_at)
        return job

    async def retry_all(self, actor: Actor) -> int:
        """Retry every failed and dead job of the workspace; returns how many."""
        actor.require(Role.operator, "retry jobs")
        ids = await job_repo.ids_with_status(self.session, actor.tenant_id, RETRYABLE)
        now = self.clock.now()
        done = 0
        for job_id in ids:
            job = await job_repo.get(self.session, job_id, actor.tenant_id)
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
                self.session,
                job_id=job_id,
                tenant_id=actor.tenant_id,
                from_statuses=RETRYABLE,
                values=values,
            )
            if moved is not None:
                done += 1
                await record(
                    self.session,
                    self.clock,
                    tenant_id=actor.tenant_id,
                    actor=actor,
                    action="job.retry",
                    target=f"job:{job_id}",
                    details={"bulk": True},
                )
        await self.session.commit()
        if done:
            self._wake(now)
        return done

    async def cancel(self, actor: Actor, job_id: int) -> Job:
        """Cancel a waiting job at once; a running one is asked to stop (cooperatively)."""
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
            status=JobStatus.cancelled,
            finished_at=self.clock.now(),
            last_error=f"cancelled by {actor.label}",
        )

    async def set_paused(self, actor: Actor, paused: bool) -> bool:
        """Pause or resume the workspace's queue; False when it already was."""
        actor.require(Role.operator, "pause or resume the queue")
        changed = await tenant_repo.set_paused(self.session, actor.tenant_id, paused)
        if changed:
            await record(
                self.session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="queue.pause" if paused else "queue.resume",
                target="queue",
            )
        await self.session.commit()
        if changed and not paused:
            self._wake(self.clock.now())
        return changed

    # -- helpers ---------------------------------------------------------------------------------
    async def _move(
        self, actor: Actor, job_id: int, from_statuses: tuple[str, ...], action: str, **values: Any
    ) -> Job:
        values.setdefault("updated_at", self.clock.now())
        values.setdefault("finished_by", actor.user_id)
        job = await job_repo.transition(
            self.session,
            job_id=job_id,
            tenant_id=actor.tenant_id,
            from_statuses=from_statuses,
            values=values,
        )
        if job is None:
            await self.session.rollback()
            current = await self.get(actor, job_id)
            raise await self._stale(actor, current)
        await record(
            self.session,
            self.clock,
            tenant_id=actor.tenant_id,
            actor=actor,
            action=action,
            target=f"job:{job_id}",
            details={"kind": job.kind},
        )
        await self.session.commit()
        return job

    async def _stale(self, actor: Actor, job: Job) -> Conflict:
        """Why this press changes nothing: the job's state now and who put it there."""
        last = await audit_repo.last_for_target(self.session, actor.tenant_id, f"job:{job.id}")
        state = job.status.replace("_", " ")
        if last is not None and last.action in PAST_TENSE:
            who = (
                "you"
                if last.actor_id == actor.user_id
                else await operator_name(self.session, actor.tenant_id, last.actor_id)
            )
            when = fmt(last.at, actor.timezone)
            return Conflict(
                f"Job #{job.id} was already {PAST_TENSE[last.action]} by {who} at {when}; "
                f"it is now {state}."
            )
        return Conflict(f"Job #{job.id} is {state} now; nothing changed.")

    def _wake(self, run_at: datetime) -> None:
        if self.engine is not None:
            self.engine.wake_at(run_at)
