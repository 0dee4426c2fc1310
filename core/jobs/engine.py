"""The job engine: claims due jobs from the `jobs` table and runs them (DESIGN.md §3).

APScheduler does the timing only: a fallback poll, a one-shot wake-up armed for the earliest
known `run_at`, the lease heartbeat, and periodic schedules that *enqueue* with a dedupe key.
The table stays the source of truth, so several processes can share one database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import Clock, SystemClock
from core.jobs.backoff import retry_delay
from core.jobs.context import JobContext
from core.jobs.queue import enqueue
from core.jobs.registry import JobKind, JobRegistry, PermanentFailure, RetryLater
from core.notifier import Notifier, NullNotifier
from core.settings import JobSettings
from storage.db import is_connection_lost
from storage.models import JobStatus
from storage.repositories import jobs as job_repo
from storage.repositories import tenants as tenant_repo
from storage.repositories.jobs import ClaimedJob
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # shared interval boundaries for every process
ERROR_TEXT_LIMIT = 4000

# (kind, final status, seconds) after every run; metrics subscribe here.
RunListener = Callable[[str, str, float], None]


@dataclass(frozen=True, slots=True)
class PeriodicSpec:
    name: str
    kind: str
    seconds: int | None = None
    cron: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    tenant_slug: str = tenant_repo.DEFAULT_SLUG


class JobEngine:
    """One per process. `start()` begins claiming; `stop()` drains and releases leases."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        registry: JobRegistry,
        settings: JobSettings,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        deps: dict[str, Any] | None = None,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        uow: UnitOfWork | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        bind = sessionmaker.kw["bind"]
        # no app unit of work (tests): reads use the write engine, correct but not lock-free
        self.uow = uow if uow is not None else UnitOfWork(bind, read_engine=bind)
        self.registry = registry
        self.settings = settings
        self.clock = clock or SystemClock()
        self.notifier = notifier or NullNotifier()
        self.deps = deps if deps is not None else {}
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.rng = rng or random.Random()
        self.listeners: list[RunListener] = []
        self._periodic: list[PeriodicSpec] = []
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._stop_reason: dict[int, str] = {}
        self._in_handler: set[int] = set()
        self._pump_lock = asyncio.Lock()
        self._pump_again = False
        # When does a finished job pump? When a pump stopped for want of capacity (due work may
        # be waiting), or when the finishing transaction saw due work (say a handler fanned out
        # jobs without a wake-up). Otherwise what becomes due has a wake-up armed (or the poll),
        # and a pump after every job would cost a transaction per job for nothing.
        self._saturated = False
        self._due_seen = False
        self._outcomes: list[tuple[int, dict[str, Any], asyncio.Future[bool]]] = []
        self._outcome_writer: asyncio.Task[None] | None = None
        self._accepting = False
        self._armed_at: datetime | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- life cycle ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._accepting and self._scheduler is not None and self._scheduler.running

    @property
    def active_job_ids(self) -> list[int]:
        return list(self._tasks)

    def add_periodic(self, spec: PeriodicSpec) -> None:
        if (spec.seconds is None) == (spec.cron is None):
            raise ValueError("a periodic schedule needs exactly one of seconds or cron")
        self._periodic.append(spec)

    async def start(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        sched = self._scheduler
        common = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        sched.add_job(
            self.pump, IntervalTrigger(seconds=self.settings.poll_seconds), id="pump", **common
        )
        sched.add_job(
            self._heartbeat,
            IntervalTrigger(seconds=max(0.2, self.settings.lease_seconds / 3)),
            id="heartbeat",
            **common,
        )
        for spec in self._periodic:
            trigger = (
                IntervalTrigger(seconds=spec.seconds, start_date=_EPOCH)
                if spec.seconds
                else CronTrigger.from_crontab(spec.cron, timezone=UTC)
            )
            sched.add_job(
                self._enqueue_periodic, trigger, args=[spec], id=f"periodic:{spec.name}", **common
            )
        sched.start()
        self._accepting = True
        log.info(
            "job engine %s started (concurrency %d)", self.worker_id, self.settings.concurrency
        )
        self._spawn(self.pump())

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Stop claiming, let running jobs finish for a grace period, then release their leases."""
        self._accepting = False
        sched = self._scheduler
        if sched is not None and sched.running:
            # Keep the heartbeat while running jobs drain, or a grace period longer than what
            # is left of their leases would hand them to another worker mid-run.
            for job in sched.get_jobs():
                if job.id != "heartbeat":
                    job.remove()
        # A claim already in flight still lands; its jobs must be among those drained below,
        # not left running under our lease after stop() returns.
        async with self._pump_lock:
            pass
        grace = self.settings.shutdown_timeout_seconds if grace_seconds is None else grace_seconds
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for job_id, task in list(self._tasks.items()):
                if task in pending:
                    self._interrupt(job_id, "shutdown")
            await asyncio.gather(*pending, return_exceptions=True)
        if sched is not None and sched.running:
            sched.shutdown(wait=False)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        log.info("job engine %s stopped", self.worker_id)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """One short transaction of the engine's own (claim, finish, heartbeat, release)."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    # -- waking up ---------------------------------------------------------------------------
    def wake_at(self, run_at: datetime) -> None:
        """A job was scheduled for `run_at`: make sure we are awake then, not at the next poll."""
        if not self._accepting or self._scheduler is None:
            return
        delay = (run_at - self.clock.now()).total_seconds()
        if delay <= 0.001:
            self._spawn(self.pump())
            return
        if self._armed_at is not None and self._armed_at <= run_at:
            return
        self._arm(run_at, delay)

    def _arm(self, run_at: datetime, delay: float) -> None:
        assert self._scheduler is not None
        self._armed_at = run_at
        when = datetime.now(UTC) + timedelta(seconds=delay)  # scheduler runs on real time
        self._scheduler.add_job(
            self._on_wake,
            DateTrigger(run_date=when),
            id="wake",
            replace_existing=True,
            misfire_grace_time=None,
        )

    async def _on_wake(self) -> None:
        # Spawned, not awaited: the pump re-arms this very job, which must not be "running".
        self._armed_at = None
        self._spawn(self.pump())

    def _arm_for(self, nxt: datetime | None, now: datetime) -> None:
        """Arm the wake-up for `nxt` (the next known run_at or lease expiry) unless sooner."""
        if nxt is not None and self._accepting:
            delay = (nxt - now).total_seconds()
            if self._armed_at is None or nxt < self._armed_at or self._armed_at <= now:
                self._arm(nxt, max(delay, 0.0))

    # -- claiming ------------------------------------------------------------------------------
    async def pump(self) -> None:
        """Claim as many due jobs as there is capacity for, and start them."""
        if not self._accepting:
            return
        if self._pump_lock.locked():
            self._pump_again = True
            return
        async with self._pump_lock:
            try:
                while self._accepting:
                    self._pump_again = False
                    capacity = self.settings.concurrency - len(self._tasks)
                    if capacity <= 0:
                        self._saturated = True  # a finishing job pumps again
                        break
                    claimed, nxt = await self._claim(capacity)
                    for job in claimed:
                        self._tasks[job.id] = asyncio.create_task(
                            self._run(job), name=f"job-{job.id}"
                        )
                    if len(claimed) == capacity:
                        continue  # there may be more due
                    self._saturated = False
                    # Against the time now, not the claim's: what came due while the claim
                    # ran is due at once, not a claim's duration later.
                    self._arm_for(nxt, self.clock.now())
                    # A wake-up that arrived while we claimed found the lock taken and only set
                    # the flag: its job may be due now (so not armed for); go round again.
                    if not self._pump_again:
                        break
            except Exception:
                log.exception("job pump failed; the next poll will try again")

    async def _claim(self, limit: int) -> tuple[list[ClaimedJob], datetime | None]:
        """Claim up to `limit` due jobs; when fewer were due, also when to look next.

        One transaction for both, so an idle pump costs one round of locking, not two.
        """
        now = self.clock.now()
        lease = timedelta(seconds=self.settings.lease_seconds)
        nxt = None
        async with self._transaction() as session:
            claimed = await job_repo.claim(
                session, worker=self.worker_id, now=now, lease=lease, limit=limit
            )
            if len(claimed) < limit:
                nxt = await job_repo.next_wakeup(session, now)
        return claimed, nxt

    async def _heartbeat(self) -> None:
        ids = list(self._tasks)
        if not ids:
            return
        now = self.clock.now()
        lease = timedelta(seconds=self.settings.lease_seconds)
        try:
            async with self._transaction() as session:
                held = await job_repo.heartbeat(
                    session, worker=self.worker_id, ids=ids, now=now, lease=lease
                )
        except Exception:
            log.exception("lease heartbeat failed")
            return
        for job_id in ids:
            task = self._tasks.get(job_id)
            if task is None:
                continue
            if job_id not in held:
                self._interrupt(job_id, "lost")
            elif held[job_id]:
                self._interrupt(job_id, "cancel")

    def request_cancel(self, job_id: int) -> bool:
        """Interrupt a job running in this process (its row already says cancel_requested)."""
        return self._interrupt(job_id, "cancel")

    def _interrupt(self, job_id: int, reason: str) -> bool:
        task = self._tasks.get(job_id)
        if task is None or task.done():
            return False
        self._stop_reason[job_id] = reason
        # Only a handler is interrupted. A job whose handler has not started yet sees the
        # reason before starting it; one already writing its outcome finishes that write
        # (cancelling it there would leave the row running until its lease ran out).
        if job_id not in self._in_handler:
            return False
        task.cancel()
        return True

    # -- running ---------------------------------------------------------------------------------
    async def _run(self, job: ClaimedJob) -> None:
        started = time.perf_counter()
        status = JobStatus.running
        try:
            status = await self._execute(job)
        finally:
            self._tasks.pop(job.id, None)
            self._stop_reason.pop(job.id, None)
            elapsed = time.perf_counter() - started
            for listener in self.listeners:
                listener(job.kind, str(status), elapsed)
            if self._accepting and (self._saturated or self._due_seen):
                self._due_seen = False
                self._spawn(self.pump())

    async def _execute(self, job: ClaimedJob) -> str:
        kind = self.registry.get(job.kind)
        if job.cancel_requested:
            return await self._finish(
                job, JobStatus.cancelled, last_error="cancelled before it ran"
            )
        if kind is None:
            return await self._die(job, f"unknown job kind {job.kind!r}")
        if job.attempts > job.max_attempts:
            return await self._die(job, "its worker stopped mid-run too many times (lease expired)")
        ctx = JobContext(
            job_id=job.id,
            tenant_id=job.tenant_id,
            kind=job.kind,
            payload=dict(job.payload or {}),
            attempt=job.attempts,
            max_attempts=job.max_attempts,
            sessionmaker=self.sessionmaker,
            clock=self.clock,
            notifier=self.notifier,
            deps=self.deps,
            uow=self.uow,
        )
        if job.id in self._stop_reason:  # interrupted before its handler began
            return await self._stopped(job, self._stop_reason[job.id], ran=False)
        try:
            result = await self._call_handler(kind, ctx)
        except asyncio.CancelledError:
            reason = self._stop_reason.get(job.id)
            if reason is None:
                raise
            return await self._stopped(job, reason)
        except RetryLater as exc:
            run_at = self.clock.now() + timedelta(seconds=max(0.0, exc.seconds))
            status = await self._finish(
                job,
                JobStatus.queued,
                run_at=run_at,
                attempts=job.attempts - 1,
                last_error=_short(f"rescheduled: {exc.message}"),
            )
            self.wake_at(run_at)
            return status
        except PermanentFailure as exc:
            return await self._die(job, exc.message)
        except Exception as exc:
            error = _describe(exc)
            if job.attempts >= job.max_attempts:
                return await self._die(job, error)
            delay = retry_delay(
                job.attempts,
                self.settings.backoff_base_seconds,
                self.settings.backoff_cap_seconds,
                self.rng,
            )
            run_at = self.clock.now() + timedelta(seconds=delay)
            log.info(
                "job %s (%s) attempt %d failed: %s; retry in %.0fs",
                job.id,
                job.kind,
                job.attempts,
                error,
                delay,
            )
            status = await self._finish(job, JobStatus.failed, run_at=run_at, last_error=error)
            self.wake_at(run_at)
            return status
        return await self._finish(job, JobStatus.succeeded, result=result, last_error=None)

    async def _stopped(self, job: ClaimedJob, reason: str, *, ran: bool = True) -> str:
        """Write what an interruption means: cancelled, handed back at shutdown, or lost."""
        if reason == "cancel":
            error = "cancelled while running" if ran else "cancelled before it ran"
            return await self._finish(job, JobStatus.cancelled, last_error=error)
        if reason == "shutdown":
            async with self._transaction() as session:
                await job_repo.release(
                    session, worker=self.worker_id, ids=[job.id], now=self.clock.now()
                )
            return "released"
        log.warning("job %s: lease lost to another worker; stopped here", job.id)
        return "lost"

    async def _call_handler(self, kind: JobKind, ctx: JobContext) -> dict[str, Any] | None:
        self._in_handler.add(ctx.job_id)
        try:
            if kind.timeout_seconds:
                return await asyncio.wait_for(kind.handler(ctx), kind.timeout_seconds)
            return await kind.handler(ctx)
        finally:
            self._in_handler.discard(ctx.job_id)

    async def _die(self, job: ClaimedJob, error: str) -> str:
        status = await self._finish(job, JobStatus.dead, last_error=_short(error))
        if status == JobStatus.dead:
            log.warning("job %s (%s) is dead: %s", job.id, job.kind, error)
            self._spawn(self.notifier.job_needs_attention(job.tenant_id, job.id, "dead"))
        return status

    async def _finish(self, job: ClaimedJob, status: str, **values: Any) -> str:
        now = self.clock.now()
        values.setdefault("updated_at", now)
        if status in (JobStatus.succeeded, JobStatus.dead, JobStatus.cancelled):
            values.setdefault("finished_at", now)
        written: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._outcomes.append((job.id, {"status": status, **values}, written))
        if self._outcome_writer is None or self._outcome_writer.done():
            self._outcome_writer = asyncio.create_task(self._write_outcomes())
        ok = await written
        if not ok:
            log.warning(
                "job %s: outcome %s not written, the lease was no longer ours", job.id, status
            )
            return "lost"
        return status

    async def _write_outcomes(self) -> None:
        """Write finished jobs' outcomes; those that pile up meanwhile share one transaction.

        One job finishing alone is written at once, as before. When jobs finish faster than
        outcomes can be committed, the ones waiting go together: one lock round (SQLite) or
        one WAL flush (PostgreSQL) for several jobs instead of one each.
        """
        while self._outcomes:
            batch, self._outcomes = self._outcomes, []
            try:
                written, due = await self._write_batch(batch)
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self._due_seen = self._due_seen or due
            for (_, _, future), ok in zip(batch, written, strict=True):
                if not future.done():
                    future.set_result(ok)

    async def _write_batch(
        self, batch: list[tuple[int, dict[str, Any], asyncio.Future[bool]]]
    ) -> tuple[list[bool], bool]:
        """One transaction for `batch`; tried again on a fresh connection when the database
        connection was lost mid-write. Giving up would leave the jobs running under a lease
        nobody renews, so they would run a second time once it expired. The write only lands
        while we still hold the lease, so a retry after a commit whose answer was lost changes
        nothing (the job shows as "lost" here, and ran once)."""
        deadline = time.monotonic() + max(5.0, self.settings.lease_seconds)
        delay = 0.05
        while True:
            try:
                async with self._transaction() as session:
                    written = [
                        await job_repo.finish(
                            session, job_id=job_id, worker=self.worker_id, values=values
                        )
                        for job_id, values, _ in batch
                    ]
                    due = not self._saturated and await job_repo.any_due(session, self.clock.now())
                return written, due
            except Exception as exc:
                if not is_connection_lost(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("job outcomes: database connection lost; writing them again")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    # -- periodic work ------------------------------------------------------------------------
    async def _enqueue_periodic(self, spec: PeriodicSpec) -> None:
        now = self.clock.now()
        if spec.seconds:
            slot = int(now.timestamp() // spec.seconds * spec.seconds)
        else:
            slot = int(now.timestamp() // 60 * 60)
        try:
            async with self._transaction() as session:
                tenant = await tenant_repo.get_by_slug(session, spec.tenant_slug)
                if tenant is None:
                    return
                job_id = await enqueue(
                    session,
                    tenant_id=tenant.id,
                    kind=spec.kind,
                    now=now,
                    payload=dict(spec.payload),
                    dedupe_key=f"periodic:{spec.name}:{slot}",
                    max_attempts=self.settings.default_max_attempts,
                )
        except Exception:
            log.exception("periodic %s: could not enqueue", spec.name)
            return
        if job_id is not None:
            self._spawn(self.pump())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _short(text: str) -> str:
    return text if len(text) <= ERROR_TEXT_LIMIT else text[: ERROR_TEXT_LIMIT - 1] + "…"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    message = getattr(exc, "message", None) or str(exc)
    return _short(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
