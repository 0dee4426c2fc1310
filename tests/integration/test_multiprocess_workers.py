"""Several worker processes against one PostgreSQL database (DESIGN.md §3, issue 2).

Each worker is a real OS process (tests/integration/worker_proc.py) running a JobEngine;
its handlers write every run into the side table `job_runs`, so "exactly once" is counted
by the database, not by the workers' own word.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.clock import SystemClock
from core.services.operators import bootstrap_owners
from storage import migrate
from storage.db import create_engine, create_sessionmaker
from storage.models import Job, JobStatus
from storage.repositories import jobs as job_repo
from tests.conftest import create_postgres_database, drop_postgres_database, needs_postgres

pytestmark = [needs_postgres, pytest.mark.postgres, pytest.mark.slow]

WORKER = Path(__file__).with_name("worker_proc.py")
ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """A worker subprocess; always reaped, killed if it will not stop."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str, log: Path) -> None:
        self.proc, self.name, self.log = proc, name, log

    @classmethod
    async def start(cls, url: str, name: str, tmp_path: Path, *extra: str) -> Worker:
        log = tmp_path / f"{name}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(WORKER),
                "--url",
                url,
                "--worker-id",
                name,
                *extra,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        worker = cls(proc, name, log)
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
        except TimeoutError:
            await worker.kill()
            raise AssertionError(f"{name} did not start: {worker.output()}") from None
        if line.strip() != b"ready":
            await worker.kill()
            raise AssertionError(f"{name} did not start: {line!r} {worker.output()}")
        return worker

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    async def stop(self, timeout: float = 15) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self.kill()
            raise AssertionError(f"{self.name} did not stop on SIGTERM") from None

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


@pytest.fixture
async def pg() -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A migrated database of its own, with the default tenant and the `job_runs` table."""
    url = await create_postgres_database()
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        async with create_sessionmaker(engine)() as session:
            await bootstrap_owners(session, SystemClock(), [1])
            await session.execute(
                text(
                    "CREATE TABLE job_runs (id BIGSERIAL PRIMARY KEY, job_id BIGINT NOT NULL,"
                    " worker TEXT NOT NULL, attempt INT NOT NULL,"
                    " at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())"
                )
            )
            await session.commit()
        yield url, engine
    finally:
        await engine.dispose()
        await drop_postgres_database(url)


@pytest.fixture
async def workers() -> AsyncIterator[list[Worker]]:
    started: list[Worker] = []
    try:
        yield started
    finally:
        for worker in started:
            await worker.kill()


async def wait_until(check: Callable[[], Any], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.1)


def job_rows(tenant_id: int, kind: str, count: int) -> list[dict[str, Any]]:
    now = SystemClock().now()
    return [
        {
            "tenant_id": tenant_id,
            "kind": kind,
            "payload": {"n": n},
            "status": JobStatus.queued,
            "priority": 0,
            "run_at": now,
            "attempts": 0,
            "max_attempts": 3,
            "cancel_requested": False,
            "requires_approval": False,
            "created_at": now,
            "updated_at": now,
        }
        for n in range(count)
    ]


async def test_two_worker_processes_run_1000_jobs_each_exactly_once(pg, workers, tmp_path) -> None:
    url, engine = pg
    for name in ("w1", "w2"):
        workers.append(await Worker.start(url, name, tmp_path, "--concurrency", "8"))

    sessions = create_sessionmaker(engine)
    async with sessions() as s, s.begin():
        await job_repo.insert_many(s, job_rows(1, "record", 1000))

    async def all_finished() -> bool:
        async with sessions() as s:
            counts = await job_repo.count_by_status(s)
        return counts.get(JobStatus.succeeded, 0) + counts.get(JobStatus.dead, 0) == 1000

    try:
        await wait_until(all_finished, 90, "1,000 jobs to finish")
    except AssertionError:
        raise AssertionError("\n".join(w.output() for w in workers)) from None
    for worker in workers:
        assert await worker.stop() == 0, worker.output()

    async with sessions() as s:
        counts = await job_repo.count_by_status(s)
        runs = (
            await s.execute(text("SELECT count(*), count(DISTINCT job_id) FROM job_runs"))
        ).one()
        per_worker = dict(
            (await s.execute(text("SELECT worker, count(*) FROM job_runs GROUP BY worker"))).all()
        )
        attempts = (await s.execute(select(func.max(Job.attempts)))).scalar_one()
        results = Counter(
            (await s.execute(select(Job.result["worker"].as_string()))).scalars().all()
        )
        mismatched = (
            await s.execute(
                text(
                    "SELECT count(*) FROM jobs j JOIN job_runs r ON r.job_id = j.id"
                    " WHERE j.result->>'worker' <> r.worker OR j.lease_owner IS NOT NULL"
                )
            )
        ).scalar_one()
    assert counts == {JobStatus.succeeded: 1000}
    assert tuple(runs) == (1000, 1000), "a job ran twice (or not at all)"
    assert attempts == 1
    assert mismatched == 0
    # Both processes took part, and each job's result names the worker that ran it.
    assert set(per_worker) == {"w1", "w2"} and all(n > 0 for n in per_worker.values()), per_worker
    assert results == per_worker


async def test_a_job_of_a_worker_killed_mid_run_runs_again_after_its_lease(
    pg, workers, tmp_path
) -> None:
    url, engine = pg
    sessions = create_sessionmaker(engine)
    async with sessions() as s, s.begin():
        await job_repo.insert_many(s, job_rows(1, "sleepy", 1))
        job_id = (await s.execute(select(Job.id))).scalar_one()

    lease = ("--lease-seconds", "2")
    doomed = await Worker.start(url, "doomed", tmp_path, *lease)
    workers.append(doomed)

    async def runs() -> list[tuple[str, int]]:
        async with sessions() as s:
            rows = await s.execute(text("SELECT worker, attempt FROM job_runs ORDER BY id"))
            return [tuple(r) for r in rows.all()]  # type: ignore[misc]

    async def started() -> bool:
        return bool(await runs())

    await wait_until(started, 15, "the first run to start")
    survivor = await Worker.start(url, "survivor", tmp_path, *lease)
    workers.append(survivor)

    # While the first worker lives, its heartbeat keeps the lease: nobody else runs the job.
    await asyncio.sleep(2.5)
    assert await runs() == [("doomed", 1)]

    doomed.proc.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(doomed.proc.wait(), 10) == -signal.SIGKILL
    async with sessions() as s:
        job = await s.get(Job, job_id)
        assert job is not None and job.status == JobStatus.running
        assert job.lease_owner == "doomed"
        lease_expired_at = job.lease_expires_at
    assert lease_expired_at is not None

    async def finished() -> bool:
        async with sessions() as s:
            job = await s.get(Job, job_id)
            return job is not None and job.status in (JobStatus.succeeded, JobStatus.dead)

    await wait_until(finished, 15, "the job to run again and finish")
    assert await survivor.stop() == 0, survivor.output()

    assert await runs() == [("doomed", 1), ("survivor", 2)]
    async with sessions() as s:
        job = await s.get(Job, job_id)
    assert job is not None
    assert (job.status, job.attempts, job.lease_owner, job.result) == (
        JobStatus.succeeded,
        2,
        None,
        {"worker": "survivor"},
    )
    # Taken over once the dead worker's lease ran out: not before, and not a poll later.
    assert job.started_at is not None
    assert lease_expired_at <= job.started_at <= lease_expired_at + timedelta(seconds=1.5)
