"""Job rows: insert with dedupe, atomic claim with a lease, heartbeat, finish, queries.

Callers own the transaction; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import upsert
from storage.models import Job, JobStatus, Tenant
from storage.types import UTCDateTime

RUNNABLE = (JobStatus.queued, JobStatus.failed)
FINISHED = (JobStatus.succeeded, JobStatus.cancelled, JobStatus.dead)


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    tenant_id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    run_at: datetime
    cancel_requested: bool


async def insert(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Insert a job; with a dedupe_key already taken, insert nothing and return None."""
    if values.get("dedupe_key") is None:
        result = await session.execute(Job.__table__.insert().values(**values).returning(Job.id))
        return result.scalar_one()
    stmt = upsert.insert(session, Job.__table__).values(**values)
    stmt = stmt.on_conflict_do_nothing(index_elements=["dedupe_key"])
    result = await session.execute(stmt.returning(Job.id))
    return result.scalar_one_or_none()


async def insert_many(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert without dedupe (benchmarks, backfills that fan out)."""
    if rows:
        await session.execute(Job.__table__.insert(), list(rows))


async def find_by_dedupe_key(session: AsyncSession, key: str) -> Job | None:
    return (await session.execute(select(Job).where(Job.dedupe_key == key))).scalar_one_or_none()


# The pump runs these after every wake-up, so they are built once, with bound parameters:
# constructing and cache-keying the statement per call cost as much CPU as executing it
# (claim: 1.6 ms -> 0.9 ms CPU per transaction on SQLite, measured with bench/jobs_bench.py).
# Plain Core on the table, not ORM-enabled DML: nothing here needs the identity map.
_jobs = Job.__table__
_NOW = bindparam("now", type_=UTCDateTime())

_NOT_PAUSED = _jobs.c.tenant_id.not_in(select(Tenant.id).where(Tenant.queue_paused.is_(True)))
_DUE_NOW = (
    *(and_(_jobs.c.status == status, _jobs.c.run_at <= _NOW) for status in RUNNABLE),
    and_(_jobs.c.status == JobStatus.running, _jobs.c.lease_expires_at < _NOW),
)
_DUE = and_(or_(*_DUE_NOW), _NOT_PAUSED)

# One EXISTS per status, each an index range: as `SELECT id WHERE <_DUE> LIMIT 1` SQLite
# chose to scan the whole table hoping for an early hit (15 ms with 100,000 future jobs,
# after every finished job).
_ANY_DUE = select(or_(*(select(_jobs.c.id).where(due, _NOT_PAUSED).exists() for due in _DUE_NOW)))

_CLAIM = (
    _jobs.update()
    .where(
        _jobs.c.id.in_(
            select(_jobs.c.id)
            .where(_DUE)
            .order_by(_jobs.c.priority.desc(), _jobs.c.run_at, _jobs.c.id)
            .limit(bindparam("limit", type_=Integer()))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
    .values(
        status=JobStatus.running,
        lease_owner=bindparam("worker", type_=String()),
        lease_expires_at=bindparam("lease_expires_at", type_=UTCDateTime()),
        attempts=_jobs.c.attempts + 1,
        started_at=_NOW,
        updated_at=_NOW,
    )
    .returning(
        _jobs.c.id,
        _jobs.c.tenant_id,
        _jobs.c.kind,
        _jobs.c.payload,
        _jobs.c.attempts,
        _jobs.c.max_attempts,
        _jobs.c.run_at,
        _jobs.c.cancel_requested,
    )
)


def _first_after(column: Any, status: str, strict: bool) -> Any:
    after = column > _NOW if strict else column >= _NOW
    return (
        select(column)
        .where(_jobs.c.status == status, after)
        .order_by(column)
        .limit(1)
        .scalar_subquery()
    )


# One ORDER BY ... LIMIT 1 lookup per status, each the first entry of an index range:
# `min(run_at) WHERE status IN (...)` made PostgreSQL scan every future job (a sequential
# scan, 36 ms per pump with 100,000 queued).
_NEXT_WAKEUP = select(
    *(_first_after(_jobs.c.run_at, status, strict=True) for status in RUNNABLE),
    _first_after(_jobs.c.lease_expires_at, JobStatus.running, strict=False),
)


async def any_due(session: AsyncSession, now: datetime) -> bool:
    """Is there anything `claim` would take right now? (One index probe.)"""
    return bool((await session.execute(_ANY_DUE, {"now": now})).scalar())


async def claim(
    session: AsyncSession, *, worker: str, now: datetime, lease: timedelta, limit: int
) -> list[ClaimedJob]:
    """Atomically take up to `limit` due jobs (or jobs whose lease expired) for `worker`.

    One statement: PostgreSQL locks the chosen rows with FOR UPDATE SKIP LOCKED so concurrent
    workers pick disjoint sets; SQLite runs the whole UPDATE under its single write lock.
    Jobs of paused tenants are not due.
    """
    params = {"now": now, "worker": worker, "lease_expires_at": now + lease, "limit": limit}
    rows = (await session.execute(_CLAIM, params)).all()
    return [ClaimedJob(*row) for row in rows]


async def heartbeat(
    session: AsyncSession, *, worker: str, ids: Sequence[int], now: datetime, lease: timedelta
) -> dict[int, bool]:
    """Extend the leases `worker` still holds; returns {id: cancel_requested} for those held."""
    if not ids:
        return {}
    stmt = (
        update(Job)
        .where(Job.id.in_(ids), Job.lease_owner == worker, Job.status == JobStatus.running)
        .values(lease_expires_at=now + lease)
        .returning(Job.id, Job.cancel_requested)
        .execution_options(synchronize_session=False)
    )
    return {row[0]: row[1] for row in (await session.execute(stmt)).all()}


async def finish(
    session: AsyncSession, *, job_id: int, worker: str, values: dict[str, Any]
) -> bool:
    """Write the outcome of a run, only if `worker` still holds the lease."""
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == worker, Job.status == JobStatus.running)
        .values(lease_owner=None, lease_expires_at=None, **values)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).rowcount == 1


async def release(session: AsyncSession, *, worker: str, ids: Sequence[int], now: datetime) -> int:
    """Give back leases at shutdown: the jobs are queued again and the attempt is not counted."""
    if not ids:
        return 0
    stmt = (
        update(Job)
        .where(Job.id.in_(ids), Job.lease_owner == worker, Job.status == JobStatus.running)
        .values(
            status=JobStatus.queued,
            lease_owner=None,
            lease_expires_at=None,
            attempts=Job.attempts - 1,
            run_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).rowcount


async def next_wakeup(session: AsyncSession, now: datetime) -> datetime | None:
    """The earliest future moment a job becomes due or a lease runs out.

    Only future moments: what is due already was offered to the claim that ran just before;
    if it was not taken (its tenant is paused), arming for a past time would spin the pump.
    """
    row = (await session.execute(_NEXT_WAKEUP, {"now": now})).one()
    times = [value for value in row if value is not None]
    return min(times) if times else None


async def get(session: AsyncSession, job_id: int, tenant_id: int | None = None) -> Job | None:
    stmt = select(Job).where(Job.id == job_id)
    if tenant_id is not None:
        stmt = stmt.where(Job.tenant_id == tenant_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_for_update(session: AsyncSession, job_id: int, tenant_id: int) -> Job | None:
    stmt = select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(
    session: AsyncSession,
    *,
    tenant_id: int,
    statuses: Sequence[str] | None,
    kind: str | None,
    offset: int,
    limit: int,
) -> tuple[list[Job], int]:
    conds = [Job.tenant_id == tenant_id]
    if statuses:
        conds.append(Job.status.in_(statuses))
    if kind:
        conds.append(Job.kind == kind)
    total = (
        await session.execute(select(func.count()).select_from(Job).where(*conds))
    ).scalar_one()
    rows = (
        (
            await session.execute(
                select(Job)
                .where(*conds)
                .order_by(Job.updated_at.desc(), Job.id.desc())
                .offset(offset)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return list(rows), total


async def ids_with_status(
    session: AsyncSession, tenant_id: int, statuses: Sequence[str]
) -> list[int]:
    stmt = select(Job.id).where(Job.tenant_id == tenant_id, Job.status.in_(statuses))
    return list((await session.execute(stmt.order_by(Job.id))).scalars().all())


async def count_by_status(session: AsyncSession, tenant_id: int | None = None) -> dict[str, int]:
    stmt = select(Job.status, func.count()).group_by(Job.status)
    if tenant_id is not None:
        stmt = stmt.where(Job.tenant_id == tenant_id)
    return {status: n for status, n in (await session.execute(stmt)).all()}


async def prune_finished(session: AsyncSession, before: datetime) -> int:
    stmt = delete(Job).where(Job.status.in_(FINISHED), Job.finished_at < before)
    return (await session.execute(stmt.execution_options(synchronize_session=False))).rowcount


async def transition(
    session: AsyncSession,
    *,
    job_id: int,
    tenant_id: int,
    from_statuses: Sequence[str],
    values: dict[str, Any],
) -> Job | None:
    """Move a job between states only if it is still in one of `from_statuses` (no races).

    Returns the job as it is now: `populate_existing` refreshes an instance the session already
    holds (callers often read the job first), which RETURNING alone would hand back unchanged.
    """
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.tenant_id == tenant_id, Job.status.in_(from_statuses))
        .values(**values)
        .returning(Job)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()
