"""storage/uow.py and storage/txguard.py on SQLite and PostgreSQL: joins, after-commit hooks,
reads that hold no transaction, dispose, and the guard against peer calls inside a write."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import FrozenClock
from storage import txguard
from storage.repositories import fsm as fsm_repo
from storage.uow import NoWriteOpen, UnitOfWork

NOW = FrozenClock().now()


async def _state(uow: UnitOfWork, key: str) -> str | None:
    async with uow.read() as session:
        row = await fsm_repo.load(session, key)
    return row.state if row else None


async def _in_db_transaction(session: AsyncSession) -> bool:
    """Whether the database (not SQLAlchemy's bookkeeping) has a transaction open here."""
    if session.bind.dialect.name == "sqlite":
        conn = await session.connection()
        raw = await conn.get_raw_connection()
        return bool(raw.driver_connection.in_transaction)
    # PostgreSQL: ask the server, from another connection, what this backend is doing
    pid = await session.scalar(text("SELECT pg_backend_pid()"))
    async with session.bind.connect() as other:
        state = await other.scalar(
            text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        )
        await other.rollback()
    return state == "idle in transaction"


async def test_a_nested_write_joins_and_its_hooks_wait_for_the_outer_commit(uow) -> None:
    ran: list[str] = []
    async with uow.write() as outer:
        await fsm_repo.save(outer, "a", NOW, state="outer")
        async with uow.write() as inner:
            assert inner is outer
            await fsm_repo.save(inner, "b", NOW, state="inner")
            uow.after_commit(lambda: ran.append("inner"))
        assert ran == []  # the inner block ended; nothing is committed yet
        async with uow.read() as seen:
            assert seen is outer  # a read inside the write sees what it wrote
        assert await _state(uow, "b") == "inner"
    assert ran == ["inner"]
    assert (await _state(uow, "a"), await _state(uow, "b")) == ("outer", "inner")


async def test_a_rollback_undoes_the_joined_writes_and_runs_no_hook(uow) -> None:
    ran: list[str] = []

    async def hook() -> None:
        ran.append("async hook")

    with pytest.raises(RuntimeError, match="refused"):
        async with uow.write() as session:
            await fsm_repo.save(session, "gone", NOW, state="x")
            async with uow.write() as inner:
                await fsm_repo.save(inner, "gone-too", NOW, state="y")
                uow.after_commit(hook)
            raise RuntimeError("refused")
    assert ran == []
    assert await _state(uow, "gone") is None and await _state(uow, "gone-too") is None
    with pytest.raises(NoWriteOpen):
        uow.after_commit(hook)
    async with uow.write() as session:
        await fsm_repo.save(session, "kept", NOW, state="z")
        uow.after_commit(hook)
    assert ran == ["async hook"]


async def test_a_failing_hook_neither_undoes_the_write_nor_stops_the_next(uow) -> None:
    ran: list[str] = []

    def broken() -> None:
        raise ValueError("hook broke")

    async with uow.write() as session:
        await fsm_repo.save(session, "k", NOW, state="committed")
        uow.after_commit(broken)
        uow.after_commit(lambda: ran.append("second"))
    assert ran == ["second"]
    assert await _state(uow, "k") == "committed"


async def test_reads_hold_no_transaction(uow, engine) -> None:
    txguard.watch(engine)
    async with uow.write() as session:
        await fsm_repo.save(session, "r", NOW, state="before")
    async with uow.read() as reading:
        assert await fsm_repo.load(reading, "r") is not None
        assert not await _in_db_transaction(reading)
        assert txguard.open_transactions() == 0
        # a writer on another connection goes through while the read stays open
        async with uow.write() as session:
            await fsm_repo.save(session, "r", NOW, state="after")
        assert await fsm_repo.load(reading, "r") is not None
    async with uow.write() as session:
        assert await _in_db_transaction(session)
        assert txguard.open_transactions() == 1
    assert txguard.open_transactions() == 0
    assert await _state(uow, "r") == "after"


async def test_read_row_is_a_lock_free_point_lookup(uow) -> None:
    sql = "SELECT state FROM fsm_state WHERE storage_key = :k"
    go = asyncio.Event()

    async def elsewhere() -> tuple | None:  # another update's task, started outside the write
        await go.wait()
        return await uow.read_row(sql, {"k": "p"})

    other = asyncio.create_task(elsewhere())
    async with uow.write() as session:
        await fsm_repo.save(session, "p", NOW, state="one")
        # inside a write it reads through the write: it sees the uncommitted row
        assert await uow.read_row(sql, {"k": "p"}) == ("one",)
        go.set()  # the other task neither waits for this write nor sees it
        assert await asyncio.wait_for(asyncio.shield(other), timeout=5) is None
    assert await uow.read_row(sql, {"k": "p"}) == ("one",)


async def test_a_task_spawned_in_a_write_does_not_join_it_after_it_ended(uow) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def later() -> str | None:
        started.set()
        await release.wait()
        async with uow.write() as session:  # a write of its own: the parent's has ended
            await fsm_repo.save(session, "late", NOW, state="own")
        return await _state(uow, "late")

    async with uow.write() as session:
        await fsm_repo.save(session, "parent", NOW, state="x")
        task = asyncio.create_task(later())
        await started.wait()
    release.set()
    assert await asyncio.wait_for(task, timeout=5) == "own"


async def test_dispose_closes_the_read_side_and_leaves_the_callers_engine(db_url, engine) -> None:
    unit = UnitOfWork(engine)
    await unit.read_row("SELECT 1", {})
    async with unit.read() as session:
        await session.execute(text("SELECT 1"))
    await unit.dispose()
    assert unit._fast is None
    if unit.read_engine is not engine and engine.dialect.name == "sqlite":
        assert unit.read_engine.pool.checkedin() == 0
    async with engine.connect() as conn:  # the write engine is the caller's: still open
        assert await conn.scalar(text("SELECT 1")) == 1


# -- the guard -------------------------------------------------------------------------------


async def test_a_peer_call_inside_a_write_fails_in_strict_mode(uow, engine, monkeypatch) -> None:
    monkeypatch.setenv("OPSDECK_TX_GUARD", "strict")
    txguard.watch(engine)
    calls: list[str] = []
    transport = httpx.MockTransport(
        lambda request: calls.append(str(request.url)) or httpx.Response(200)
    )
    async with httpx.AsyncClient(
        transport=transport, event_hooks={"request": [txguard.httpx_hook]}
    ) as http:
        async with uow.write() as session:
            await fsm_repo.save(session, "g", NOW, state="x")
            with pytest.raises(txguard.TransactionSpansNetworkCall, match=r"peer\.test"):
                await http.get("http://peer.test/")
            with pytest.raises(txguard.TransactionSpansNetworkCall):
                txguard.s3_hook(request=None)
        assert calls == []  # refused before anything was sent
        # a read, even one that stays open, holds no transaction: the call goes out
        async with uow.read() as session:
            await fsm_repo.load(session, "g")
            await http.get("http://peer.test/")
        await http.get("http://peer.test/")  # and after the commit
    assert len(calls) == 2


async def test_an_autocommit_read_does_not_count(engine, monkeypatch) -> None:
    monkeypatch.setenv("OPSDECK_TX_GUARD", "strict")
    txguard.watch(engine)
    reads = engine.execution_options(isolation_level="AUTOCOMMIT")
    async with reads.connect() as conn:
        await conn.execute(text("SELECT 1"))
        assert txguard.open_transactions() == 0
        txguard.check("peer")  # no transaction: nothing to refuse
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))  # autobegins a real transaction
        assert txguard.open_transactions() == 1
        with pytest.raises(txguard.TransactionSpansNetworkCall):
            txguard.check("peer")
        await conn.rollback()
    assert txguard.open_transactions() == 0


async def test_outside_strict_mode_the_guard_only_logs(uow, engine, monkeypatch, caplog) -> None:
    monkeypatch.delenv("OPSDECK_TX_GUARD", raising=False)
    monkeypatch.setattr(txguard, "_warned", set())  # logged once per call site and process
    txguard.watch(engine)
    async with uow.write() as session:
        await fsm_repo.save(session, "lenient", NOW, state="x")
        txguard.check("a lenient peer")
    assert "while talking to a lenient peer" in caplog.text
