"""Backups of the embedded SQLite database, proven by a check, with retention (issue 5 item 2).

The periodic job `maintenance.backup` copies the live database with SQLite's online backup API
into `<data dir>/backups/opsdeck-<UTC timestamp to the microsecond>-<random>.db` (written
under a `.partial` name it creates exclusively, renamed only once the copy passed its
check), then proves the copy: opened read-only, `PRAGMA integrity_check` must answer "ok"
and every table must hold exactly the rows counted inside the snapshot the copy was taken
from. Every run is recorded in the `backups` table. A
failed copy or check is deleted, tells the operators, and fails the job (visible in /jobs).
Only after a good copy are older files beyond the retention count removed, so a failing run
never costs a good backup.

Runs never collide: one at a time per backup directory (an exclusive `flock` on its
`.backup.lock`, held across copy, check and retention by whichever process runs; a second run
waits its turn, up to `LOCK_WAIT_SECONDS`, then fails saying why), every run writes files of
its own name, and a failed run deletes only the `.partial` it created itself.

On PostgreSQL, backups are the database's business (pg_dump, base backups, PITR): the job does
nothing and says so, and no schedule is added.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.actor import Actor, require_deployment_owner
from core.clock import Clock
from core.errors import InvalidInput
from core.jobs.context import JobContext
from core.jobs.engine import PeriodicSpec
from core.jobs.registry import JobRegistry, PermanentFailure
from core.masking import mask_urls
from storage.backup import snapshot_copy, sqlite_file, verify_copy
from storage.backup_models import BackupRun

if TYPE_CHECKING:
    from core.services.jobs import JobService
    from core.settings import Settings
    from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

BACKUP_KIND = "maintenance.backup"
PREFIX = "opsdeck-"
SUFFIX = ".db"
PARTIAL = ".partial"
LOCK_NAME = ".backup.lock"
LOCK_WAIT_SECONDS = 600.0  # a run waits this long for the one before it, then gives up
NOT_OURS = (
    "Backups are the database's business on PostgreSQL: use its own tools "
    "(pg_dump, base backups, point-in-time recovery). Opsdeck makes no copies."
)


@dataclass(frozen=True, slots=True)
class BackupConfig:
    database_url: str
    directory: Path
    keep: int = 7
    enabled: bool = True
    interval_seconds: int | None = 86400
    cron: str | None = None
    # how long a run waits for the backup before it (one at a time per directory)
    lock_wait_seconds: float = LOCK_WAIT_SECONDS
    # Fault injection for tests: called with the fresh copy before it is checked.
    after_copy: Callable[[Path], None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> BackupConfig:
        b = settings.backup
        return cls(
            database_url=settings.database_url,
            directory=(b.dir or settings.data_dir / "backups").expanduser().resolve(),
            keep=max(1, b.keep),
            enabled=b.enabled,
            interval_seconds=None if b.cron else b.interval_seconds,
            cron=b.cron or None,
        )

    @property
    def source(self) -> Path | None:
        return sqlite_file(self.database_url)

    @property
    def supported(self) -> bool:
        return self.source is not None


@dataclass(frozen=True, slots=True)
class BackupRecord:
    id: int
    file_name: str | None
    size_bytes: int | None
    duration_ms: int
    ok: bool
    integrity: str | None
    row_counts: dict[str, int]
    error: str | None
    started_at: datetime
    finished_at: datetime
    job_id: int | None

    @classmethod
    def of(cls, row: BackupRun) -> BackupRecord:
        return cls(
            id=row.id,
            file_name=row.file_name,
            size_bytes=row.size_bytes,
            duration_ms=row.duration_ms,
            ok=row.ok,
            integrity=row.integrity,
            row_counts=dict(row.row_counts or {}),
            error=row.error,
            started_at=row.started_at,
            finished_at=row.finished_at,
            job_id=row.job_id,
        )


@dataclass(frozen=True, slots=True)
class KeptFile:
    name: str
    size_bytes: int
    modified: datetime


# -- the files -------------------------------------------------------------------------------
def _order(path: Path) -> tuple[str, int]:
    """`opsdeck-<stamp>[-<tag>].db`: by timestamp, then by when the file was written."""
    stamp, _, _tag = path.name[len(PREFIX) : -len(SUFFIX)].partition("-")
    seconds, _, micros = stamp.rstrip("Z").partition(".")  # older names: to the second
    return seconds + micros.ljust(6, "0"), path.stat().st_mtime_ns


def kept_files(directory: Path) -> list[KeptFile]:
    """Finished backups in `directory`, newest first (names sort by their UTC timestamp)."""
    if not directory.is_dir():
        return []
    files = sorted(directory.glob(f"{PREFIX}*{SUFFIX}"), key=_order, reverse=True)
    out = []
    for p in files:
        st = p.stat()
        out.append(KeptFile(p.name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
    return out


def apply_retention(directory: Path, keep: int) -> list[str]:
    """Delete all but the newest `keep` backups; return the deleted names."""
    deleted = []
    for f in kept_files(directory)[max(1, keep) :]:
        (directory / f.name).unlink(missing_ok=True)
        deleted.append(f.name)
    return deleted


def _target(directory: Path, now: datetime) -> Path:
    """A name no other run takes: the time to the microsecond and a random tag."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return directory / f"{PREFIX}{stamp}-{secrets.token_hex(4)}{SUFFIX}"


