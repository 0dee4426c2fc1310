"""The per-update identity read: operator and guided-flow state in one lock-free statement."""

from __future__ import annotations

import asyncio

from aiogram.fsm.storage.base import StorageKey
from sqlalchemy import text

from bot.fsm_storage import UPDATE_STATES, DatabaseStorage
from core.clock import FrozenClock
from core.services.operators import bootstrap_owners
from storage.db import create_engine, create_sessionmaker
from storage.identity import IdentityReader
from storage.models import Operator, Role
from storage.repositories import operators as op_repo
from storage.uow import UnitOfWork

KEY = StorageKey(bot_id=1, chat_id=77, user_id=77)


async def _owner(sessionmaker, user_id: int = 77) -> None:
    async with sessionmaker() as session:
        await bootstrap_owners(session, FrozenClock(), [user_id])
        await session.commit()


async def test_stranger_operator_and_state_in_one_read(engine, sessionmaker, uow) -> None:
    reader = IdentityReader(uow)
    storage = DatabaseStorage(uow)
    key = storage.key_builder.build(KEY)
    try:
        stranger = await reader.read(77, key)
        assert stranger.operator is None and stranger.state is None

        await _owner(sessionmaker)
        await storage.set_state(KEY, "Flow:first")
        found = await reader.read(77, key)
        assert found.operator is not None
        assert (found.operator.telegram_user_id, found.operator.role) == (77, Role.owner)
        assert found.operator.timezone == "UTC" and found.operator.notify is True
        assert found.state == "Flow:first"
        assert (await reader.read(77, None)).state is None  # no key asked, no state
        assert (await reader.read(78, key)).operator is None  # someone else
    finally:
        await uow.dispose()


async def test_a_removed_operator_is_a_stranger_on_the_next_read(engine, sessionmaker, uow) -> None:
    """Nothing is cached: deny by default holds at once, in every process."""
    reader = IdentityReader(uow)
    try:
        await _owner(sessionmaker)
        assert (await reader.read(77, None)).operator is not None
        async with sessionmaker() as session:
            op = await op_repo.by_telegram_id(session, 77)
            assert isinstance(op, Operator)
            await op_repo.remove(session, op.id)
            await session.commit()
        assert (await reader.read(77, None)).operator is None
    finally:
        await uow.dispose()


async def test_the_read_does_not_wait_for_a_writer(engine, sessionmaker, uow) -> None:
    """A transaction holding SQLite's write lock (every transaction there begins IMMEDIATE)
    does not delay the read, and the read sees the last committed state."""
    await _owner(sessionmaker)
    reader = IdentityReader(uow)
    try:
        async with sessionmaker() as session:
            await session.execute(text("UPDATE operators SET timezone = 'Asia/Tokyo'"))
            # the write is not committed: the read neither blocks nor sees it
            found = await asyncio.wait_for(reader.read(77, None), timeout=2)
            assert found.operator is not None and found.operator.timezone == "UTC"
            await session.commit()
        found = await reader.read(77, None)
        assert found.operator is not None and found.operator.timezone == "Asia/Tokyo"
    finally:
        await uow.dispose()


async def test_in_memory_sqlite_reads_through_the_pool() -> None:
    """Another connection to ':memory:' would be another database; the pool's is the one."""
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    try:
        async with engine.begin() as conn:
            from storage.models import Base

            await conn.run_sync(Base.metadata.create_all)
        await _owner(create_sessionmaker(engine), 5)
        uow = UnitOfWork(engine)
        assert (await IdentityReader(uow).read(5, "k")).operator is not None
        await uow.dispose()
    finally:
        await engine.dispose()


async def test_storage_answers_the_update_state_without_a_query(sessionmaker, uow) -> None:
    """aiogram reads the state of every update; within one the prefetched value is used and
    kept current by set_state, so a handler that moves the flow on reads its own write."""
    storage = DatabaseStorage(uow)
    key = storage.key_builder.build(KEY)
    await storage.set_state(KEY, "Flow:stored")
    token = UPDATE_STATES.set({key: "Flow:prefetched"})
    try:
        assert await storage.get_state(KEY) == "Flow:prefetched"
        await storage.set_state(KEY, "Flow:second")
        assert await storage.get_state(KEY) == "Flow:second"
        other = StorageKey(bot_id=1, chat_id=5, user_id=5)
        assert await storage.get_state(other) is None  # not prefetched: read as before
    finally:
        UPDATE_STATES.reset(token)
    assert await storage.get_state(KEY) == "Flow:second"


async def test_a_busy_sqlite_read_falls_back_to_a_thread_and_waits(tmp_path) -> None:
    """The read runs on the loop's thread with a 5 ms busy timeout; when the database stays
    locked longer it is retried on a worker thread with the full timeout."""
    import sqlite3

    from storage import migrate

    path = tmp_path / "busy.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await migrate.upgrade(engine)
    await _owner(create_sessionmaker(engine), 9)
    await engine.dispose()  # exclusive locking mode needs the only open connection
    uow = UnitOfWork(engine)
    reader = IdentityReader(uow)
    locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        locker.execute("PRAGMA locking_mode=EXCLUSIVE")
        locker.execute("BEGIN EXCLUSIVE")  # in exclusive locking mode: readers are shut out
        locker.execute("UPDATE operators SET timezone = 'Europe/Oslo'")
        read = asyncio.create_task(reader.read(9, None))
        await asyncio.sleep(0.3)
        assert not read.done()  # waiting on a worker thread, the loop is free
        locker.execute("COMMIT")
        locker.close()  # an exclusive-mode connection keeps its lock until it closes
        found = await asyncio.wait_for(read, timeout=10)
        assert found.operator is not None and found.operator.timezone == "Europe/Oslo"
    finally:
        locker.close()
        await uow.dispose()
        await engine.dispose()
