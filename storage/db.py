"""Engine and session factory. SQLite gets WAL, a busy timeout and immediate transactions."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage import txguard

SQLITE_BUSY_TIMEOUT_MS = 30_000


def is_connection_lost(exc: BaseException | None) -> bool:
    """Whether `exc` (or what caused it) is the database connection going away mid-statement
    (server restart, `pg_terminate_backend`, a network cut). SQLAlchemy has then invalidated
    that connection; the pool's pre-ping replaces the others, so the work can be tried again
    on a fresh one."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    """An AsyncEngine for `url`, watched by storage.txguard; creates the SQLite file's
    directory when needed."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            echo=echo,
            hide_parameters=True,  # statement parameters (FSM data, sealed secrets) never logged
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        _tune_sqlite(engine)
    else:
        engine = create_async_engine(
            url,
            echo=echo,
            hide_parameters=True,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
        )
    txguard.watch(engine)  # every engine: no peer call while one of its transactions is open
    return engine


def create_read_engine(url: str) -> AsyncEngine | None:
    """SQLite only (None otherwise): an engine for lock-free reads beside `create_engine`'s.

    Its connections never begin a transaction: each SELECT runs in autocommit and reads the
    latest committed snapshot (WAL) without SQLite's write lock, which every transaction of
    the main engine takes (BEGIN IMMEDIATE). For reads whose result a later write re-checks
    atomically anyway (a claim looks its link up here; spending the use is one conditional
    UPDATE), so they need not queue behind every writer. `query_only`: it cannot write.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    engine = create_async_engine(
        url, hide_parameters=True, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # the driver never BEGINs; SQLAlchemy does not either
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA query_only=1")
        cur.close()

    return engine


def _tune_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy emit BEGIN itself (see below) instead of pysqlite's implicit one.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # IMMEDIATE takes the write lock up front, so a read-then-write transaction waits
        # (busy_timeout) instead of failing with "database is locked" at its first write.
        # An AUTOCOMMIT connection (storage.uow's reads) begins nothing.
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            conn.exec_driver_sql("BEGIN IMMEDIATE")


# pg_advisory_xact_lock key held while a process migrates and bootstraps ("OPSDECK").
STARTUP_LOCK_KEY = 0x4F50534445434B


async def hold_startup_lock(conn: AsyncConnection | AsyncSession) -> None:
    """Until the current transaction ends, be the only process starting up on this database.

    Several processes started at once would otherwise race to create the same tables and
    owner rows. PostgreSQL: a transaction-scoped advisory lock; SQLite: nothing to do, its
    immediate transactions already run one at a time."""
    bind = conn.bind if isinstance(conn, AsyncSession) else conn
    if bind is not None and bind.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": STARTUP_LOCK_KEY})


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
