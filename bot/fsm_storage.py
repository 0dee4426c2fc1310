"""aiogram FSM storage in the database: guided flows survive restarts and span processes.

During an update, reads and writes go through that update's own session (set by the context
middleware in UPDATE_SESSION) and commit with it; outside one, each call has its own session.
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
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import Clock, SystemClock
from storage.repositories import fsm as fsm_repo

UPDATE_SESSION: ContextVar[AsyncSession | None] = ContextVar("opsdeck_update_session", default=None)


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

    @asynccontextmanager
    async def _session(self, write: bool) -> AsyncIterator[AsyncSession]:
        current = UPDATE_SESSION.get()
        if current is not None:
            yield current  # committed by the update's unit of work
            return
        async with self.sessionmaker() as session:
            yield session
            if write:
                await session.commit()

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        async with self._session(write=True) as session:
            await fsm_repo.save(session, self.key_builder.build(key), self.clock.now(), state=value)

    async def get_state(self, key: StorageKey) -> str | None:
        async with self._session(write=False) as session:
            row = await fsm_repo.load(session, self.key_builder.build(key))
        return row.state if row else None

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
