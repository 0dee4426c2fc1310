"""aiogram FSM storage in the database: guided flows survive restarts and span processes.

Writes are one short `uow.write()` each, joining the caller's when one is open (durable
before the handler answers: the user's reply to the next question is another update, read
on another connection); reads are lock-free `uow.read()`s. The update's state itself was
already read together with its operator (storage/identity.py) and handed over in
UPDATE_STATES, so aiogram's per-update state read costs no query.
"""

from __future__ import annotations

from collections.abc import Mapping
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

from core.clock import Clock, SystemClock
from storage.repositories import fsm as fsm_repo
from storage.uow import UnitOfWork

# storage key -> state, read with the update's operator; kept current by set_state
UPDATE_STATES: ContextVar[dict[str, str | None] | None] = ContextVar(
    "opsdeck_update_states", default=None
)


class DatabaseStorage(BaseStorage):
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock | None = None,
        key_builder: KeyBuilder | None = None,
    ) -> None:
        self.uow = uow
        self.clock = clock or SystemClock()
        self.key_builder = key_builder or DefaultKeyBuilder(with_bot_id=True)

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        storage_key = self.key_builder.build(key)
        async with self.uow.write() as session:
            await fsm_repo.save(session, storage_key, self.clock.now(), state=value)
        known = UPDATE_STATES.get()
        if known is not None and storage_key in known:
            known[storage_key] = value

    async def get_state(self, key: StorageKey) -> str | None:
        storage_key = self.key_builder.build(key)
        known = UPDATE_STATES.get()
        if known is not None and storage_key in known:
            return known[storage_key]
        async with self.uow.read() as session:
            row = await fsm_repo.load(session, storage_key)
        return row.state if row else None

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        async with self.uow.write() as session:
            await fsm_repo.save(
                session, self.key_builder.build(key), self.clock.now(), data=dict(data)
            )

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        async with self.uow.read() as session:
            row = await fsm_repo.load(session, self.key_builder.build(key))
        return dict(row.data) if row and row.data else {}

    async def close(self) -> None:
        return None
