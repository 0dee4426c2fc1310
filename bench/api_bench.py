"""The HTTP API (issue 14's bench lines), each measured against a baseline in the same run.

    python -m bench.api_bench                      # both parts
    python -m bench.api_bench --part list --jobs 20000 --size-mb 64   # a quick smoke run

1. **jobs list at 100,000 jobs** — the real `python -m bot run` process (SQLite, the
   embedded defaults) holds 100,000 jobs of one workspace. A client pages through
   `GET /api/v1/jobs?status=all` (limit 20, random offsets, the same ones for both sides)
   with an operator token; the baseline is the same query run directly through the
   repository (`storage.repositories.jobs.list_page`) against the same database file in this
   process, interleaved with the API calls so both see the same machine. Target: p99 of the
   API ≤ 1.5 × p99 of the repository.
2. **a 1 GiB upload** — `POST /api/v1/vault/items`, multipart, streamed from this process
   into the same bot process. The bot's resident memory is read idle, its high-water mark
   reset (`/proc/<pid>/clear_refs`), the file streamed, and the high-water mark read again.
   Target: peak − idle ≤ 16 MB.

Exit code 1 when a target is missed (or an answer is wrong); the numbers go to
bench/README.md with the load average printed here.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.process_bench import clean_env, free_port, load, proc_status, wait_ready_http

MB = 1024 * 1024
OWNER = 1001
PAGE = 20
KIND = "bench.noop"  # the bot's own periodic jobs join the table too: page only the seeded ones


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def seed_jobs(url: str, count: int) -> int:
    """`count` finished jobs in the owner's workspace, in one bulk insert; its tenant id."""
    from sqlalchemy import insert

    from storage.db import create_engine
    from storage.models import Job, JobStatus
    from storage.repositories import operators as op_repo

    engine = create_engine(url)
    now = datetime.now(UTC)
    statuses = [
        JobStatus.succeeded,
        JobStatus.dead,
        JobStatus.cancelled,
    ]  # terminal: the engine leaves them be
    async with engine.begin() as conn:
        from sqlalchemy.ext.asyncio import AsyncSession

        async with AsyncSession(bind=conn) as session:
            tenant_id = (await op_repo.by_telegram_id(session, OWNER)).tenant_id
        rows = [
            {
                "tenant_id": tenant_id,
                "kind": KIND,
                "payload": {"n": n},
                "status": statuses[n % len(statuses)],
                "priority": 0,
                "run_at": now,
                "attempts": 1,
                "max_attempts": 1,
                "cancel_requested": False,
                "requires_approval": False,
                "created_at": now,
                "updated_at": now,
                "finished_at": now,
            }
            for n in range(count)
        ]
        for start in range(0, count, 5000):
            await conn.execute(insert(Job), rows[start : start + 5000])
    await engine.dispose()
    return tenant_id


async def make_token(url: str) -> str:
    """An operator token made by the owner, through the same service /tokens uses."""
    from core.clock import SystemClock
    from core.services.api_tokens import ApiTokenService
    from core.services.operators import to_actor
    from storage.db import create_engine
    from storage.models import Role
    from storage.repositories import operators as op_repo
    from storage.uow import UnitOfWork

    engine = create_engine(url)
    uow = UnitOfWork(engine)
    async with uow.read() as session:
        owner = to_actor(await op_repo.by_telegram_id(session, OWNER))
    created = await ApiTokenService(uow, SystemClock()).create(owner, "bench", Role.operator)
    await uow.dispose()
    await engine.dispose()
    return created.secret


