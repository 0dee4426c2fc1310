"""Job engine: claim throughput and dispatch lateness, on SQLite and (optionally) PostgreSQL.

    python -m bench.jobs_bench                                   # SQLite only
    python -m bench.jobs_bench --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test
    python -m bench.jobs_bench --quick                           # smaller, for a smoke run

Every number comes with a baseline measured in the same run on the same database, so the
README can state ratios rather than absolute speeds of one machine:

* **claim** — `storage.repositories.jobs.claim` in batches of `--batch` over pre-inserted
  due jobs, one transaction per batch (what the engine's pump does when it has capacity).
  Also claim with limit 1 (one job per statement: the cost of the claim statement itself).
  *Baseline*: the plainest write there is, `UPDATE jobs SET status=… WHERE id = ?`, one row
  per transaction through the same session factory.
* **engine** — a started `JobEngine` (concurrency 8) draining pre-inserted due jobs with a
  no-op handler: claim, run, write the outcome; end-to-end jobs/s.
* **lateness** — 100,000 future jobs queued (run_at hours ahead, bulk insert, then ANALYZE
  and a WAL checkpoint / VACUUM), then ~500 jobs due at random moments over the next ~10 s,
  each submitted through `JobService.submit` (which calls `engine.wake_at`) 20 ms to 3 s
  before its run_at. Lateness = the moment the handler began − `run_at` (also shown:
  measured from when the submit had committed, if that was after run_at). The engine runs
  on its production defaults (2 s fallback poll), so anything near 2 s means a missed
  wake-up. `--repeat` rounds (default 3) run against the same backlog; the first one comes
  right after the bulk insert and is reported as such. Also counted: transactions the
  database saw per job, the submit's included.

Each backend gets a fresh database (a temporary SQLite file; a new PostgreSQL database,
dropped afterwards). Nothing here is asserted; numbers go to bench/README.md by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as create_raw_engine

from core.clock import SystemClock
from core.jobs.context import JobContext
from core.jobs.engine import JobEngine
from core.jobs.registry import JobRegistry
from core.notifier import NullNotifier
from core.services.jobs import JobService
from core.services.operators import bootstrap_owners
from core.settings import JobSettings
from storage import migrate
from storage.db import create_engine, create_sessionmaker
from storage.models import Job, JobStatus
from storage.repositories import jobs as job_repo
from storage.uow import over_session

Sessions = async_sessionmaker[AsyncSession]


# -- databases ---------------------------------------------------------------------------------


@asynccontextmanager
async def fresh_database(backend: str, pg_url: str | None) -> AsyncIterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="opsdeck-bench-") as tmp:
            yield f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        return
    assert pg_url
    base = make_url(pg_url).set(drivername="postgresql+asyncpg")
    name = f"opsdeck_bench_{uuid.uuid4().hex[:10]}"
    admin = create_raw_engine(base, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()


@asynccontextmanager
async def migrated(
    backend: str, pg_url: str | None
) -> AsyncIterator[tuple[AsyncEngine, Sessions, int]]:
    async with fresh_database(backend, pg_url) as url:
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine)
            sessions = create_sessionmaker(engine)
            async with sessions() as session:
                tenant = await bootstrap_owners(session, SystemClock(), [1])
                await session.commit()
            yield engine, sessions, tenant.id
        finally:
            await engine.dispose()


def job_row(tenant_id: int, run_at: datetime, now: datetime, n: int = 0) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "kind": "noop",
        "payload": {"n": n},
        "status": JobStatus.queued,
        "priority": 0,
        "run_at": run_at,
        "attempts": 0,
        "max_attempts": 5,
        "cancel_requested": False,
        "requires_approval": False,
        "created_at": now,
        "updated_at": now,
    }


async def insert_jobs(
    sessions: Sessions, tenant_id: int, count: int, run_at: Callable[[int], datetime]
) -> None:
    now = datetime.now(UTC)
    chunk = 5000
    for start in range(0, count, chunk):
        rows = [
            job_row(tenant_id, run_at(n), now, n) for n in range(start, min(count, start + chunk))
        ]
        async with sessions() as session, session.begin():
            await job_repo.insert_many(session, rows)


async def settle(engine: AsyncEngine) -> None:
    """After the bulk insert, the state a queue that grew over hours would be in.

    Statistics analysed, the write-ahead log checkpointed, PostgreSQL's visibility map set:
    otherwise the first seconds measure the aftermath of inserting 100,000 rows at once (a
    SQLite auto-checkpoint copying the WAL, PostgreSQL's autovacuum), not the engine.
    """
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE jobs")
            await conn.exec_driver_sql("CHECKPOINT")
        return
    async with engine.connect() as conn:
        # On the driver's connection, outside the BEGIN IMMEDIATE storage.db adds to every
        # SQLAlchemy transaction (a checkpoint cannot run inside a write transaction).
        aiosqlite_conn: Any = (await conn.get_raw_connection()).driver_connection
        await aiosqlite_conn.execute("ANALYZE")
        await aiosqlite_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# -- measurements ------------------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, value: str) -> None:
        self.rows.append((name, value))
        print(f"  {self.backend:<8} {name:<46} {value}", flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def bench_baseline_update(sessions: Sessions, tenant_id: int, count: int) -> float:
    """Rows/s of a single-row UPDATE by primary key, one transaction each (the floor)."""
    await insert_jobs(sessions, tenant_id, count, lambda n: datetime.now(UTC))
    async with sessions() as session:
        ids = list((await session.execute(select(Job.id).where(Job.kind == "noop"))).scalars())
    now = datetime.now(UTC)
    lease = now + timedelta(minutes=5)
    started = time.perf_counter()
    for job_id in ids:
        async with sessions() as session, session.begin():
            await session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(status=JobStatus.running, lease_owner="base", lease_expires_at=lease)
                .execution_options(synchronize_session=False)
            )
    rate = len(ids) / (time.perf_counter() - started)
    async with sessions() as session, session.begin():
        await session.execute(
            Job.__table__.delete().where(Job.kind == "noop")  # type: ignore[attr-defined]
        )
    return rate


async def bench_claim(
    sessions: Sessions, tenant_id: int, count: int, batch: int
) -> tuple[float, float, list[float]]:
    """(jobs/s, statements/s, per-statement ms) claiming `count` due jobs `batch` at a time."""
    past = datetime.now(UTC) - timedelta(minutes=1)
    await insert_jobs(sessions, tenant_id, count, lambda n: past + timedelta(microseconds=n))
    clock = SystemClock()
    lease = timedelta(minutes=5)
    claimed = statements = 0
    latencies: list[float] = []
    started = time.perf_counter()
    while True:
        t = time.perf_counter()
        async with sessions() as session, session.begin():
            got = await job_repo.claim(
                session, worker="bench", now=clock.now(), lease=lease, limit=batch
            )
        latencies.append((time.perf_counter() - t) * 1000)
        statements += 1
        if not got:
            break
        claimed += len(got)
    elapsed = time.perf_counter() - started
    assert claimed == count, (claimed, count)
    async with sessions() as session, session.begin():
        await session.execute(Job.__table__.delete())  # type: ignore[attr-defined]
    return claimed / elapsed, statements / elapsed, latencies


async def noop(ctx: JobContext) -> None:
    return None


def registry() -> JobRegistry:
    reg = JobRegistry()
    reg.register("noop", noop)
    return reg


async def wait_all_finished(
    sessions: Sessions, ids_or_count: int | list[int], timeout: float
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with sessions() as session:
            if isinstance(ids_or_count, int):
                n = (
                    await session.execute(
                        select(func.count()).where(Job.status == JobStatus.succeeded)
                    )
                ).scalar_one()
                if n >= ids_or_count:
                    return True
            else:
                n = (
                    await session.execute(
                        select(func.count()).where(
                            Job.id.in_(ids_or_count), Job.status == JobStatus.succeeded
                        )
                    )
                ).scalar_one()
                if n >= len(ids_or_count):
                    return True
        await asyncio.sleep(0.05)
    return False


async def bench_engine(sessions: Sessions, tenant_id: int, count: int) -> float:
    """End-to-end jobs/s: a started engine drains `count` due jobs with a no-op handler."""
    past = datetime.now(UTC) - timedelta(minutes=1)
    await insert_jobs(sessions, tenant_id, count, lambda n: past)
    engine = JobEngine(
        sessionmaker=sessions,
        registry=registry(),
        settings=JobSettings(_env_file=None, concurrency=8),  # type: ignore[call-arg]
        worker_id="bench",
    )
    done = asyncio.Event()
    finished = 0

    def on_run(kind: str, status: str, seconds: float) -> None:
        nonlocal finished
        finished += 1
        if finished >= count:
            done.set()

    engine.listeners.append(on_run)
    started = time.perf_counter()
    await engine.start()
    try:
        await asyncio.wait_for(done.wait(), timeout=max(60, count / 20))
    finally:
        elapsed = time.perf_counter() - started
        await engine.stop()
    async with sessions() as session:
        ok = (
            await session.execute(select(func.count()).where(Job.status == JobStatus.succeeded))
        ).scalar_one()
    assert ok == count, (ok, count)
    async with sessions() as session, session.begin():
        await session.execute(Job.__table__.delete())  # type: ignore[attr-defined]
    return count / elapsed


@dataclass
class Lateness:
    total: list[float]  # handler start - run_at
    engine: list[float]  # handler start - max(run_at, when the submit had committed)
    committed_late: int  # submits that committed only after their run_at
    transactions: int  # BEGINs on the database during the window, the submits' included


async def bench_lateness(
    db: AsyncEngine, sessions: Sessions, tenant_id: int, backlog: int, jobs: int, window: float
) -> Lateness:
    """Lateness (s) of `jobs` submitted over `window` seconds, with `backlog` future jobs queued."""
    rng = random.Random(20261123)
    base = datetime.now(UTC) + timedelta(hours=2)
    await insert_jobs(sessions, tenant_id, backlog, lambda n: base + timedelta(seconds=n % 14400))
    await settle(db)

    clock = SystemClock()
    handler_started: dict[int, datetime] = {}

    async def record_start(ctx: JobContext) -> None:
        # When the handler really began: the claim's started_at is read before the claim
        # transaction waits for its lock, so it can flatter.
        handler_started[ctx.job_id] = ctx.clock.now()

    reg = JobRegistry()
    reg.register("noop", record_start)
    engine = JobEngine(
        sessionmaker=sessions,
        registry=reg,
        settings=JobSettings(_env_file=None),  # type: ignore[call-arg]  # production defaults
        clock=clock,
        worker_id="bench",
    )
    await engine.start()
    await asyncio.sleep(0.5)

    # Transactions begun during the window, the producer's submits included: unlike the
    # lateness itself this does not move with the machine's load.
    begun = 0

    def count_begin(conn: Any) -> None:
        nonlocal begun
        begun += 1

    event.listen(db.sync_engine, "begin", count_begin)
    all_ran = asyncio.Event()

    def on_run(kind: str, status: str, seconds: float) -> None:
        if len(handler_started) >= jobs and not engine.active_job_ids:
            all_ran.set()

    engine.listeners.append(on_run)
    t0 = time.monotonic()
    # Each job is submitted at a random moment of the window and due 20 ms to 3 s after its
    # submission, so wake-ups arrive in every order (a later submit is often due earlier).
    plan = []
    for _ in range(jobs):
        submit = rng.uniform(0.0, window - 1.5)
        plan.append((submit, submit + rng.uniform(0.02, 3.0)))
    plan.sort()
    ids: list[int] = []
    committed: dict[int, datetime] = {}
    start_wall = clock.now()

    async def submit_one(due: float) -> None:
        run_at = start_wall + timedelta(seconds=due)
        async with sessions() as session:
            job_id = await JobService(over_session(session), clock, NullNotifier(), engine).submit(
                tenant_id, "noop", run_at=run_at
            )
        assert job_id is not None
        ids.append(job_id)
        committed[job_id] = clock.now()  # after the commit and the wake-up call

    pending: set[asyncio.Task[None]] = set()
    for submit, due in plan:
        delay = submit - (time.monotonic() - t0)
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(submit_one(due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_ran.wait(), window + 30)
    event.remove(db.sync_engine, "begin", count_begin)
    await engine.stop()
    if not await wait_all_finished(sessions, ids, timeout=5):
        print("  (not every lateness job finished in time; unfinished ones are left out)")
    async with sessions() as session:
        found = (
            await session.execute(
                select(Job.id, Job.run_at).where(Job.id.in_(ids), Job.status == JobStatus.succeeded)
            )
        ).all()
    rows = [(job_id, handler_started[job_id], run_at) for job_id, run_at in found]
    return Lateness(
        total=[(started - run_at).total_seconds() for _, started, run_at in rows],
        engine=[
            (started - max(run_at, committed[job_id])).total_seconds()
            for job_id, started, run_at in rows
        ],
        committed_late=sum(1 for job_id, _, run_at in rows if committed[job_id] > run_at),
        transactions=begun,
    )


def conditions(cpu_start: float, wall_start: float) -> str:
    """Load average and this process's share of a core since the start: a starved run shows."""
    cpu = time.process_time() - cpu_start
    wall = time.perf_counter() - wall_start
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"load average {load}; this process used {cpu / wall:.0%} of a core over {wall:.0f} s"


async def run_backend(backend: str, args: argparse.Namespace) -> Result:
    result = Result(backend)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    async with migrated(backend, args.postgres) as (db, sessions, tenant_id):
        base_rate = await bench_baseline_update(sessions, tenant_id, args.baseline)
        result.add("baseline: 1-row UPDATE by id, 1 tx each", f"{base_rate:,.0f} rows/s")

        if "claim" in args.sections:
            jobs_s, stmts_s, lat = await bench_claim(
                sessions, tenant_id, args.claim_jobs, args.batch
            )
            result.add(
                f"claim, batches of {args.batch} ({args.claim_jobs:,} due)",
                f"{jobs_s:,.0f} jobs/s  ({stmts_s:,.0f} claims/s, p50 {pct(lat, 50):.1f} ms,"
                f" p99 {pct(lat, 99):.1f} ms)  = {jobs_s / base_rate:.1f}x baseline",
            )
            one_s, _, lat1 = await bench_claim(sessions, tenant_id, args.baseline, 1)
            result.add(
                f"claim, limit 1 ({args.baseline:,} due)",
                f"{one_s:,.0f} jobs/s  (p50 {pct(lat1, 50):.1f} ms)"
                f"  = {one_s / base_rate:.2f}x baseline",
            )

        if "engine" in args.sections:
            e2e = await bench_engine(sessions, tenant_id, args.engine_jobs)
            result.add(
                f"engine end-to-end, no-op handler ({args.engine_jobs:,})",
                f"{e2e:,.0f} jobs/s  = {e2e / base_rate:.2f}x baseline",
            )

        for round_ in range(args.repeat if "lateness" in args.sections else 0):
            late = await bench_lateness(
                db, sessions, tenant_id, 0 if round_ else args.backlog, args.late_jobs, args.window
            )
            ms = [x * 1000 for x in late.total]
            when = "round 1, just after the bulk insert" if round_ == 0 else f"round {round_ + 1}"
            result.add(
                f"lateness, {args.backlog:,} queued, {len(ms)} jobs ({when})",
                f"p50 {pct(ms, 50):.1f} ms  p99 {pct(ms, 99):.1f} ms  max {max(ms):.1f} ms"
                f"  >250 ms: {sum(1 for x in ms if x > 250)}",
            )
            eng = [x * 1000 for x in late.engine]
            result.add(
                "  of which after the submit committed",
                f"p50 {pct(eng, 50):.1f} ms  p99 {pct(eng, 99):.1f} ms  max {max(eng):.1f} ms"
                f"  (submits committed after run_at: {late.committed_late})",
            )
            result.add(
                "  transactions per job, its submit included",
                f"{late.transactions / max(1, len(ms)):.2f}",
            )
        result.add("conditions", conditions(cpu_start, wall_start))
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL server")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument(
        "--baseline", type=int, default=2000, help="rows for the baseline and limit-1 runs"
    )
    parser.add_argument("--claim-jobs", type=int, default=20000)
    parser.add_argument("--engine-jobs", type=int, default=5000)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--late-jobs", type=int, default=500)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument(
        "--sections",
        default="claim,engine,lateness",
        help="comma-separated subset of claim,engine,lateness",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="lateness rounds (the backlog stays queued)"
    )
    args = parser.parse_args(argv)
    args.sections = set(args.sections.split(","))
    if args.quick:
        args.baseline, args.claim_jobs, args.engine_jobs = 300, 2000, 500
        args.backlog, args.late_jobs, args.window = 5000, 50, 3.0
    return args


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    print(
        f"job engine bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC,"
        f" Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores"
    )
    backends = [] if args.no_sqlite else ["sqlite"]
    if args.postgres:
        backends.append("postgres")
    for backend in backends:
        await run_backend(backend, args)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
