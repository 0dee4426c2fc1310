"""Shared fixtures: migrated databases on SQLite (always) and PostgreSQL (when configured)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

import bot  # noqa: F401 - first, so aiogram's models are deferred as in production
from storage import migrate
from storage.db import create_engine, create_sessionmaker
from storage.uow import UnitOfWork

# Every app a test starts (and every `python -m bot run` it spawns, which inherits this) binds
# its metrics listener to a free port: tests run side by side, the default 9464 would clash.
os.environ.setdefault("METRICS_PORT", "0")

# DESIGN §9: any Telegram, Reddit or S3 request made while the same task holds a database
# transaction fails the test (storage/txguard.py); bot processes the tests start inherit it.
os.environ["OPSDECK_TX_GUARD"] = "strict"

POSTGRES_URL = os.environ.get("OPSDECK_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="OPSDECK_TEST_POSTGRES_URL is not set")


def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'opsdeck.db'}"


async def create_postgres_database() -> str:
    """A fresh, empty database on the test server; returns its URL."""
    assert POSTGRES_URL
    base = make_url(POSTGRES_URL).set(drivername="postgresql+asyncpg")
    name = f"opsdeck_t_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    await admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(url: str) -> None:
    assert POSTGRES_URL
    base = make_url(POSTGRES_URL).set(drivername="postgresql+asyncpg")
    name = make_url(url).database
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=[needs_postgres, pytest.mark.postgres])]
)
async def db_url(request, tmp_path) -> AsyncIterator[str]:
    """An empty database URL, once on SQLite and once on PostgreSQL (when configured)."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@pytest.fixture
async def engine(db_url) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on each backend."""
    eng = create_engine(db_url)
    await migrate.upgrade(eng)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
def sessionmaker(engine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def uow(engine) -> AsyncIterator[UnitOfWork]:
    """The unit of work over the migrated engine, as the app builds it."""
    unit = UnitOfWork(engine)
    try:
        yield unit
    finally:
        await unit.dispose()
