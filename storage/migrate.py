"""Apply Alembic migrations from code (start-up, `python -m bot migrate`, tests).

Alembic is imported only when there is something to migrate: a start-up on a database already
at ``HEAD_REVISION`` reads one row and leaves Alembic (~10 MB of RSS) unloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions; tests/integration/test_migrations.py checks it
# against Alembic's own head, so a new migration cannot be forgotten here.
HEAD_REVISION = "0014"


def alembic_config(url: str | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _run(connection: Connection, action: str, revision: str) -> None:
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    getattr(command, action)(cfg, revision)


def _stamped_revisions(connection: Connection) -> list[str]:
    if not inspect(connection).has_table("alembic_version"):
        return []
    return [row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))]


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate; processes starting together on one PostgreSQL database take turns (the
    first migrates, the others find the schema at head)."""
    from storage.db import hold_startup_lock

    async with engine.begin() as conn:
        await hold_startup_lock(conn)
        if revision == "head" and await conn.run_sync(_stamped_revisions) == [HEAD_REVISION]:
            return
        await conn.run_sync(_run, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_run, "downgrade", revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def _get(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(_get)


def revisions() -> list[str]:
    """All revisions, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]
