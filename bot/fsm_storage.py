"""aiogram FSM storage in the database: guided flows survive restarts and span processes.

During an update, reads and writes go through that update's own session (set by the context
middleware in UPDATE_SESSION) and commit with it; outside one, each call has its own session.
The update's state itself was already read together with its operator (storage/identity.py)
and handed over in UPDATE_STATES, so aiogram's per-update state read costs no query.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import (
    BaseStorage,
    DefaultKeyBuilder,
    KeyBuilder,
    StateType,
    StorageKey,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.clock import Clock, SystemClock
from storage.models import FsmRecord
from storage.repositories import fsm as fsm_repo

_STATE_SQL = f"SELECT state FROM {FsmRecord.__tablename__} WHERE storage_key = ?"

UPDATE_SESSION: ContextVar[AsyncSession | None] = ContextVar("opsdeck_update_session", default=None)
# storage key -> state, read with the update's operator; kept current by set_state
UPDATE_STATES: ContextVar[dict[str, str | None] | None] = ContextVar(
    "opsdeck_update_states", default=None
)


class DatabaseStorage(BaseStorage):
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Clock | None = None,
        key_builder: KeyBuilder | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.clock = clock or SystemClock()
        self.key_builder = key_builder or DefaultKeyBuilder(with_bot_id=True)
        bind = sessionmaker.kw.get("bind")
        self._sqlite = isinstance(bind, AsyncEngine) and bind.dialect.name == "sqlite"

    @asynccontextmanager
    async def _session(self, write: bool) -> AsyncIterator[AsyncSession]:
        current = UPDATE_SESSION.get()
        if current is not None:
            yield current
            if write:
                # Durable before the handler answers: the user's reply to the next question is
                # another update, whose state is read on another connection.
                await current.commit()
            return
        async with self.sessionmaker() as session:
            yield session
            if write:
                await session.commit()

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        storage_key = self.key_builder.build(key)
        async with self._session(write=True) as session:
            await fsm_repo.save(session, storage_key, self.clock.now(), state=value)
        known = UPDATE_STATES.get()
        if known is not None and storage_key in known:
            known[storage_key] = value

    async def get_state(self, key: StorageKey) -> str | None:
        storage_key = self.key_builder.build(key)
        known = UPDATE_STATES.get()
        if known is not None and storage_key in known:
            return known[storage_key]
        if UPDATE_SESSION.get() is None and self._sqlite:
            return await self._sqlite_state(storage_key)
        async with self._session(write=False) as session:
            row = await fsm_repo.load(session, storage_key)
        return row.state if row else None

    async def _sqlite_state(self, storage_key: str) -> str | None:
        """One autocommit SELECT on a pooled connection, outside any transaction.

        aiogram's FSM middleware reads the state of every update before the update's unit of
        work exists, so this read had a session of its own — and on SQLite every transaction
        begins IMMEDIATE (storage/db.py): each update took and released the database write
        lock once just to learn that it has no state. A single SELECT in autocommit mode reads
        a consistent snapshot (WAL) without the write lock; the result is the same."""
        engine = self.sessionmaker.kw["bind"]
        async with engine.connect() as conn:  # no statement through SQLAlchemy: no BEGIN
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection  # aiosqlite.Connection
            async with driver.execute(_STATE_SQL, (storage_key,)) as cursor:
                row = await cursor.fetchone()
        return row[0] if row else None

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        async with self._session(write=True) as session:
            await fsm_repo.save(
                session, self.key_builder.build(key), self.clock.now(), data=dict(data)
            )

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        async with self._session(write=False) as session:
            row = await fsm_repo.load(session, self.key_builder.build(key))
        return dict(row.data) if row and row.data else {}

    async def close(self) -> None:
        return None
