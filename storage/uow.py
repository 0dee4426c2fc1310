"""The unit of work: one short write transaction at a time, reads that never take a lock.

DESIGN.md §9: a transaction never spans a network call. Everything that touches the database
goes through one of two doors:

* `uow.read()` — a session whose statements each run on their own, outside any transaction
  (SQLite: the lock-free, `query_only` read engine in WAL mode; PostgreSQL: AUTOCOMMIT). It
  holds no write lock and no snapshot, so it may stay open across a network call.
  `uow.read_row(sql, params)` is the same door for one hot point lookup (every update's
  identity read): on a SQLite file it runs on a `query_only`, autocommit sqlite3 connection
  on the event loop's thread — two indexed lookups take microseconds there, against ~0.5 ms
  of CPU for aiosqlite's hop to its thread and back (measured for bench/webhook_bench.py).
  Should the file be busy (a reader only waits during WAL recovery or a truncating
  checkpoint), it gives up after a few milliseconds and is retried on a worker thread with
  the usual busy timeout, so the loop never stalls.
* `uow.write()` — one transaction (SQLite: BEGIN IMMEDIATE, the file's write lock), committed
  when the block ends; then the after-commit hooks run (wake the engine, kick the outbox
  sender). Keep the block short and free of network calls: `storage.txguard` fails a test
  that talks to a peer from inside one.

A `write()` inside a `write()` of the same task joins it (one transaction, hooks run after
the outer commit); a `read()` inside a `write()` reads through the write session, so it sees
what the transaction wrote. Repositories never commit: this module does.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage.db import SQLITE_BUSY_TIMEOUT_MS, create_read_engine

log = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[None] | None]
FAST_BUSY_MS = 5  # on the loop's thread, never wait longer than this for a lock


@dataclass
class _Write:
    session: AsyncSession
    uow: UnitOfWork
    hooks: list[AfterCommit] = field(default_factory=list)
    open: bool = True


_CURRENT: ContextVar[_Write | None] = ContextVar("opsdeck_uow_write", default=None)


def _open_write() -> _Write | None:
    """The write this code runs in. A task started inside a write inherits the context
    variable (`asyncio.wait_for` runs its awaitable as such a task): it joins while the write
    is open, and not after it ended."""
    current = _CURRENT.get()
    return current if current is not None and current.open else None


class NoWriteOpen(RuntimeError):
    """`after_commit` was called outside `uow.write()`."""


class UnitOfWork:
    """Short write transactions and lock-free reads over one database (see module doc)."""

    def __init__(self, engine: AsyncEngine, read_engine: AsyncEngine | None = None) -> None:
        self.engine = engine
        self._writes = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self._owns_read_engine = read_engine is None
        self.read_engine = read_engine if read_engine is not None else _read_view(engine)
        self._reads = async_sessionmaker(self.read_engine, expire_on_commit=False, autoflush=False)
        self._sqlite_path = _sqlite_file(engine)
        self._fast: sqlite3.Connection | None = None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        current = _open_write()
        if current is not None and current.uow is self:
            yield current.session  # see what this transaction wrote
            return
        async with self._reads() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        current = _open_write()
        if current is not None and current.uow is self:
            yield current.session  # joined: the outer block commits
            return
        state: _Write | None = None
        async with self._writes() as session:
            state = _Write(session, self)
            token = _CURRENT.set(state)
            try:
                async with session.begin():
                    yield session
            finally:
                state.open = False
                _CURRENT.reset(token)
        await _run_hooks(state.hooks)

    @staticmethod
    def after_commit(hook: AfterCommit) -> None:
        """Run `hook` once the enclosing `write()` has committed (never if it rolls back)."""
        current = _open_write()
        if current is None:
            raise NoWriteOpen("after_commit() needs an open uow.write()")
        current.hooks.append(hook)

    @staticmethod
    def in_write() -> bool:
        return _open_write() is not None

    async def read_row(self, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row of one short lookup (`:name` parameters), through the read door."""
        current = _open_write()
        if self._sqlite_path is not None and (current is None or current.uow is not self):
            try:
                return self._fast_row(sql, params)
            except sqlite3.OperationalError:  # busy for longer than FAST_BUSY_MS
                return await asyncio.to_thread(self._patient_row, sql, params)
        async with self.read() as session:
            row = (await session.execute(text(sql), dict(params))).first()
        return tuple(row) if row is not None else None

    def _fast_row(self, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        if self._fast is None:
            self._fast = self._connect(FAST_BUSY_MS)
        return self._fast.execute(sql, params).fetchone()

    def _patient_row(self, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        conn = self._connect(SQLITE_BUSY_TIMEOUT_MS)
        try:
            return conn.execute(sql, params).fetchone()
        finally:
            conn.close()

    def _connect(self, busy_ms: int) -> sqlite3.Connection:
        assert self._sqlite_path is not None
        conn = sqlite3.connect(
            self._sqlite_path,
            timeout=busy_ms / 1000,
            isolation_level=None,  # autocommit: no transaction is ever left open
            check_same_thread=False,
        )
        conn.execute("PRAGMA query_only=1")
        return conn

    async def dispose(self) -> None:
        """Close what this unit of work opened for reads (the write engine is the caller's)."""
        fast, self._fast = self._fast, None
        if fast is not None:
            fast.close()
        if self._owns_read_engine and self.read_engine is not self.engine:
            await self.read_engine.dispose()


def _read_view(engine: AsyncEngine) -> AsyncEngine:
    """Where reads run: no transaction, no lock held (see the module doc)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            # one in-memory database per connection: reads share the writers' connection
            return engine
        read = create_read_engine(url.render_as_string(hide_password=False))
        assert read is not None
        return read
    return engine.execution_options(isolation_level="AUTOCOMMIT")


async def _run_hooks(hooks: list[AfterCommit]) -> None:
    for hook in hooks:
        try:
            result = hook()
            if result is not None:
                await result
        except Exception:  # a hook's failure must not undo or hide the committed work
            log.exception("after-commit hook %r failed", hook)


def _sqlite_file(engine: AsyncEngine) -> str | None:
    """The SQLite file another connection can open (not `:memory:`, not a `file:` URI)."""
    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    return None if database.startswith("file:") else database


class _OverSession(UnitOfWork):
    """`over_session`: both doors are the caller's session; `write()` commits it at the end
    of the outermost block, then runs the hooks."""

    def __init__(self, session: AsyncSession) -> None:  # no engines of its own
        self.session = session
        self._owns_read_engine = False
        self._sqlite_path, self._fast = None, None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        current = _open_write()
        yield current.session if current is not None and current.uow is self else self.session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        current = _open_write()
        if current is not None and current.uow is self:
            yield current.session
            return
        state = _Write(self.session, self)
        token = _CURRENT.set(state)
        try:
            yield self.session
            await self.session.commit()
        except BaseException:
            await self.session.rollback()
            raise
        finally:
            state.open = False
            _CURRENT.reset(token)
        await _run_hooks(state.hooks)

    async def dispose(self) -> None:
        return None


def over_session(session: AsyncSession) -> UnitOfWork:
    """A unit of work that is just `session`, for code that holds one session for all its
    work (tests, benchmarks): reads see its uncommitted rows; nothing here is lock-free."""
    return _OverSession(session)
