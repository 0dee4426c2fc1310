"""One job worker in its own OS process, for test_multiprocess_workers.py.

    python tests/integration/worker_proc.py --url URL --worker-id NAME [--lease-seconds S]

Runs a JobEngine with two job kinds that record every run in the side table `job_runs`
(created by the test), prints "ready" once claiming, and on SIGTERM stops gracefully.

  record  insert (job_id, worker, attempt) and return
  sleepy  insert (job_id, worker, attempt); on the first attempt then sleep 30 s
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import text

from core.jobs.context import JobContext
from core.jobs.engine import JobEngine
from core.jobs.registry import JobRegistry
from core.settings import JobSettings
from storage.db import create_engine, create_sessionmaker

INSERT_RUN = text("INSERT INTO job_runs (job_id, worker, attempt) VALUES (:job, :worker, :attempt)")


def build_registry(worker_id: str) -> JobRegistry:
    async def record_run(ctx: JobContext) -> None:
        async with ctx.sessionmaker() as session, session.begin():
            await session.execute(
                INSERT_RUN, {"job": ctx.job_id, "worker": worker_id, "attempt": ctx.attempt}
            )

    async def record(ctx: JobContext) -> dict[str, Any]:
        await record_run(ctx)
        return {"worker": worker_id}

    async def sleepy(ctx: JobContext) -> dict[str, Any]:
        await record_run(ctx)
        if ctx.attempt == 1:
            await asyncio.sleep(30)
        return {"worker": worker_id}

    registry = JobRegistry()
    registry.register("record", record)
    registry.register("sleepy", sleepy)
    return registry


async def main(args: argparse.Namespace) -> int:
    db = create_engine(args.url, pool_size=args.concurrency + 4)
    settings = JobSettings(
        _env_file=None,  # type: ignore[call-arg]
        concurrency=args.concurrency,
        lease_seconds=args.lease_seconds,
        poll_seconds=args.poll_seconds,
        shutdown_timeout_seconds=5,
    )
    engine = JobEngine(
        sessionmaker=create_sessionmaker(db),
        registry=build_registry(args.worker_id),
        settings=settings,
        worker_id=args.worker_id,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await engine.start()
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        await engine.stop()
        await db.dispose()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--lease-seconds", type=float, default=60.0)
    parser.add_argument("--poll-seconds", type=float, default=0.5)
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    sys.exit(asyncio.run(main(parse_args())))
