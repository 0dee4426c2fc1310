"""Backups of the embedded SQLite database, proven by a check, with retention (issue 5 item 2).

The periodic job `maintenance.backup` copies the live database with SQLite's online backup API
into `<data dir>/backups/opsdeck-<UTC timestamp>.db` (written under a `.partial` name and
renamed only once the copy passed its check), then proves the copy: opened read-only,
`PRAGMA integrity_check` must answer "ok" and every table must hold exactly the rows counted
inside the snapshot the copy was taken from. Every run is recorded in the `backups` table. A
failed copy or check is deleted, tells the operators, and fails the job (visible in /jobs).
Only after a good copy are older files beyond the retention count removed, so a failing run
never costs a good backup.

On PostgreSQL, backups are the database's business (pg_dump, base backups, PITR): the job does
nothing and says so, and no schedule is added.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
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
from storage.backup import snapshot_copy, sqlite_file, verify_copy
from storage.backup_models import BackupRun

if TYPE_CHECKING:
    from core.services.container import ServiceFactory
    from core.services.jobs import JobService
    from core.settings import Settings
    from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

BACKUP_KIND = "maintenance.backup"
PREFIX = "opsdeck-"
SUFFIX = ".db"
PARTIAL = ".partial"
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
    """`opsdeck-<stamp>[-n].db`: by timestamp, then the same-second counter."""
    stamp, _, n = path.name[len(PREFIX) : -len(SUFFIX)].partition("-")
    return stamp, int(n) if n.isdigit() else 0


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
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    path, n = directory / f"{PREFIX}{stamp}{SUFFIX}", 1
    while path.exists() or Path(f"{path}{PARTIAL}").exists():
        path, n = directory / f"{PREFIX}{stamp}-{n}{SUFFIX}", n + 1
    return path


def _drop_stale_partials(directory: Path, older_than: timedelta = timedelta(days=1)) -> None:
    """A process killed mid-copy leaves a `.partial`; a day later it is surely abandoned."""
    limit = time.time() - older_than.total_seconds()
    for p in directory.glob(f"{PREFIX}*{SUFFIX}{PARTIAL}"):
        if p.stat().st_mtime < limit:
            p.unlink(missing_ok=True)


def _copy_and_check(config: BackupConfig, source: Path, now: datetime) -> dict[str, Any]:
    """Blocking part of a run (in a thread). Returns the fields of the record to write."""
    config.directory.mkdir(parents=True, exist_ok=True)
    _drop_stale_partials(config.directory)
    final = _target(config.directory, now)
    partial = Path(f"{final}{PARTIAL}")
    try:
        counts = snapshot_copy(source, partial)
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
        f"{record.error or 'unknown error'}\n"
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


def service_builder(config: BackupConfig) -> Callable[[AsyncSession, ServiceFactory], Any]:
    def build(session: AsyncSession, factory: ServiceFactory) -> BackupService:
        from core.services.jobs import JobService

        uow = factory.uow.over(session)
        jobs = JobService(uow, factory.clock, factory.notifier, factory.engine)
        return BackupService(uow, config, jobs, factory.owner_ids)

    return build