async def part_list(http: httpx.AsyncClient, url: str, tenant_id: int, rounds: int) -> bool:
    from sqlalchemy.ext.asyncio import AsyncSession

    from storage.db import create_engine
    from storage.repositories import jobs as job_repo

    engine = create_engine(url)
    rng = random.Random(14)
    total = None
    api: list[float] = []
    direct: list[float] = []
    for n in range(rounds + 10):
        offset = rng.randrange(0, 100_000 - PAGE) if total is None else rng.randrange(total)
        started = time.perf_counter()
        r = await http.get(
            "/api/v1/jobs", params={"status": "all", "limit": PAGE, "offset": offset}
        )
        api_s = time.perf_counter() - started
        if r.status_code != 200:
            print("API answered", r.status_code, r.text[:300])
            return False
        total = r.json()["total"]
        started = time.perf_counter()
        async with AsyncSession(bind=engine) as session:
            rows, count = await job_repo.list_page(
                session, tenant_id=tenant_id, statuses=(), kind=KIND, offset=offset, limit=PAGE
            )
        direct_s = time.perf_counter() - started
        # the bot's own jobs run beside the bench (its maintenance prunes and enqueues), so
        # the two reads can straddle a change; compare pages only when the totals agree
        if count == total and [j.id for j in rows] != [j["id"] for j in r.json()["items"]]:
            print("the API and the repository disagree at offset", offset)
            return False
        if n >= 10:  # warm-up rounds are not counted
            api.append(api_s)
            direct.append(direct_s)
    await engine.dispose()
    ratio = p99(api) / p99(direct)
    print(
        f"jobs list, {total:,} jobs, {rounds} pages of {PAGE}: "
        f"API p50 {sorted(api)[len(api) // 2] * 1000:.1f} ms, p99 {p99(api) * 1000:.1f} ms; "
        f"repository p50 {sorted(direct)[len(direct) // 2] * 1000:.1f} ms, "
        f"p99 {p99(direct) * 1000:.1f} ms; ratio {ratio:.2f} (target ≤ 1.5)"
    )
    return ratio <= 1.5


async def random_bytes(size: int, digest: hashlib._Hash) -> AsyncIterator[bytes]:
    left = size
    while left:
        chunk = os.urandom(min(MB, left))
        digest.update(chunk)
        left -= len(chunk)
        yield chunk


async def part_upload(http: httpx.AsyncClient, pid: int, size_mb: int) -> bool:
    await asyncio.sleep(2)
    idle_kb = proc_status(pid)["VmRSS"]
    with open(f"/proc/{pid}/clear_refs", "w") as f:  # noqa: ASYNC230 - a procfs write
        f.write("5")  # reset the high-water mark to now
    digest = hashlib.sha256()
    boundary = "opsdeckbenchboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        async for chunk in random_bytes(size_mb * MB, digest):
            yield chunk
        yield tail

    started = time.perf_counter()
    r = await http.post(
        "/api/v1/vault/items",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=1800,
    )
    seconds = time.perf_counter() - started
    if r.status_code != 201 or r.json()["item"]["sha256"] != digest.hexdigest():
        print("upload answered", r.status_code, r.text[:300])
        return False
    peak_kb = proc_status(pid)["VmHWM"]
    added = (peak_kb - idle_kb) / 1024
    print(
        f"upload {size_mb} MiB: {seconds:.1f} s ({size_mb / seconds:.0f} MiB/s); bot RSS idle "
        f"{idle_kb / 1024:.1f} MB, peak {peak_kb / 1024:.1f} MB, added {added:.1f} MB "
        "(target ≤ 16)"
    )
    return added <= 16


async def run(args: argparse.Namespace) -> int:
    from tests.fakes.telegram import FakeTelegram

    print(f"load average before: {load()} ({os.cpu_count()} cores)", flush=True)
    data = Path(tempfile.mkdtemp(prefix="opsdeck-api-bench-"))
    url = f"sqlite+aiosqlite:///{data / 'opsdeck.db'}"
    async with FakeTelegram() as tg:
        port = free_port()
        env = clean_env(
            TELEGRAM_BOT_TOKEN=tg.token,
            TELEGRAM_API_URL=tg.base_url,
            OPSDECK_OWNER_IDS=str(OWNER),
            OPSDECK_DATA_DIR=str(data),
            HTTP_PORT=str(port),
            PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        )
        migrate = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "migrate", env=env, cwd=data
        )
        if await migrate.wait() != 0:
            return 1
        # the owner row appears at the bot's first start; seed after it
        with (data / "bot.log").open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", env=env, cwd=data, stdout=log, stderr=log
            )
        ok = True
        try:
            await wait_ready_http(port, proc, timeout=120)
            tenant_id = await seed_jobs(url, args.jobs)
            token = await make_token(url)
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60
            ) as http:
                if args.part in ("all", "list"):
                    ok &= await part_list(http, url, tenant_id, args.rounds)
                if args.part in ("all", "upload"):
                    ok &= await part_upload(http, proc.pid, args.size_mb)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
    print(f"load average after: {load()}")
    print("result:", "targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("all", "list", "upload"), default="all")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--size-mb", type=int, default=1024)
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
