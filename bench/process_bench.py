"""One bot process: start-up time and idle memory; job claims with one and two processes.

    python -m bench.process_bench --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test
    python -m bench.process_bench --quick              # smoke run (fewer rounds, fewer jobs)
    python -m bench.process_bench --no-claims          # start-up and memory only, no PostgreSQL

Every number has a baseline measured in the same run, so bench/README.md can state ratios
rather than absolute speeds of one shared machine:

* **start-up and idle RSS** — real OS processes, one at a time, each against its own
  `tests/fakes/telegram.py` started here (long polling, as on a laptop):

  - `python -c pass` — the interpreter alone;
  - `import deps` — `python -c "import bot, aiogram, aiohttp, sqlalchemy, …"`: every library
    the bot loads at start-up, nothing run (`bot` first: its `__init__` defers aiogram's model
    builds, as in the bot — see bot/aiogram_models.py);
  - `import bot.app` — the same plus Opsdeck's own modules, nothing run;
  - `aiogram minimal` — the *baseline bot*: `python -m bench.process_bench minimal-bot`, an
    aiogram Dispatcher with one `/start` handler, polling the fake, with an aiohttp server
    whose `/readyz` answers 200 once polling has started;
  - `opsdeck fresh` — `python -m bot run` on the embedded defaults (SQLite and the vault in
    `./data`, long polling) in an empty directory: creates the database, runs every
    migration, generates the secret key;
  - `opsdeck restart` — the same again on the directory `opsdeck fresh` left (a restart);
  - `aiogram minimal, deferred` — the baseline bot with aiogram's model builds deferred the
    way Opsdeck defers them (`minimal-bot --deferred`), for what the deferral alone is worth.

  Start-up = process spawned → `/readyz` answers 200 (polled every 20 ms); for the import-only
  subjects, → the line they print after importing. Idle RSS = median `VmRSS` of
  `/proc/<pid>/status` over ~2 s, sampled after the process has been ready for `--settle`
  seconds; also its peak (`VmHWM`) and threads. Then the bot must answer `/start` (a
  functional check: the process that was measured really serves) and SIGTERM must stop it with
  exit code 0 (the time is shown). A discarded warm-up start comes first (byte-code, page
  cache); `--rounds` rounds follow, the order of the subjects reversed every other round.

* **job claims, 1 vs 2 processes, PostgreSQL** — worker processes
  (`python -m bench.process_bench worker`: a `JobEngine` on the production `JOBS_*` defaults —
  concurrency 8, 2 s poll, 60 s lease — and the production pool, with a no-op job kind that
  records the ids it ran) on one fresh database. Per round: the workers start and report
  ready, then `--jobs` no-op jobs are bulk-inserted due at one moment T0 a few seconds ahead
  (every worker has armed its wake-up for T0 by then), and the round ends when all have
  succeeded. Throughput = jobs / (last `finished_at` − T0). Verified per round: the ids the
  workers ran are exactly the inserted ids, each once (none twice in one worker or across
  two), and every row is `succeeded` with `attempts = 1`. Rounds alternate 1, 2, 2, 1, …
  The 1-process rate is the baseline of the 2-process one.

The machine's load average is printed with every part. Nothing here is asserted as a timing;
the exit code is 1 only when a correctness check fails (a job run twice or lost, a bot that
did not answer or did not stop cleanly).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OWNER = 1001
# What `python -m bot run` imports before it does anything on a migrated SQLite database
# (Alembic only when there is something to migrate, cryptography at the first stored secret,
# asyncpg only on PostgreSQL, aiobotocore only with S3 storage).
DEPS = (
    "bot, aiogram, aiohttp, sqlalchemy, sqlalchemy.ext.asyncio, aiosqlite, apscheduler, "
    "httpx, pydantic_settings, prometheus_client"
)
SETTING_PREFIXES = (
    "TELEGRAM_",
    "OPSDECK_",
    "DATABASE_",
    "VAULT_",
    "HTTP_",
    "PUBLIC_",
    "REDDIT_",
    "JOBS_",
    "BACKUP_",
    "OUTBOX_",
)


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any Opsdeck setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in kB and Threads from /proc/<pid>/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- part 1: start-up time and idle RSS ------------------------------------------------------


@dataclass
class Start:
    subject: str
    startup: float  # s, spawned → ready
    cpu_ready: float  # s of CPU (user + system) the process used until ready
    idle_cpu: float  # % of one core while idle (between ready + 1 s and the RSS samples)
    rss_mb: float  # idle, median
    hwm_mb: float  # peak over the process's life so far
    threads: int
    answer: float | None = None  # s, /start sent → answer seen (serving subjects)
    stop: float | None = None  # s, SIGTERM → exit
    exit_code: int | None = None


@dataclass
class Subject:
    name: str
    argv: list[str]
    serves: bool  # has /readyz and answers /start; else prints "ready" after importing
    data_dir: str | None = None  # cwd; None = a fresh temporary one


def subjects(workdir: Path) -> list[Subject]:
    py = sys.executable
    wait = "import signal,sys; print('ready', flush=True); signal.pause()"
    opsdeck_dir = workdir / "opsdeck"
    return [
        Subject("python -c pass", [py, "-c", wait], serves=False),
        Subject("import deps", [py, "-c", f"import {DEPS}; {wait}"], serves=False),
        Subject("import bot.app", [py, "-c", f"import bot.app; {wait}"], serves=False),
        Subject("aiogram minimal", [py, "-m", "bench.process_bench", "minimal-bot"], serves=True),
        Subject("opsdeck fresh", [py, "-m", "bot", "run"], serves=True, data_dir=str(opsdeck_dir)),
        Subject(
            "opsdeck restart", [py, "-m", "bot", "run"], serves=True, data_dir=str(opsdeck_dir)
        ),
        Subject(
            "aiogram minimal, deferred",
            [py, "-m", "bench.process_bench", "minimal-bot", "--deferred"],
            serves=True,
        ),
    ]


async def wait_ready_http(port: int, proc: asyncio.subprocess.Process, timeout: float) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"exited with {proc.returncode} before it was ready")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f} s")
            await asyncio.sleep(0.02)


async def measure_start(subject: Subject, settle: float, log_dir: Path) -> Start:
    import shutil

    from tests.fakes.telegram import FakeTelegram

    if subject.name == "opsdeck fresh" and subject.data_dir:
        shutil.rmtree(subject.data_dir, ignore_errors=True)
    cwd = subject.data_dir or tempfile.mkdtemp(prefix="opsdeck-proc-")
    os.makedirs(cwd, exist_ok=True)
    log_path = log_dir / f"{subject.name.replace(' ', '_')}.log"
    async with FakeTelegram() as tg:
        port = free_port()
        env = clean_env(
            TELEGRAM_BOT_TOKEN=tg.token,
            TELEGRAM_API_URL=tg.base_url,
            OPSDECK_OWNER_IDS=str(OWNER),
            HTTP_PORT=str(port),
        )
        owner = tg.user(OWNER, "Olga")
        with log_path.open("wb") as log:
            started = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                *subject.argv,
                cwd=cwd if subject.serves else str(ROOT),
                env=env,
                stdout=asyncio.subprocess.PIPE if not subject.serves else log,
                stderr=log,
            )
        try:
            if subject.serves:
                await wait_ready_http(port, proc, timeout=120)
            else:
                assert proc.stdout is not None
                line = await asyncio.wait_for(proc.stdout.readline(), 120)
                if line.strip() != b"ready":
                    raise RuntimeError(f"{subject.name}: {line!r}")
            startup = time.perf_counter() - started
            cpu_ready = cpu_seconds(proc.pid)
            await asyncio.sleep(1.0)
            idle_from, idle_cpu_from = time.perf_counter(), cpu_seconds(proc.pid)
            await asyncio.sleep(max(0.0, settle - 1.0))
            idle_cpu = (cpu_seconds(proc.pid) - idle_cpu_from) / max(
                1e-6, time.perf_counter() - idle_from
            )
            samples = []
            for _ in range(5):
                samples.append(proc_status(proc.pid))
                await asyncio.sleep(0.4)
            result = Start(
                subject.name,
                startup,
                cpu_ready,
                idle_cpu * 100,
                rss_mb=statistics.median(s["VmRSS"] for s in samples) / 1024,
                hwm_mb=samples[-1]["VmHWM"] / 1024,
                threads=samples[-1]["Threads"],
            )
            if subject.serves:
                since = tg.mark()
                asked = time.perf_counter()
                await tg.send_text(owner, "/start")
                await tg.wait_for(
                    "sendMessage",
                    lambda c: str(c.params.get("chat_id")) == str(OWNER),
                    since=since,
                    timeout=30,
                )
                result.answer = time.perf_counter() - asked
            stopping = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            result.exit_code = await asyncio.wait_for(proc.wait(), 60)
            result.stop = time.perf_counter() - stopping
            # the import-only subjects die of the signal; that is their clean exit
            if not subject.serves and result.exit_code == -signal.SIGTERM:
                result.exit_code = 0
            return result
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if subject.data_dir is None:
                shutil.rmtree(cwd, ignore_errors=True)


async def part_startup(args: argparse.Namespace) -> tuple[list[Start], bool]:
    ok = True
    results: list[Start] = []
    with tempfile.TemporaryDirectory(prefix="opsdeck-procbench-") as tmp:
        work = Path(tmp)
        all_subjects = subjects(work)
        print(f"start-up and idle RSS; load average {load()}", flush=True)
        warm = await measure_start(all_subjects[4], 0.5, work)  # opsdeck fresh, discarded
        print(f"  warm-up opsdeck start {warm.startup:.2f} s (discarded)", flush=True)
        for rnd in range(args.rounds):
            order = list(all_subjects)
            if rnd % 2:
                # reversed, but a restart still needs the directory a fresh start left
                order = [order[4], order[5], order[6], order[3], order[2], order[1], order[0]]
            for subject in order:
                try:
                    r = await measure_start(subject, args.settle if subject.serves else 2.0, work)
                except Exception as exc:
                    ok = False
                    print(f"  round {rnd + 1} {subject.name:<25} FAILED: {exc}", flush=True)
                    continue
                results.append(r)
                if r.exit_code != 0:
                    ok = False
                extra = (
                    f" answer {r.answer * 1000:6.0f} ms" if r.answer is not None else " " * 18
                ) + f"  SIGTERM→exit {r.stop:5.2f} s code {r.exit_code}"
                print(
                    f"  round {rnd + 1} {r.subject:<25} start {r.startup:6.2f} s"
                    f" (CPU {r.cpu_ready:5.2f} s)  idle CPU {r.idle_cpu:4.1f} %"
                    f"  RSS {r.rss_mb:6.1f} MB  peak {r.hwm_mb:6.1f} MB"
                    f"  threads {r.threads:3d}{extra}",
                    flush=True,
                )
        print(f"  load average after: {load()}", flush=True)
        if not ok:
            print(f"  logs of the failed runs were in {work} (now removed)")
    return results, ok


def startup_table(results: list[Start]) -> None:
    names = list(dict.fromkeys(r.subject for r in results))

    def med(name: str, attr: str) -> float:
        values = [getattr(r, attr) for r in results if r.subject == name]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else float("nan")

    def spread(name: str, attr: str) -> str:
        values = [getattr(r, attr) for r in results if r.subject == name]
        return f"{min(values):.2f}–{max(values):.2f}"

    base_start = med("aiogram minimal", "startup")
    base_rss = med("aiogram minimal", "rss_mb")
    print()
    base_cpu = med("aiogram minimal", "cpu_ready")
    print("| process | start-up, median (min–max) | vs aiogram minimal | CPU to ready | vs aiogram "
          "minimal | idle RSS | vs aiogram minimal | peak RSS | threads | idle CPU "
          "| SIGTERM → exit |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        stop = med(name, "stop")
        print(
            f"| {name} | {med(name, 'startup'):.2f} s ({spread(name, 'startup')}) "
            f"| {med(name, 'startup') / base_start:.2f}× | {med(name, 'cpu_ready'):.2f} s "
            f"| {med(name, 'cpu_ready') / base_cpu:.2f}× | {med(name, 'rss_mb'):.1f} MB "
            f"| {med(name, 'rss_mb') / base_rss:.2f}× | {med(name, 'hwm_mb'):.1f} MB "
            f"| {med(name, 'threads'):.0f} | {med(name, 'idle_cpu'):.1f} % | {stop:.2f} s |"
        )


# -- the baseline bot --------------------------------------------------------------------------


async def minimal_bot() -> None:
    """The least an aiogram bot with a health endpoint does: getMe, one handler, polling."""
    from aiogram import Bot, Dispatcher
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.filters import CommandStart
    from aiogram.types import Message
    from aiohttp import web

    api = TelegramAPIServer.from_base(os.environ["TELEGRAM_API_URL"])
    bot = Bot(os.environ["TELEGRAM_BOT_TOKEN"], session=AiohttpSession(api=api))
    dp = Dispatcher()
    polling = False

    @dp.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer("Hello")

    @dp.startup()
    async def started() -> None:
        nonlocal polling
        polling = True

    async def readyz(_: web.Request) -> web.Response:
        return web.json_response({"ready": polling}, status=200 if polling else 503)

    app = web.Application()
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(os.environ["HTTP_PORT"])).start()
    await bot.delete_webhook()
    try:
        await dp.start_polling(bot, handle_signals=True)
    finally:
        await runner.cleanup()


# -- part 2: job claims, one and two processes on PostgreSQL -----------------------------------


async def worker(url: str, worker_id: str, out: str) -> None:
    """A JobEngine on the production defaults with a no-op kind; writes the ids it ran."""
    from core.jobs.context import JobContext
    from core.jobs.engine import JobEngine
    from core.jobs.registry import JobRegistry
    from core.settings import JobSettings
    from storage.db import create_engine, create_sessionmaker

    ran: list[int] = []

    async def noop(ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    registry = JobRegistry()
    registry.register("noop", noop)
    db = create_engine(url)
    engine = JobEngine(
        sessionmaker=create_sessionmaker(db),
        registry=registry,
        settings=JobSettings(_env_file=None),  # type: ignore[call-arg]
        worker_id=worker_id,
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
        write_ids(out, ran)


def write_ids(path: str, ids: list[int]) -> None:
    with open(path, "w") as f:
        f.writelines(f"{i}\n" for i in ids)


@dataclass
class Claims:
    processes: int
    jobs: int
    seconds: float  # T0 → last finished_at
    first_start: float  # T0 → first started_at
    per_worker: list[int] = field(default_factory=list)
    cpu_ms_per_job: float = 0.0
    tx_per_job: float = 0.0  # transactions the database counted (all workers) per job
    verified: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


class WorkerProc:
    def __init__(self, proc: asyncio.subprocess.Process, out: Path, name: str) -> None:
        self.proc, self.out, self.name = proc, out, name

    @classmethod
    async def start(cls, url: str, name: str, tmp: Path) -> WorkerProc:
        out = tmp / f"{name}.ids"
        err = (tmp / f"{name}.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.process_bench",
            "worker",
            "--url",
            url,
            "--worker-id",
            name,
            "--out",
            str(out),
            cwd=str(ROOT),
            env=clean_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
        err.close()
        worker = cls(proc, out, name)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            await worker.kill()
            log = (tmp / f"{name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} did not start: {line!r}\n{log}")
        return worker

    async def stop(self) -> list[int]:
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 60)
        if code != 0:
            raise RuntimeError(f"{self.name} exited with {code}")
        return [int(x) for x in self.out.read_text().split()]

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


async def transactions(sessions: Any) -> int:
    """Transactions committed or rolled back in this database so far (all connections)."""
    from sqlalchemy import text

    async with sessions() as session:
        await session.execute(text("SELECT pg_stat_clear_snapshot()"))
        return (
            await session.execute(
                text(
                    "SELECT xact_commit + xact_rollback FROM pg_stat_database"
                    " WHERE datname = current_database()"
                )
            )
        ).scalar_one()


async def settled_transactions(sessions: Any) -> int:
    """The count once the statistics collector has caught up (it flushes about every second)."""
    last = await transactions(sessions)
    while True:
        await asyncio.sleep(1.2)
        now = await transactions(sessions)
        if now - last <= 2:  # only our own probes
            return now
        last = now


async def claim_round(
    url: str, sessions: Any, tenant_id: int, processes: int, jobs: int, rnd: int, tmp: Path
) -> Claims:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import func, select

    from bench.jobs_bench import insert_jobs
    from storage.models import Job, JobStatus

    async with sessions() as session, session.begin():
        await session.execute(Job.__table__.delete())  # type: ignore[attr-defined]
    workers: list[WorkerProc] = []
    try:
        for n in range(processes):
            workers.append(await WorkerProc.start(url, f"r{rnd}w{n + 1}", tmp))
        # Due at T0, far enough ahead that every worker's 2 s poll sees the jobs and arms
        # its wake-up for T0 before it comes: all workers start at the same moment.
        lead = 5.0
        t0 = datetime.now(UTC) + timedelta(seconds=lead)
        inserting = time.monotonic()
        await insert_jobs(sessions, tenant_id, jobs, lambda n: t0)
        insert_s = time.monotonic() - inserting
        if insert_s > lead - 2.5:
            print(f"    (insert took {insert_s:.1f} s: a worker may have started late)")
        cpu_before = [cpu_seconds(w.proc.pid) for w in workers]
        tx_before = await transactions(sessions)
        deadline = time.monotonic() + lead + max(120.0, jobs / 20)
        while True:
            async with sessions() as session:
                done = (
                    await session.execute(
                        select(func.count()).where(Job.status == JobStatus.succeeded)
                    )
                ).scalar_one()
            if done >= jobs:
                break
            if time.monotonic() > deadline or any(w.proc.returncode is not None for w in workers):
                raise RuntimeError(f"only {done} of {jobs} jobs succeeded")
            await asyncio.sleep(0.2)
        cpu = sum(cpu_seconds(w.proc.pid) - c for w, c in zip(workers, cpu_before, strict=True))
        ran = [await w.stop() for w in workers]
    finally:
        for w in workers:
            await w.kill()
    # the workers' idle polls between T0 - lead and T0 are counted too: a few per worker
    tx = await settled_transactions(sessions) - tx_before

    async with sessions() as session:
        row = (
            await session.execute(
                select(
                    func.min(Job.started_at),
                    func.max(Job.finished_at),
                    func.count(),
                    func.count().filter(Job.status == JobStatus.succeeded, Job.attempts == 1),
                )
            )
        ).one()
        ids = set((await session.execute(select(Job.id))).scalars())
    first, last, total, clean = row
    result = Claims(
        processes=processes,
        jobs=jobs,
        seconds=(last - t0).total_seconds(),
        first_start=(first - t0).total_seconds(),
        per_worker=[len(r) for r in ran],
        cpu_ms_per_job=cpu * 1000 / jobs,
        tx_per_job=tx / jobs,
    )
    everything = [i for r in ran for i in r]
    if total != jobs:
        result.problems.append(f"{total} rows, {jobs} inserted")
    if clean != jobs:
        result.problems.append(f"{jobs - clean} rows not succeeded with attempts = 1")
    if len(everything) != len(set(everything)):
        result.problems.append(f"{len(everything) - len(set(everything))} runs were repeats")
    if set(everything) != ids:
        result.problems.append(
            f"{len(ids - set(everything))} never ran, {len(set(everything) - ids)} unknown ids"
        )
    result.verified = not result.problems
    return result


async def part_claims(args: argparse.Namespace) -> tuple[list[Claims], list[float], bool]:
    from bench.jobs_bench import migrated

    results: list[Claims] = []
    print(f"\njob claims on PostgreSQL, {args.jobs} no-op jobs per round; load {load()}")
    async with migrated("postgres", args.postgres) as (db, sessions, tenant_id):
        url = db.url.render_as_string(hide_password=False)
        if args.synchronous_commit == "off":
            # Commits stop waiting for the WAL flush: takes the (shared) disk's fsync latency
            # out, leaving what the processes and the database's CPU and locks can do.
            async with db.connect() as conn:
                await conn.exec_driver_sql(
                    f'ALTER DATABASE "{db.url.database}" SET synchronous_commit TO off'
                )
                await conn.commit()
            await db.dispose()  # new connections (the workers' too) get the setting
        print(
            f"  database {db.url.database}, synchronous_commit {args.synchronous_commit}",
            flush=True,
        )
        base = [await single_row_baseline(sessions, tenant_id, args.baseline_rows)]
        print(f"  baseline: {base[0]:.0f} single-row UPDATE transactions/s", flush=True)
        with tempfile.TemporaryDirectory(prefix="opsdeck-claims-") as tmp:
            plan = [1, 2, 2, 1] * ((args.claim_rounds + 1) // 2)
            for rnd, processes in enumerate(plan[: 2 * args.claim_rounds]):
                r = await claim_round(
                    url, sessions, tenant_id, processes, args.jobs, rnd + 1, Path(tmp)
                )
                results.append(r)
                print(
                    f"  round {rnd + 1} {processes} process{'es' if processes > 1 else '  '}"
                    f"  {r.rate:7.0f} jobs/s  ({r.seconds:5.2f} s; first start "
                    f"+{r.first_start * 1000:.0f} ms)  per worker {r.per_worker}"
                    f"  CPU {r.cpu_ms_per_job:.2f} ms/job  {r.tx_per_job:.2f} tx/job"
                    f"  {'each once' if r.verified else 'FAILED: ' + '; '.join(r.problems)}"
                    f"  load {load()}",
                    flush=True,
                )
        base.append(await single_row_baseline(sessions, tenant_id, args.baseline_rows))
        print(f"  baseline again: {base[1]:.0f} single-row UPDATE transactions/s", flush=True)
    return results, base, all(r.verified for r in results)


async def single_row_baseline(sessions: Any, tenant_id: int, rows: int) -> float:
    """bench/jobs_bench.py's floor: a 1-row UPDATE by primary key, one transaction each, from
    this process. How fast this database commits right now, on this machine's load."""
    from bench.jobs_bench import bench_baseline_update

    return await bench_baseline_update(sessions, tenant_id, rows)


