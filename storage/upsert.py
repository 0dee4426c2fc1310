"""INSERT … ON CONFLICT in the session's own dialect (SQLite or PostgreSQL).

Both dialects spell `on_conflict_do_nothing` / `on_conflict_do_update` the same way; only the
`insert` differs, and this is the one place that picks it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert(session: AsyncSession, table: Any) -> Any:
    """An `insert(table)` with the ON CONFLICT clauses of the database `session` talks to."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
