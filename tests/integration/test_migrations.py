"""Alembic migrations on SQLite and PostgreSQL.

The stairway: every revision goes up, down one step and up again, so each downgrade really
undoes its upgrade (and a forgotten drop or a duplicated create shows up here, not in
production). Then the migrated schema must be exactly what the models describe.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

import storage
from storage import migrate
from storage.db import create_engine
from storage.models import Base


def import_all_model_modules() -> list[str]:
    """Import every `storage/**/*models*.py`: each registers its tables on the shared Base."""
    root = Path(storage.__file__).parent
    names = []
    for info in pkgutil.walk_packages([str(root)], prefix="storage."):
        if "models" in info.name.rsplit(".", 1)[-1] and ".migrations" not in info.name:
            importlib.import_module(info.name)
            names.append(info.name)
    return names


def test_every_model_module_is_found() -> None:
    names = import_all_model_modules()
    assert "storage.models" in names
    assert {"tenants", "operators", "jobs", "audit_log"} <= set(Base.metadata.tables)
    on_disk = {
        ".".join(("storage", *p.relative_to(Path(storage.__file__).parent).with_suffix("").parts))
        for p in Path(storage.__file__).parent.rglob("*models*.py")
        if "migrations" not in p.parts
    }
    assert on_disk <= set(names)


def test_revisions_form_one_line() -> None:
    revisions = migrate.revisions()
    assert revisions, "no migrations found"
    assert len(set(revisions)) == len(revisions)
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert len(script.get_heads()) == 1, f"more than one head: {script.get_heads()}"
    assert script.get_current_head() == revisions[-1]


def test_head_revision_constant_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert script.get_current_head() == migrate.HEAD_REVISION, (
        "a new migration: set storage.migrate.HEAD_REVISION to its revision"
    )


_UPGRADE_AND_REPORT = """
import asyncio, sys
from storage import migrate
from storage.db import create_engine

async def main():
    engine = create_engine(sys.argv[1])
    await migrate.upgrade(engine)
    await engine.dispose()
    print("alembic loaded" if "alembic" in sys.modules else "alembic not loaded")

asyncio.run(main())
"""


async def test_upgrade_of_a_database_at_head_does_not_load_alembic(db_url: str) -> None:
    """Start-up on a migrated database reads the stamped revision and stops there; a database
    one revision behind is still migrated to head."""
    engine = create_engine(db_url)
    try:
        await migrate.upgrade(engine, migrate.revisions()[-2])
        behind = await _run_upgrade_process(db_url)
        assert await migrate.current_revision(engine) == migrate.HEAD_REVISION
        at_head = await _run_upgrade_process(db_url)
    finally:
        await engine.dispose()
    assert behind == "alembic loaded"
    assert at_head == "alembic not loaded"


async def _run_upgrade_process(db_url: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _UPGRADE_AND_REPORT, db_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=Path(storage.__file__).parent.parent,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names()) - {"alembic_version"}


async def test_stairway_up_down_up(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        previous: str | None = None
        before: set[str] = set()
        for revision in migrate.revisions():
            await migrate.upgrade(engine, revision)
            assert await migrate.current_revision(engine) == revision
            async with engine.connect() as conn:
                after = await conn.run_sync(_tables)

            await migrate.downgrade(engine, "-1")
            assert await migrate.current_revision(engine) == previous
            async with engine.connect() as conn:
                assert await conn.run_sync(_tables) == before, f"{revision} downgrade left tables"

            await migrate.upgrade(engine, revision)
            assert await migrate.current_revision(engine) == revision
            async with engine.connect() as conn:
                assert await conn.run_sync(_tables) == after, (
                    f"{revision} upgrade is not repeatable"
                )
            previous, before = revision, after

        # And all the way down from head to an empty database.
        await migrate.downgrade(engine, "base")
        assert await migrate.current_revision(engine) is None
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == set()
    finally:
        await engine.dispose()


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn,
        opts={
            "compare_type": True,
            "compare_server_default": False,
            "render_as_batch": conn.dialect.name == "sqlite",
        },
    )
    return compare_metadata(context, Base.metadata)


async def test_models_match_migrations(db_url: str) -> None:
    import_all_model_modules()
    engine = create_engine(db_url)
    try:
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert diff == [], "the models and the migrations disagree; write a migration:\n" + "\n".join(
        map(repr, diff)
    )
