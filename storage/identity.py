"""Who sent an update, and which guided-flow state they are in: one read, no write lock.

Every update needs both before anything else happens: the operator row (deny by default) and
the aiogram FSM state for the update's storage key. Reading them through an ORM session cost
two transactions per update, and on SQLite every transaction begins IMMEDIATE
(storage/db.py), so each plain read took the database write lock and queued behind every
writer. Here both come from one statement outside any transaction:

* SQLite: a connection of its own, in autocommit mode and `query_only`, used only for this
  read. In WAL mode a lone SELECT reads the latest committed snapshot without any lock a
  writer waits for. It runs on the event loop's thread: two indexed point lookups in a
  local file take microseconds, far less than the hand-off to a worker thread and back
  (aiosqlite) that it replaces — measured in bench/webhook_bench.py. Should the read ever
  find the database busy (a reader only waits during WAL recovery or a truncating
  checkpoint), it gives up after a few milliseconds and is retried on a worker thread with
  the usual busy timeout, so the loop never stalls.
* PostgreSQL (and an in-memory SQLite, whose data another connection cannot see): the same
  statement on a pooled connection.

Nothing is cached: a removed operator is refused on their next update, in every process.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import SQLITE_BUSY_TIMEOUT_MS
from storage.models import FsmRecord, Operator

FAST_BUSY_MS = 5  # on the loop's thread, never wait longer than this for a lock

_SQL = (
    "SELECT o.id, o.tenant_id, o.role, o.timezone, o.display_name, o.notify,"
    f" (SELECT f.state FROM {FsmRecord.__tablename__} f WHERE f.storage_key = :key)"
    f" FROM (SELECT 1 AS one) AS one LEFT JOIN {Operator.__tablename__} o"
    " ON o.telegram_user_id = :user_id"
)


@dataclass(frozen=True, slots=True)
class OperatorRecord:
    id: int
    tenant_id: int
    telegram_user_id: int
    role: str
    timezone: str
    display_name: str | None
    notify: bool


@dataclass(frozen=True, slots=True)
class Identity:
    operator: OperatorRecord | None  # None: a stranger
    state: str | None  # the FSM state stored under the key asked for (None without a key)


class IdentityReader:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        url = make_url(str(engine.url))
        database = url.database or ""
        self._sqlite_path = (
            database
            if url.get_backend_name() == "sqlite"
            and database not in ("", ":memory:")
            and not database.startswith("file:")
            else None
        )
        self._conn: sqlite3.Connection | None = None

    async def read(self, user_id: int, fsm_key: str | None) -> Identity:
        params = {"user_id": user_id, "key": fsm_key}
        if self._sqlite_path is not None:
            try:
                row: Any = self._sqlite_row(params)
            except sqlite3.OperationalError:  # busy for longer than FAST_BUSY_MS
                row = await asyncio.to_thread(self._sqlite_row_patiently, params)
        else:
            async with self.engine.connect() as conn:
                row = (await conn.execute(text(_SQL), params)).first()
        if row is None:
            return Identity(None, None)
        state = row[6] if fsm_key is not None else None
        if row[0] is None:
            return Identity(None, state)
        operator = OperatorRecord(
            id=row[0],
            tenant_id=row[1],
            telegram_user_id=user_id,
            role=row[2],
            timezone=row[3],
            display_name=row[4],
            notify=bool(row[5]),
        )
        return Identity(operator, state)

    def _sqlite_row(self, params: dict[str, Any]) -> Any:
        if self._conn is None:
            self._conn = self._connect(FAST_BUSY_MS)
        return self._conn.execute(_SQL, params).fetchone()

    def _sqlite_row_patiently(self, params: dict[str, Any]) -> Any:
        conn = self._connect(SQLITE_BUSY_TIMEOUT_MS)
        try:
            return conn.execute(_SQL, params).fetchone()
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

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