def claims_table(results: list[Claims], base: list[float]) -> None:
    print()
    print(f"single-row UPDATE baseline before / after: {base[0]:,.0f} / {base[1]:,.0f} tx/s")
    # rounds run 1, 2, 2, 1, 1, 2, …: each neighbouring pair is measured within a minute or so
    pairs = [results[i : i + 2] for i in range(0, len(results) - 1, 2)]
    rates = [{r.processes: r.rate for r in pair} for pair in pairs]
    paired = [rate[2] / rate[1] for rate in rates if set(rate) == {1, 2}]
    if paired:
        print("2 vs 1 process, neighbouring rounds: " + ", ".join(f"{x:.2f}×" for x in paired))
    print("| processes | jobs/s, median (min–max) | vs 1 process | vs baseline "
          "| worker CPU per job | transactions per job | split between workers "
          "| each job once |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    floor = statistics.mean(base)
    one = statistics.median(r.rate for r in results if r.processes == 1)
    for p in (1, 2):
        rs = [r for r in results if r.processes == p]
        if not rs:
            continue
        rates = [r.rate for r in rs]
        split = ", ".join("/".join(str(n) for n in r.per_worker) for r in rs) if p > 1 else "–"
        print(
            f"| {p} | {statistics.median(rates):,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) "
            f"| {statistics.median(rates) / one:.2f}× | {statistics.median(rates) / floor:.2f}× "
            f"| {statistics.median(r.cpu_ms_per_job for r in rs):.2f} ms "
            f"| {statistics.median(r.tx_per_job for r in rs):.2f} | {split} "
            f"| {'yes' if all(r.verified for r in rs) else 'NO'} ({len(rs)} rounds) |"
        )


# -- entry point -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    minimal = sub.add_parser("minimal-bot", help="(internal) the baseline aiogram bot")
    minimal.add_argument("--deferred", action="store_true", help="defer aiogram's model builds")
    w = sub.add_parser("worker", help="(internal) a claiming worker process")
    w.add_argument("--url", required=True)
    w.add_argument("--worker-id", required=True)
    w.add_argument("--out", required=True)
    parser.add_argument("--postgres", metavar="URL", help="server for the claim part")
    parser.add_argument("--no-claims", action="store_true", help="skip the PostgreSQL part")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up part")
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--rounds", type=int, default=3, help="start-up rounds")
    parser.add_argument("--settle", type=float, default=8.0, help="s idle before RSS samples")
    parser.add_argument("--jobs", type=int, default=5000, help="no-op jobs per claim round")
    parser.add_argument("--baseline-rows", type=int, default=2000)
    parser.add_argument(
        "--synchronous-commit",
        choices=("on", "off"),
        default="on",
        help="PostgreSQL setting of the bench database (on = production durability)",
    )
    parser.add_argument("--claim-rounds", type=int, default=3, help="rounds of each process count")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.settle, args.jobs, args.claim_rounds = 1, 3.0, 2000, 1
        args.baseline_rows = 500
    return args


async def run(args: argparse.Namespace) -> int:
    import logging
    import platform

    logging.basicConfig(level=logging.WARNING)
    print(f"{platform.python_version()} on {os.cpu_count()} CPUs; load average {load()}")
    ok = True
    if not args.no_startup:
        starts, fine = await part_startup(args)
        ok &= fine
        if starts:
            startup_table(starts)
    if not args.no_claims:
        if not args.postgres:
            print("\nno --postgres URL: claim part skipped")
        else:
            claims, base, fine = await part_claims(args)
            ok &= fine
            if claims:
                claims_table(claims, base)
    print(f"\nload average at the end: {load()}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "minimal-bot":
        if args.deferred:
            import bot  # noqa: F401 - its __init__ defers aiogram's model builds
        asyncio.run(minimal_bot())
        return 0
    if args.command == "worker":
        asyncio.run(worker(args.url, args.worker_id, args.out))
        return 0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
