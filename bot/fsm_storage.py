"""aiogram FSM storage in the database: guided flows survive restarts and span processes."""

from __future__ import annotations

from collections.abc import Mapping
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

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        async with self.sessionmaker() as session, session.begin():
            await fsm_repo.save(session, self.key_builder.build(key), self.clock.now(), state=value)

    async def get_state(self, key: StorageKey) -> str | None:
        async with self.sessionmaker() as session:
            row = await fsm_repo.load(session, self.key_builder.build(key))
        return row.state if row else None

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        async with self.sessionmaker() as session, session.begin():
            await fsm_repo.save(
                session, self.key_builder.build(key), self.clock.now(), data=dict(data)
            )

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        async with self.sessionmaker() as session:
            row = await fsm_repo.load(session, self.key_builder.build(key))
        return dict(row.data) if row and row.data else {}

    async def close(self) -> None:
        return None
