"""SQLite online backup and verification — plain sqlite3, no ORM, safe on a live WAL database.

`snapshot_copy` copies the database with SQLite's online backup API and counts every table's
rows *inside the same read transaction* the copy is taken from, so the counts describe exactly
the snapshot in the copy even while other connections keep writing. `verify_copy` opens a copy
read-only, runs `PRAGMA integrity_check` and counts the rows again. These functions block:
call them in a thread.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

ALEMBIC_TABLE = "alembic_version"


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other backends and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser().resolve()


def _tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    ).fetchall()
    return [r[0] for r in rows]


def _counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in _tables(conn)}


def snapshot_copy(source: Path, target: Path) -> dict[str, int]:
    """Copy `source` into a new file `target`; return the row counts of the copied snapshot.

    The counts and the copy come from one read transaction on the source connection (the
    backup API reuses a read transaction that is already open), so writers that commit while
    the copy runs are in neither. The copy is switched to rollback-journal mode so it is one
    self-contained file that opens read-only anywhere.
    """
    # created exclusively: a name another run took raises here, before anything is written
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    src = sqlite3.connect(str(source), isolation_level=None, timeout=30)
    try:
        dst = sqlite3.connect(str(target), isolation_level=None)
        try:
            src.execute("BEGIN")
            counts = _counts(src)  # opens the read transaction: this is the snapshot
            src.backup(dst)  # one step: the whole copy under that same read transaction
            src.execute("COMMIT")
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()
    return counts


@dataclass(slots=True)
class CopyCheck:
    ok: bool
    integrity: str
    counts: dict[str, int] = field(default_factory=dict)
    revision: str | None = None
    error: str | None = None


def verify_copy(path: Path, expected: dict[str, int] | None = None) -> CopyCheck:
    """Open `path` read-only; integrity_check must say "ok" and counts must equal `expected`."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        return CopyCheck(False, "", error=f"cannot open the copy: {exc}")
    try:
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return CopyCheck(False, str(exc), error=f"integrity_check failed: {exc}")
        integrity = "; ".join(str(r[0]) for r in rows)[:2000]
        if integrity != "ok":
            return CopyCheck(False, integrity, error=f"integrity_check: {integrity[:300]}")
        try:
            counts = _counts(conn)
            revision = None
            if ALEMBIC_TABLE in counts:
                row = conn.execute(f"SELECT version_num FROM {ALEMBIC_TABLE}").fetchone()
                revision = row[0] if row else None
        except sqlite3.DatabaseError as exc:
            return CopyCheck(False, integrity, error=f"reading the copy failed: {exc}")
        if expected is not None and counts != expected:
            diff = sorted(
                f"{t}: {expected.get(t)} → {counts.get(t)}"
                for t in set(expected) | set(counts)
                if expected.get(t) != counts.get(t)
            )
            return CopyCheck(
                False, integrity, counts, revision, "row counts differ: " + ", ".join(diff)
            )
        return CopyCheck(True, integrity, counts, revision)
    finally:
        conn.close()


def has_database(path: Path) -> bool:
    """A database file (or its WAL) is already at `path`."""
    return any(Path(f"{path}{suffix}").exists() for suffix in ("", "-wal", "-journal"))
