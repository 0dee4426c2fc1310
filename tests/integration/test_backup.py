"""Backups of the SQLite database: copy under load, prove the copy, restore, retention, failures.

The copy is taken from a live WAL database while another task keeps committing jobs; the
counts recorded for the copy come from the copy's own snapshot, and the restore CLI puts the
file back into an empty data dir with exactly those rows.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.backup import (
    BACKUP_KIND,
    NOT_OURS,
    BackupConfig,
    BackupService,
    apply_retention,
    kept_files,
    last_backup,
    register_backup_jobs,
    run_backup,
)
from core.clock import OffsetClock
from core.errors import InvalidInput
from core.jobs.engine import JobEngine
from core.jobs.registry import JobRegistry
from core.notifier import RecordingNotifier
from core.services.jobs import JobService
from core.services.operators import bootstrap_owners, to_actor
from core.settings import JobSettings
from storage import migrate
from storage.db import create_engine, create_sessionmaker
from storage.models import JobStatus
from storage.repositories import jobs as job_repo
from storage.repositories import operators as op_repo
from storage.uow import over_session

ROOT = Path(__file__).resolve().parents[2]
OWNER = 1001


@dataclass
class Live:
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: OffsetClock
    notifier: RecordingNotifier
    tenant_id: int
    db_file: Path
    data_dir: Path

    def config(self, **kw) -> BackupConfig:
        return BackupConfig(
            database_url=f"sqlite+aiosqlite:///{self.db_file}",
            directory=self.data_dir / "backups",
            **kw,
        )

    async def submit(self, n: int) -> None:
        async with self.sessionmaker() as session:
            owner = to_actor(await op_repo.by_telegram_id(session, OWNER))
            jobs = JobService(over_session(session), self.clock, self.notifier)
            for _ in range(n):
                await jobs.submit(self.tenant_id, "demo.kind", {"x": 1}, actor=owner)


@pytest.fixture
async def live(tmp_path) -> AsyncIterator[Live]:
    data_dir = tmp_path / "data"
    db_file = data_dir / "opsdeck.db"
    engine = create_engine(f"sqlite+aiosqlite:///{db_file}")
    await migrate.upgrade(engine)
    sm = create_sessionmaker(engine)
    clock = OffsetClock()
    async with sm() as session:
        tenant = await bootstrap_owners(session, clock, [OWNER])
        await session.commit()
        tenant_id = tenant.id
    yield Live(sm, clock, RecordingNotifier(), tenant_id, db_file, data_dir)
    await engine.dispose()


def table_counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
    finally:
        conn.close()


def run_cli(*args: str, data_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM_", "OPSDECK_", "DATABASE_", "VAULT_", "HTTP_", "BACKUP_"))
    }
    env.update(PYTHONPATH=str(ROOT), OPSDECK_DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def flip_middle(path: Path) -> None:
    """Corrupt a copy the way a bad disk would: invert a run of bytes in the middle."""
    data = bytearray(path.read_bytes())
    start, end = len(data) * 2 // 5, len(data) * 3 // 5
    for i in range(start, end):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_backup_under_writes_then_restore_round_trip(live: Live, tmp_path) -> None:
    await live.submit(40)
    stop = asyncio.Event()
    written = 0

    async def writer() -> None:
        nonlocal written
        while not stop.is_set():
            await live.submit(1)
            written += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    await until(lambda: written >= 5)  # the writer is really committing before the copy starts
    record = await run_backup(live.config(), live.sessionmaker, live.clock)
    after_copy = written
    await until(lambda: written >= after_copy + 5)  # and keeps committing after it
    stop.set()
    await task

    assert record.ok, record.error
    assert record.integrity == "ok"
    backup_file = live.data_dir / "backups" / record.file_name
    assert backup_file.exists() and record.size_bytes == backup_file.stat().st_size
    assert record.file_name.startswith("opsdeck-") and record.file_name.endswith(".db")
    # the recorded counts are the copy's own snapshot: exact, not "at most"
    assert table_counts(backup_file) == record.row_counts
    assert record.row_counts["jobs"] >= 45
    assert table_counts(live.db_file)["jobs"] > record.row_counts["jobs"]  # writes went on
    assert not list((live.data_dir / "backups").glob("*.partial"))

    # the run is recorded and readable for /status
    last = await last_backup(live.sessionmaker)
    assert last is not None and last.id == record.id and last.ok

    # restore into an empty data dir through the real CLI
    fresh = tmp_path / "fresh"
    result = run_cli("restore", str(backup_file), data_dir=fresh, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "schema revision" in result.stdout and f"jobs: {record.row_counts['jobs']}" in (
        result.stdout
    )
    assert table_counts(fresh / "opsdeck.db") == record.row_counts

    # the restored database is usable: migrations see it at head, the bot can start on it
    migrated = run_cli("migrate", data_dir=fresh, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr


async def test_restore_refuses_a_data_dir_that_has_a_database(live: Live, tmp_path) -> None:
    record = await run_backup(live.config(), live.sessionmaker, live.clock)
    backup_file = live.data_dir / "backups" / record.file_name
    before = live.db_file.read_bytes()
    result = run_cli("restore", str(backup_file), data_dir=live.data_dir, cwd=tmp_path)
    assert result.returncode == 2
    assert "already exists" in result.stderr and result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr
    assert live.db_file.read_bytes() == before


async def test_restore_refuses_a_corrupt_or_foreign_file(live: Live, tmp_path) -> None:
    record = await run_backup(live.config(), live.sessionmaker, live.clock)
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes((live.data_dir / "backups" / record.file_name).read_bytes())
    flip_middle(corrupt)
    fresh = tmp_path / "fresh"
    result = run_cli("restore", str(corrupt), data_dir=fresh, cwd=tmp_path)
    assert result.returncode == 2 and "not a sound backup" in result.stderr, result.stderr
    assert not (fresh / "opsdeck.db").exists()

    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    result = run_cli("restore", str(foreign), data_dir=fresh, cwd=tmp_path)
    assert result.returncode == 2 and "not an Opsdeck database" in result.stderr
    assert not (fresh / "opsdeck.db").exists()

    result = run_cli("restore", str(tmp_path / "missing.db"), data_dir=fresh, cwd=tmp_path)
    assert result.returncode == 2 and "no such file" in result.stderr


async def run_job(live: Live, config: BackupConfig, *statuses: str):
    registry = JobRegistry()
    register_backup_jobs(config)(registry)
    engine = JobEngine(
        sessionmaker=live.sessionmaker,
        registry=registry,
        settings=JobSettings(_env_file=None, poll_seconds=0.2, lease_seconds=10),
        clock=live.clock,
        notifier=live.notifier,
        worker_id="backup-test",
    )
    await engine.start()
    try:
        async with live.sessionmaker() as session:
            job_id = await JobService(
                over_session(session), live.clock, live.notifier, engine
            ).submit(live.tenant_id, BACKUP_KIND, {})
        for _ in range(200):
            async with live.sessionmaker() as session:
                job = await job_repo.get(session, job_id)
            if job.status in statuses:
                return job
            await asyncio.sleep(0.05)
        raise AssertionError(f"backup job is {job.status}, not {statuses}")
    finally:
        await engine.stop(grace_seconds=1)


async def test_the_job_backs_up_and_says_what_it_made(live: Live) -> None:
    job = await run_job(live, live.config(), JobStatus.succeeded, JobStatus.dead)
    assert job.status == JobStatus.succeeded, job.last_error
    record = await last_backup(live.sessionmaker)
    assert record is not None and record.ok and record.job_id == job.id
    assert job.result["file"] == record.file_name
    assert not live.notifier.events


async def test_a_corrupt_copy_is_caught_recorded_and_reported(live: Live) -> None:
    good = await run_backup(live.config(), live.sessionmaker, live.clock)
    job = await run_job(
        live, live.config(after_copy=flip_middle), JobStatus.dead, JobStatus.succeeded
    )
    assert job.status == JobStatus.dead  # visible in /jobs as a failure
    assert "backup failed" in (job.last_error or "")

    record = await last_backup(live.sessionmaker)
    assert record is not None and record.id != good.id
    assert not record.ok and record.file_name is None
    assert record.error and ("integrity" in record.error or "malformed" in record.error), record
    texts = [e[2] for e in live.notifier.events if e[0] == "text"]
    assert len(texts) == 1 and "Backup failed" in texts[0]
    assert live.notifier.events[0][1] == live.tenant_id
    # the bad copy is gone, the earlier good backup untouched
    assert [f.name for f in kept_files(live.data_dir / "backups")] == [good.file_name]
    assert not list((live.data_dir / "backups").glob("*.partial"))


async def test_a_copy_that_lost_rows_is_caught(live: Live) -> None:
    def drop_rows(path: Path) -> None:  # a copy that opens fine but is not the snapshot
        conn = sqlite3.connect(path)
        conn.execute("DELETE FROM audit_log")
        conn.commit()
        conn.close()

    await live.submit(3)
    record = await run_backup(live.config(after_copy=drop_rows), live.sessionmaker, live.clock)
    assert not record.ok and "row counts differ" in (record.error or "")
    assert "audit_log" in record.error


async def test_retention_keeps_the_newest(live: Live) -> None:
    config = live.config(keep=3)
    names = []
    for _ in range(5):
        live.clock.advance(61)
        names.append((await run_backup(config, live.sessionmaker, live.clock)).file_name)
    kept = [f.name for f in kept_files(config.directory)]
    assert kept == list(reversed(names[-3:]))
    # a failing run never deletes anything
    live.clock.advance(61)
    bad = await run_backup(
        BackupConfig(config.database_url, config.directory, keep=1, after_copy=flip_middle),
        live.sessionmaker,
        live.clock,
    )
    assert not bad.ok
    assert [f.name for f in kept_files(config.directory)] == kept
    assert apply_retention(config.directory, 1) == kept[1:]


async def test_two_backups_in_one_second_do_not_collide(live: Live) -> None:
    config = live.config()
    a = await run_backup(config, live.sessionmaker, live.clock)
    b = await run_backup(config, live.sessionmaker, live.clock)
    assert a.ok and b.ok and a.file_name != b.file_name
    assert [f.name for f in kept_files(config.directory)] == [b.file_name, a.file_name]


async def test_postgresql_backups_are_the_databases_business(live: Live) -> None:
    config = BackupConfig(
        database_url="postgresql+asyncpg://u:p@db.invalid/opsdeck", directory=live.data_dir
    )
    assert not config.supported
    registry = JobRegistry()
    register_backup_jobs(config)(registry)
    from core.backup import backup_periodic_specs
    from core.jobs.context import JobContext

    assert backup_periodic_specs(config) == []  # nothing is scheduled
    ctx = JobContext(
        job_id=1,
        tenant_id=live.tenant_id,
        kind=BACKUP_KIND,
        payload={},
        attempt=1,
        max_attempts=1,
        sessionmaker=live.sessionmaker,
        clock=live.clock,
        notifier=live.notifier,
    )
    result = await registry.get(BACKUP_KIND).handler(ctx)
    assert result == {"skipped": NOT_OURS}
    assert "database's business" in NOT_OURS
    assert not (live.data_dir / "backups").exists() and live.notifier.events == []
    assert await last_backup(live.sessionmaker) is None

    async with live.sessionmaker() as session:
        owner = to_actor(await op_repo.by_telegram_id(session, OWNER))
        service = BackupService(
            over_session(session),
            config,
            JobService(over_session(session), live.clock, live.notifier),
            owner_ids={OWNER},
        )
        with pytest.raises(InvalidInput, match="database's business"):
            await service.now(owner)
        overview = await service.overview(owner)
    assert not overview.supported and overview.last is None and "PostgreSQL" in overview.message


async def test_two_backups_started_at_once_both_succeed_one_after_the_other(live: Live) -> None:
    """Issue 11 item 6: a lock per backup directory, names of their own (not by the second)."""
    config = live.config()
    a, b = await asyncio.gather(
        run_backup(config, live.sessionmaker, live.clock),
        run_backup(config, live.sessionmaker, live.clock),
    )
    assert a.ok and b.ok, (a.error, b.error)
    assert a.file_name != b.file_name
    assert sorted(f.name for f in kept_files(config.directory)) == sorted(
        [a.file_name, b.file_name]
    )
    for record in (a, b):
        assert table_counts(config.directory / record.file_name) == record.row_counts
    assert not list(config.directory.glob("*.partial"))


async def test_a_failed_run_touches_only_its_own_files(live: Live) -> None:
    config = live.config()
    config.directory.mkdir(parents=True)
    # another run's copy in progress (fresh, so no clean-up of abandoned ones applies)
    other = config.directory / "opsdeck-20260101T000000.000001Z-0therrun.db.partial"
    other.write_bytes(b"another run's bytes")
    bad = await run_backup(
        BackupConfig(config.database_url, config.directory, after_copy=flip_middle),
        live.sessionmaker,
        live.clock,
    )
    assert not bad.ok
    assert other.read_bytes() == b"another run's bytes"
    assert list(config.directory.glob("*.partial")) == [other]


async def test_a_run_that_cannot_get_its_turn_says_so_and_touches_nothing(live: Live) -> None:
    import fcntl

    config = live.config(lock_wait_seconds=0.3)
    config.directory.mkdir(parents=True)
    fd = os.open(config.directory / ".backup.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a backup in another process holds the turn
    try:
        refused = await run_backup(config, live.sessionmaker, live.clock)
    finally:
        os.close(fd)
    assert not refused.ok
    assert "another backup" in refused.error and "not started" in refused.error
    assert [p.name for p in config.directory.iterdir()] == [".backup.lock"]
    assert (await run_backup(config, live.sessionmaker, live.clock)).ok  # its turn now
