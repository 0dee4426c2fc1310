"""Operators steering jobs (JobService) on SQLite and PostgreSQL: races, roles, workspaces.

A stale or repeated press must change nothing and say who acted first; a viewer or another
workspace must not reach a job at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.actor import Actor
from core.clock import FrozenClock
from core.errors import Conflict, Forbidden, NotFound
from core.jobs.registry import JobRegistry, Steer, Steering
from core.notifier import RecordingNotifier
from core.services.audit import record
from core.services.jobs import JobService
from core.services.operators import bootstrap_owners
from storage.models import AuditEntry, Job, JobStatus, Operator, Role
from storage.repositories import jobs as job_repo
from storage.repositories import tenants as tenant_repo
from storage.uow import UnitOfWork, over_session

OWNER, ALICE, VERA, OTTO = 1001, 1002, 1003, 2001


@dataclass
class Desk:
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: FrozenClock
    notifier: RecordingNotifier
    tenant_id: int
    other_tenant_id: int
    olga: Actor  # owner
    alice: Actor  # operator
    vera: Actor  # viewer
    otto: Actor  # owner of another workspace

    async def call(self, action: Callable[[JobService], Awaitable[Any]]) -> Any:
        """One service call in its own session, like one button press."""
        async with self.sessionmaker() as s:
            return await action(JobService(over_session(s), self.clock, self.notifier))

    async def add_job(self, status: str = JobStatus.queued, **values: Any) -> int:
        now = self.clock.now()
        row: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "kind": "t",
            "payload": {},
            "status": status,
            "priority": 0,
            "run_at": now,
            "attempts": 0,
            "max_attempts": 3,
            "cancel_requested": False,
            "requires_approval": status == JobStatus.pending_approval,
            "created_at": now,
            "updated_at": now,
        }
        row.update(values)
        async with self.sessionmaker() as s, s.begin():
            job_id = await job_repo.insert(s, row)
        assert job_id is not None
        return job_id

    async def job(self, job_id: int) -> Job:
        async with self.sessionmaker() as s:
            job = await s.get(Job, job_id)
        assert job is not None
        return job

    async def snapshot(self, job_id: int) -> dict[str, Any]:
        job = await self.job(job_id)
        return {c.key: getattr(job, c.key) for c in Job.__table__.columns}

    async def audit(self) -> list[tuple[int | None, str, str | None]]:
        async with self.sessionmaker() as s:
            rows = await s.execute(
                select(AuditEntry.actor_id, AuditEntry.action, AuditEntry.target).order_by(
                    AuditEntry.id
                )
            )
            return [tuple(r) for r in rows.all()]  # type: ignore[misc]


@pytest.fixture
async def desk(sessionmaker) -> Desk:
    clock = FrozenClock()
    async with sessionmaker() as s:
        tenant = await bootstrap_owners(s, clock, [OWNER])
        other = await tenant_repo.create(s, "other", "Other", clock.now())
        ops = {}
        for user_id, tenant_id, role, name in (
            (ALICE, tenant.id, Role.operator, "Alice"),
            (VERA, tenant.id, Role.viewer, "Vera"),
            (OTTO, other.id, Role.owner, "Otto"),
        ):
            ops[user_id] = Operator(
                tenant_id=tenant_id,
                telegram_user_id=user_id,
                role=role,
                display_name=name,
                timezone="UTC",
                notify=True,
                created_at=clock.now(),
            )
        s.add_all(ops.values())
        await s.flush()
        olga = (
            await s.execute(select(Operator).where(Operator.telegram_user_id == OWNER))
        ).scalar_one()
        olga.display_name = "Olga"
        ops[OWNER] = olga
        await s.commit()

    def actor(user_id: int) -> Actor:
        op = ops[user_id]
        return Actor(op.id, user_id, op.tenant_id, Role(op.role), "UTC", op.display_name, op.notify)

    return Desk(
        sessionmaker=sessionmaker,
        clock=clock,
        notifier=RecordingNotifier(),
        tenant_id=tenant.id,
        other_tenant_id=other.id,
        olga=actor(OWNER),
        alice=actor(ALICE),
        vera=actor(VERA),
        otto=actor(OTTO),
    )


# -- a second press changes nothing and says who was first --------------------------------------


async def test_double_approve(desk: Desk) -> None:
    job_id = await desk.add_job(JobStatus.pending_approval)
    job = await desk.call(lambda svc: svc.approve(desk.alice, job_id))
    assert (job.status, job.approved_by, job.finished_by) == (JobStatus.queued, ALICE, ALICE)
    before, audit = await desk.snapshot(job_id), await desk.audit()
    assert audit == [(ALICE, "job.approve", f"job:{job_id}")]

    desk.clock.advance(60)
    with pytest.raises(Conflict) as err:
        await desk.call(lambda svc: svc.approve(desk.olga, job_id))
    assert err.value.message == (
        f"Job #{job_id} was already approved by Alice at 2026-01-01 00:00 UTC; it is now queued."
    )
    with pytest.raises(Conflict) as err:
        await desk.call(lambda svc: svc.reject(desk.olga, job_id))
    assert "already approved by Alice" in err.value.message
    with pytest.raises(Conflict) as err:
        await desk.call(lambda svc: svc.approve(desk.alice, job_id))
    assert "already approved by you" in err.value.message

    assert await desk.snapshot(job_id) == before
    assert await desk.audit() == audit


async def test_double_reject(desk: Desk) -> None:
    job_id = await desk.add_job(JobStatus.pending_approval)
    job = await desk.call(lambda svc: svc.reject(desk.olga, job_id))
    assert (job.status, job.last_error) == (JobStatus.cancelled, "rejected")
    before, audit = await desk.snapshot(job_id), await desk.audit()
    for press in (
        lambda svc: svc.reject(desk.alice, job_id),
        lambda svc: svc.approve(desk.alice, job_id),
    ):
        with pytest.raises(Conflict) as err:
            await desk.call(press)
        assert "already rejected by Olga" in err.value.message
        assert err.value.message.endswith("it is now cancelled.")
    assert await desk.snapshot(job_id) == before
    assert await desk.audit() == audit


async def test_double_retry_of_a_dead_job(desk: Desk) -> None:
    job_id = await desk.add_job(
        JobStatus.dead, attempts=3, last_error="boom", finished_at=desk.clock.now()
    )
    desk.clock.advance(30)
    job = await desk.call(lambda svc: svc.retry(desk.alice, job_id))
    # The returned job is the row as it is now (not the copy read before the update).
    assert (job.status, job.attempts, job.finished_at, job.run_at) == (
        JobStatus.queued,
        0,
        None,
        desk.clock.now(),
    )
    before, audit = await desk.snapshot(job_id), await desk.audit()

    with pytest.raises(Conflict) as err:
        await desk.call(lambda svc: svc.retry(desk.olga, job_id))
    assert "already retried by Alice" in err.value.message
    assert await desk.snapshot(job_id) == before
    assert await desk.audit() == audit


async def test_retry_of_a_failed_job_keeps_its_attempts(desk: Desk) -> None:
    later = desk.clock.now() + timedelta(minutes=10)
    job_id = await desk.add_job(JobStatus.failed, attempts=2, run_at=later, last_error="x")
    job = await desk.call(lambda svc: svc.retry(desk.alice, job_id))
    assert (job.status, job.attempts, job.run_at) == (JobStatus.queued, 2, desk.clock.now())


async def test_double_cancel_of_a_queued_job(desk: Desk) -> None:
    job_id = await desk.add_job(JobStatus.queued)
    job = await desk.call(lambda svc: svc.cancel(desk.alice, job_id))
    assert (job.status, job.last_error) == (JobStatus.cancelled, "cancelled by Alice")
    before, audit = await desk.snapshot(job_id), await desk.audit()
    with pytest.raises(Conflict) as err:
        await desk.call(lambda svc: svc.cancel(desk.olga, job_id))
    assert "already cancelled by Alice" in err.value.message
    with pytest.raises(Conflict):
        await desk.call(lambda svc: svc.retry(desk.olga, job_id))  # cancelled is not retryable
    assert await desk.snapshot(job_id) == before
    assert await desk.audit() == audit


async def test_double_cancel_of_a_running_job(desk: Desk) -> None:
    job_id = await desk.add_job(JobStatus.running, attempts=1, lease_owner="w")
    job = await desk.call(lambda svc: svc.cancel(desk.alice, job_id))
    assert (job.status, job.cancel_requested) == (JobStatus.running, True)
    before, audit = await desk.snapshot(job_id), await desk.audit()
    with pytest.raises(Conflict) as err:
        await desk.call(lambda svc: svc.cancel(desk.olga, job_id))
    assert "already asked to cancel by Alice" in err.value.message
    assert await desk.snapshot(job_id) == before
    assert await desk.audit() == audit


async def test_a_press_that_does_not_fit_the_state(desk: Desk) -> None:
    presses = [
        (JobStatus.queued, "approve"),
        (JobStatus.succeeded, "retry"),
        (JobStatus.running, "reject"),
        (JobStatus.succeeded, "cancel"),
    ]
    for status, press in presses:
        job_id = await desk.add_job(status)
        before = await desk.snapshot(job_id)
        with pytest.raises(Conflict) as err:
            await desk.call(
                lambda svc, press=press, job_id=job_id: getattr(svc, press)(desk.alice, job_id)
            )
        assert err.value.message == f"Job #{job_id} is {status} now; nothing changed."
        assert await desk.snapshot(job_id) == before
    assert await desk.audit() == []


# -- workspaces and roles -----------------------------------------------------------------------


ACTIONS: dict[str, Callable[[JobService, Actor, int], Awaitable[Any]]] = {
    "get": lambda svc, actor, job_id: svc.get(actor, job_id),
    "approve": lambda svc, actor, job_id: svc.approve(actor, job_id),
    "reject": lambda svc, actor, job_id: svc.reject(actor, job_id),
    "retry": lambda svc, actor, job_id: svc.retry(actor, job_id),
    "cancel": lambda svc, actor, job_id: svc.cancel(actor, job_id),
}


async def test_another_workspaces_job_is_not_found(desk: Desk) -> None:
    for status in (JobStatus.pending_approval, JobStatus.dead, JobStatus.queued):
        job_id = await desk.add_job(status)
        before = await desk.snapshot(job_id)
        for name, action in ACTIONS.items():
            with pytest.raises(NotFound) as err:
                await desk.call(
                    lambda svc, action=action, job_id=job_id: action(svc, desk.otto, job_id)
                )
            assert err.value.message == f"Job #{job_id} does not exist in your workspace.", name
            assert await desk.snapshot(job_id) == before, name
    assert await desk.audit() == []


async def test_a_viewer_may_look_but_not_touch(desk: Desk) -> None:
    ids = {
        status: await desk.add_job(status)
        for status in (JobStatus.pending_approval, JobStatus.dead, JobStatus.queued)
    }
    before = {job_id: await desk.snapshot(job_id) for job_id in ids.values()}

    job = await desk.call(lambda svc: svc.get(desk.vera, ids[JobStatus.queued]))
    assert job.id == ids[JobStatus.queued]
    page = await desk.call(lambda svc: svc.page(desk.vera, "all"))
    assert page.total == 3

    presses = [
        lambda svc: svc.approve(desk.vera, ids[JobStatus.pending_approval]),
        lambda svc: svc.reject(desk.vera, ids[JobStatus.pending_approval]),
        lambda svc: svc.retry(desk.vera, ids[JobStatus.dead]),
        lambda svc: svc.retry_all(desk.vera),
        lambda svc: svc.cancel(desk.vera, ids[JobStatus.queued]),
        lambda svc: svc.set_paused(desk.vera, True),
    ]
    for press in presses:
        with pytest.raises(Forbidden) as err:
            await desk.call(press)
        assert err.value.message.startswith("Your role (viewer) cannot")
    assert {job_id: await desk.snapshot(job_id) for job_id in ids.values()} == before
    assert await desk.audit() == []
    async with desk.sessionmaker() as s:
        assert not (await tenant_repo.get(s, desk.tenant_id)).queue_paused  # type: ignore[union-attr]


# -- bulk retry and pause -------------------------------------------------------------------------


async def test_retry_all_retries_failed_and_dead_of_the_workspace(desk: Desk) -> None:
    failed = await desk.add_job(
        JobStatus.failed, attempts=2, run_at=desk.clock.now() + timedelta(hours=1)
    )
    dead = await desk.add_job(JobStatus.dead, attempts=3, finished_at=desk.clock.now())
    queued = await desk.add_job(JobStatus.queued)
    done = await desk.add_job(JobStatus.succeeded, attempts=1, finished_at=desk.clock.now())
    theirs = await desk.add_job(JobStatus.dead, tenant_id=desk.other_tenant_id)
    untouched = {job_id: await desk.snapshot(job_id) for job_id in (queued, done, theirs)}

    async with desk.sessionmaker() as s:
        assert (
            await JobService(over_session(s), desk.clock, desk.notifier).count_retryable(desk.alice)
            == 2
        )
    desk.clock.advance(5)
    assert await desk.call(lambda svc: svc.retry_all(desk.alice)) == 2

    for job_id, attempts in ((failed, 2), (dead, 0)):
        job = await desk.job(job_id)
        assert (job.status, job.attempts, job.run_at, job.finished_at, job.finished_by) == (
            JobStatus.queued,
            attempts,
            desk.clock.now(),
            None,
            ALICE,
        )
    assert {job_id: await desk.snapshot(job_id) for job_id in untouched} == untouched
    assert sorted(await desk.audit()) == sorted(
        [(ALICE, "job.retry", f"job:{failed}"), (ALICE, "job.retry", f"job:{dead}")]
    )
    # Nothing left to retry: a second "Retry all" does nothing.
    assert await desk.call(lambda svc: svc.retry_all(desk.olga)) == 0
    assert len(await desk.audit()) == 2


async def test_pause_and_resume_are_audited_once(desk: Desk) -> None:
    assert await desk.call(lambda svc: svc.set_paused(desk.alice, True)) is True
    assert await desk.call(lambda svc: svc.set_paused(desk.olga, True)) is False
    assert await desk.call(lambda svc: svc.is_paused(desk.vera)) is True
    assert await desk.call(lambda svc: svc.is_paused(desk.otto)) is False
    assert await desk.call(lambda svc: svc.set_paused(desk.olga, False)) is True
    assert await desk.audit() == [(ALICE, "queue.pause", "queue"), (OWNER, "queue.resume", "queue")]


async def test_submit_records_who_and_asks_for_approval(desk: Desk) -> None:
    job_id = await desk.call(
        lambda svc: svc.submit(
            desk.tenant_id, "t", {"x": 1}, actor=desk.alice, requires_approval=True
        )
    )
    job = await desk.job(job_id)
    assert (job.status, job.created_by, job.payload) == (
        JobStatus.pending_approval,
        ALICE,
        {"x": 1},
    )
    assert desk.notifier.events == [("approval", desk.tenant_id, job_id)]
    assert await desk.audit() == [(ALICE, "job.create", f"job:{job_id}")]
    again = await desk.call(
        lambda svc: svc.submit(desk.tenant_id, "t", dedupe_key="once", actor=desk.alice)
    )
    dup = await desk.call(
        lambda svc: svc.submit(desk.tenant_id, "t", dedupe_key="once", actor=desk.alice)
    )
    assert again is not None and dup is None
    async with desk.sessionmaker() as s:
        assert (await s.execute(select(func.count()).select_from(Job))).scalar_one() == 2
    assert len(await desk.audit()) == 2


async def test_page_filters_by_status_and_kind(desk: Desk) -> None:
    for i in range(11):
        await desk.add_job(JobStatus.failed if i % 2 else JobStatus.dead, kind=f"k{i % 3}")
        desk.clock.advance(1)
    await desk.add_job(JobStatus.succeeded)
    await desk.add_job(JobStatus.failed, tenant_id=desk.other_tenant_id)

    page = await desk.call(lambda svc: svc.page(desk.alice, "failed", size=4))
    assert (page.total, page.pages, page.page, len(page.jobs)) == (11, 3, 0, 4)
    last = await desk.call(lambda svc: svc.page(desk.alice, "failed", page=9, size=4))
    assert (last.page, len(last.jobs)) == (2, 3)  # past the end: the last page
    dead = await desk.call(lambda svc: svc.page(desk.alice, "dead", kind="k0", size=20))
    assert {(j.status, j.kind) for j in dead.jobs} == {(JobStatus.dead, "k0")}
    assert dead.total == 2  # i = 0, 6
    # Newest first.
    assert [j.updated_at for j in page.jobs] == sorted(
        (j.updated_at for j in page.jobs), reverse=True
    )


# -- a kind's own rows move with its job, in the same write ---------------------------------------


async def test_a_kinds_steering_runs_inside_the_jobs_write(desk: Desk, engine) -> None:
    uow = UnitOfWork(engine)
    seen: list[tuple[str, str, int, bool]] = []

    async def on_approve(steer: Steer) -> None:
        seen.append((steer.action, steer.job.status, steer.actor.user_id, uow.in_write()))
        await record(
            steer.session,
            desk.clock,
            tenant_id=steer.job.tenant_id,
            actor=steer.actor,
            action="t.approved",
            target=f"job:{steer.job.id}",
        )

    async def on_reject(steer: Steer) -> None:
        await record(
            steer.session, desk.clock, tenant_id=steer.job.tenant_id, actor=None, action="t.x"
        )
        raise Conflict("Its post moved on; nothing changed.")

    async def handler(_ctx: Any) -> None:
        return None

    registry = JobRegistry()
    registry.register("t", handler, steering=Steering(approve=on_approve, reject=on_reject))
    jobs = JobService(uow, desk.clock, desk.notifier, registry=registry)
    try:
        approved = await desk.add_job(JobStatus.pending_approval)
        rejected = await desk.add_job(JobStatus.pending_approval)
        await jobs.approve(desk.alice, approved)
        assert seen == [("approve", JobStatus.queued, ALICE, True)]
        # the hook refuses: the job row does not move either, and no audit row lands
        with pytest.raises(Conflict, match="moved on"):
            await jobs.reject(desk.alice, rejected)
        assert (await desk.job(rejected)).status == JobStatus.pending_approval
        assert (await desk.job(approved)).status == JobStatus.queued
        assert await desk.audit() == [
            (ALICE, "t.approved", f"job:{approved}"),
            (ALICE, "job.approve", f"job:{approved}"),
        ]
    finally:
        await uow.dispose()
