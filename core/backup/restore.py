"""`python -m bot restore <file>`: put a verified backup in place of a database that is not there.

Restore never overwrites: it refuses unless the configured SQLite database does not exist yet
(a fresh data dir), so a typo cannot destroy the live database. The file must pass the same
check a backup passes (integrity_check "ok", readable row counts) and be an Opsdeck database
(an `alembic_version` table at a revision this code knows). It is copied with the online backup
API under a temporary name, checked again, then renamed into place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import OpsdeckError
from core.settings import Settings
from storage.backup import ALEMBIC_TABLE, has_database, snapshot_copy, sqlite_file, verify_copy


class RestoreRefused(OpsdeckError):
    """Restore did not happen; `message` is one line saying why."""


@dataclass(frozen=True, slots=True)
class Restored:
    source: Path
    target: Path
    revision: str
    counts: dict[str, int]


def restore(settings: Settings, file: str | Path) -> Restored:
    target = sqlite_file(settings.database_url)
    if target is None:
        raise RestoreRefused(
            "DATABASE_URL is not a SQLite file: restore PostgreSQL with its own tools."
        )
    source = Path(file).expanduser().resolve()
    if not source.is_file():
        raise RestoreRefused(f"{source}: no such file.")
    if has_database(target):
        raise RestoreRefused(
            f"{target} already exists: restore only fills an empty data dir "
            "(stop the bot and move the current database away first)."
        )
    check = verify_copy(source)
    if not check.ok:
        raise RestoreRefused(f"{source} is not a sound backup: {check.error}")
    if ALEMBIC_TABLE not in check.counts or not check.revision:
        raise RestoreRefused(f"{source} is not an Opsdeck database (no {ALEMBIC_TABLE} table).")
    from storage import migrate

    if check.revision not in migrate.revisions():
        raise RestoreRefused(
            f"{source} is at schema revision {check.revision}, which this version of Opsdeck "
            "does not know (is it from a newer release?)."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.restoring")
    partial.unlink(missing_ok=True)
    try:
        counts = snapshot_copy(source, partial)
        again = verify_copy(partial, counts)
        if not again.ok:
            raise RestoreRefused(f"the copy in {target.parent} failed its check: {again.error}")
        if has_database(target):  # someone started the bot meanwhile
            raise RestoreRefused(f"{target} appeared while restoring; nothing was changed.")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return Restored(source, target, check.revision, counts)
