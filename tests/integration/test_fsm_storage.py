"""The database FSM storage keeps state and data per key, on both backends."""

from __future__ import annotations

from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey

from bot.fsm_storage import DatabaseStorage


class Flow(StatesGroup):
    first = State()
    second = State()


async def test_state_and_data_round_trip_and_survive_a_new_storage(sessionmaker, uow) -> None:
    key = StorageKey(bot_id=1, chat_id=10, user_id=10)
    other = StorageKey(bot_id=1, chat_id=11, user_id=11)
    storage = DatabaseStorage(uow)
    assert await storage.get_state(key) is None and await storage.get_data(key) == {}
    await storage.set_state(key, Flow.first)
    await storage.update_data(key, {"account": 3})
    await storage.update_data(key, {"title": "héllo"})
    # a fresh storage object (a restart, another process) sees the same
    again = DatabaseStorage(uow)
    assert await again.get_state(key) == Flow.first.state
    assert await again.get_data(key) == {"account": 3, "title": "héllo"}
    assert await again.get_state(other) is None
    await again.set_state(key, None)
    await again.set_data(key, {})
    assert await storage.get_state(key) is None and await storage.get_data(key) == {}


async def test_state_written_inside_a_write_joins_it(uow) -> None:
    """A handler that moves the flow on inside its own write (on SQLite that transaction holds
    the write lock) must not wait on its own lock, and sees what it wrote."""
    import asyncio

    from sqlalchemy import text

    key = StorageKey(bot_id=1, chat_id=12, user_id=12)
    storage = DatabaseStorage(uow)
    async with uow.write() as session:
        await session.execute(text("SELECT 1"))  # the handler's transaction is open
        await asyncio.wait_for(storage.set_state(key, Flow.second), timeout=5)
        await asyncio.wait_for(storage.update_data(key, {"step": 2}), timeout=5)
        assert await storage.get_state(key) == Flow.second.state  # sees its own write
    assert await DatabaseStorage(uow).get_data(key) == {"step": 2}


async def test_a_step_written_during_an_update_is_visible_at_once(uow) -> None:
    """The bot asks the next question right after moving the flow on; the answer is a new
    update whose state is read on another connection before this update has ended."""
    key = StorageKey(bot_id=1, chat_id=13, user_id=13)
    storage = DatabaseStorage(uow)
    await storage.set_state(key, Flow.first)
    await storage.update_data(key, {"n": 1})
    assert await DatabaseStorage(uow).get_state(key) == Flow.first.state
    assert await DatabaseStorage(uow).get_data(key) == {"n": 1}