class BackupBusy(Exception):
    """Another backup kept the directory's lock for LOCK_WAIT_SECONDS."""


@contextlib.contextmanager
def _one_at_a_time(directory: Path, wait_seconds: float) -> Iterator[None]:
    """Hold the directory's backup lock (blocking: call in a thread). The lock is the
    kernel's: it dies with the process that held it, so a crash never leaves it taken."""
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BackupBusy(
                        f"another backup has been running for over {int(wait_seconds)} s; "
                        "this one was not started"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _drop_stale_partials(directory: Path, older_than: timedelta = timedelta(days=1)) -> None:
    """A process killed mid-copy leaves a `.partial`; a day later it is surely abandoned."""
    limit = time.time() - older_than.total_seconds()
    for p in directory.glob(f"{PREFIX}*{SUFFIX}{PARTIAL}"):
        if p.stat().st_mtime < limit:
            p.unlink(missing_ok=True)


def _copy_and_check(config: BackupConfig, source: Path, now: datetime) -> dict[str, Any]:
    """Blocking part of a run (in a thread). Returns the fields of the record to write."""
    config.directory.mkdir(parents=True, exist_ok=True)
    try:
        with _one_at_a_time(config.directory, config.lock_wait_seconds):
            return _copy_and_check_alone(config, source, now)
    except BackupBusy as exc:
        return {"ok": False, "error": str(exc)}


def _copy_and_check_alone(config: BackupConfig, source: Path, now: datetime) -> dict[str, Any]:
    _drop_stale_partials(config.directory)
    final = _target(config.directory, now)
    partial = Path(f"{final}{PARTIAL}")
    try:
        counts = snapshot_copy(source, partial)
    except FileExistsError as exc:  # not ours: never touch it
        return {"ok": False, "error": f"copy failed: {exc}"[:2000]}
    except Exception as exc:  # disk full, unreadable source, …: recorded, not raised
        partial.unlink(missing_ok=True)
        return {"ok": False, "error": f"copy failed: {type(exc).__name__}: {exc}"[:2000]}
    try:
        if config.after_copy is not None:
            config.after_copy(partial)
        check = verify_copy(partial, counts)
    except Exception as exc:  # disk full, unreadable source, …: recorded, not raised
        partial.unlink(missing_ok=True)
        return {"ok": False, "error": f"copy failed: {type(exc).__name__}: {exc}"[:2000]}
    if not check.ok:
        partial.unlink(missing_ok=True)  # never leave a copy that failed its check
        return {
            "ok": False,
            "integrity": check.integrity,
            "row_counts": counts,
            "error": check.error,
        }
    partial.replace(final)
    return {
        "ok": True,
        "file_name": final.name,
        "size_bytes": final.stat().st_size,
        "integrity": check.integrity,
        "row_counts": counts,
        "deleted": apply_retention(config.directory, config.keep),
    }


# -- the run ---------------------------------------------------------------------------------
async def run_backup(
    config: BackupConfig,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: Clock,
    *,
    job_id: int | None = None,
) -> BackupRecord:
    """Copy, check, record, prune. Never raises for a failed copy: the record says `ok=False`."""
    source = config.source
    if source is None:
        raise InvalidInput(NOT_OURS)
    started = clock.now()
    t0 = time.monotonic()
    result = await asyncio.to_thread(_copy_and_check, config, source, started)
    duration_ms = int((time.monotonic() - t0) * 1000)
    deleted = result.pop("deleted", [])
    async with sessionmaker() as session, session.begin():
        row = BackupRun(
            job_id=job_id,
            file_name=result.get("file_name"),
            size_bytes=result.get("size_bytes"),
            duration_ms=duration_ms,
            ok=result["ok"],
            integrity=result.get("integrity"),
            row_counts=result.get("row_counts") or {},
            error=result.get("error"),
            started_at=started,
            finished_at=clock.now(),
        )
        session.add(row)
        await session.flush()
    record = BackupRecord.of(row)
    if record.ok:
        log.info(
            "backup %s: %d bytes in %d ms, check ok%s",
            record.file_name,
            record.size_bytes or 0,
            duration_ms,
            f", removed {len(deleted)} old" if deleted else "",
        )
    else:
        log.error("backup failed: %s", record.error)
    return record


def failure_text(record: BackupRecord) -> str:
    return (
        "⚠️ Backup failed — the database was NOT backed up this time.\n"
        f"{mask_urls(record.error) or 'unknown error'}\n"
        "Older backups are untouched. See /backup."
    )


def register_backup_jobs(config: BackupConfig) -> Callable[[JobRegistry], None]:
    async def backup(ctx: JobContext) -> dict[str, Any]:
        if not config.supported:
            log.info("backup skipped: %s", NOT_OURS)
            return {"skipped": NOT_OURS}
        record = await run_backup(config, ctx.sessionmaker, ctx.clock, job_id=ctx.job_id)
        if not record.ok:
            await ctx.notifier.tell_operators(ctx.tenant_id, failure_text(record))
            raise PermanentFailure(f"backup failed: {record.error}")
        return {
            "file": record.file_name,
            "bytes": record.size_bytes,
            "ms": record.duration_ms,
            "rows": sum(record.row_counts.values()),
        }

    def register(registry: JobRegistry) -> None:
        registry.register(
            BACKUP_KIND,
            backup,
            description="back up the SQLite database and prove the copy",
        )  # a failed run raises PermanentFailure: reported at once, the next period tries again

    return register


def backup_periodic_specs(config: BackupConfig) -> list[PeriodicSpec]:
    if not config.enabled or not config.supported:
        return []
    return [
        PeriodicSpec(
            name="backup", kind=BACKUP_KIND, seconds=config.interval_seconds, cron=config.cron
        )
    ]


async def last_backup(
    db: async_sessionmaker[AsyncSession] | AsyncSession,
) -> BackupRecord | None:
    """The most recent backup run (good or not), for /backup and /status."""
    stmt = select(BackupRun).order_by(BackupRun.started_at.desc(), BackupRun.id.desc()).limit(1)
    if isinstance(db, AsyncSession):
        row = await db.scalar(stmt)
    else:
        async with db() as session:
            row = await session.scalar(stmt)
    return BackupRecord.of(row) if row is not None else None


async def last_good_backup(session: AsyncSession) -> BackupRecord | None:
    stmt = (
        select(BackupRun)
        .where(BackupRun.ok.is_(True))
        .order_by(BackupRun.started_at.desc(), BackupRun.id.desc())
        .limit(1)
    )
    row = await session.scalar(stmt)
    return BackupRecord.of(row) if row is not None else None


# -- what /backup talks to --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BackupOverview:
    supported: bool
    message: str | None
    last: BackupRecord | None
    last_good: BackupRecord | None
    kept: list[KeptFile]
    directory: Path
    keep: int
    schedule: str


class BackupService:
    """Backups copy every workspace's data: deployment owners (OPSDECK_OWNER_IDS) only."""

    def __init__(
        self,
        uow: UnitOfWork,
        config: BackupConfig,
        jobs: JobService,
        owner_ids: Collection[int] = (),
    ) -> None:
        self.uow = uow
        self.config = config
        self.jobs = jobs
        self.owner_ids = frozenset(owner_ids)

    def schedule(self) -> str:
        c = self.config
        if not c.enabled:
            return "off (BACKUP_ENABLED=false)"
        if c.cron:
            return f"cron {c.cron} (UTC)"
        secs = c.interval_seconds or 0
        if secs % 3600 == 0:
            return f"every {secs // 3600} h"
        return f"every {secs // 60} min" if secs % 60 == 0 else f"every {secs} s"

    async def overview(self, actor: Actor) -> BackupOverview:
        require_deployment_owner(actor, self.owner_ids, "see backups")
        c = self.config
        if not c.supported:
            return BackupOverview(False, NOT_OURS, None, None, [], c.directory, c.keep, "")
        async with self.uow.read() as session:
            last, last_good = await last_backup(session), await last_good_backup(session)
        return BackupOverview(
            True,
            None,
            last,
            last_good,
            await asyncio.to_thread(kept_files, c.directory),
            c.directory,
            c.keep,
            self.schedule(),
        )

    async def now(self, actor: Actor) -> int | None:
        """Queue a backup right away; raises InvalidInput with the reason on PostgreSQL."""
        require_deployment_owner(actor, self.owner_ids, "start a backup")
        if not self.config.supported:
            raise InvalidInput(NOT_OURS)
        return await self.jobs.submit(actor.tenant_id, BACKUP_KIND, {}, actor=actor, max_attempts=1)
