"""The database-backed rate limiter (`core.ratelimit`) on SQLite and PostgreSQL: the window,
per-key counting, the peek, pruning, and concurrent hits from two engines (two processes'
worth of connection pools) that together never admit more than the limit."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from core.clock import FrozenClock
from core.ratelimit import Limit, SharedLimiter
from storage import migrate
from storage.db import create_engine, create_sessionmaker
from storage.ratelimit_models import RateCounter
from storage.repositories import ratelimit as repo


def limiter(sessionmaker, clock, limit: int = 3, window: float = 60.0) -> SharedLimiter:
    return SharedLimiter("test", Limit(limit, window), clock, sessionmaker)


async def test_a_window_admits_the_limit_then_says_how_long_to_wait(sessionmaker) -> None:
    clock = FrozenClock()
    lim = limiter(sessionmaker, clock)
    assert [await lim.hit("1.2.3.4") for _ in range(3)] == [None, None, None]
    assert await lim.hit("1.2.3.4") == pytest.approx(60)
    assert await lim.hit("5.6.7.8") is None  # every key has its own window
    clock.advance(40)
    assert await lim.hit("1.2.3.4") == pytest.approx(20)
    # Refused hits do not stretch the window: it ends 60 s after its first hit.
    clock.advance(20)
    assert [await lim.hit("1.2.3.4") for _ in range(3)] == [None, None, None]
    assert await lim.hit("1.2.3.4") == pytest.approx(60)


async def test_blocked_in_peeks_without_counting(sessionmaker) -> None:
    clock = FrozenClock()
    lim = limiter(sessionmaker, clock, limit=2, window=600)
    async with sessionmaker() as s, s.begin():
        assert await lim.blocked_in(s, "u") is None
        assert await lim.hit_in(s, "u") is None
        assert await lim.blocked_in(s, "u") is None
        assert await lim.blocked_in(s, "u") is None  # peeking counts nothing
        assert await lim.hit_in(s, "u") is None
        assert await lim.blocked_in(s, "u") == pytest.approx(600)
    clock.advance(599)
    async with sessionmaker() as s:
        assert await lim.blocked_in(s, "u") == pytest.approx(1)
    clock.advance(1)
    async with sessionmaker() as s:
        assert await lim.blocked_in(s, "u") is None


async def test_hits_in_a_rolled_back_transaction_are_not_counted(sessionmaker) -> None:
    clock = FrozenClock()
    lim = limiter(sessionmaker, clock, limit=1)
    async with sessionmaker() as s:
        await lim.hit_in(s, "k")
        await s.rollback()
    assert await lim.hit("k") is None


async def test_long_subjects_are_hashed_into_the_key(sessionmaker) -> None:
    lim = limiter(sessionmaker, FrozenClock(), limit=1)
    long = "x" * 500
    assert len(lim.key(long)) <= 200 and lim.key(long) != lim.key(long + "y")
    assert await lim.hit(long) is None
    assert await lim.hit(long) is not None
    assert await lim.hit(long + "y") is None


async def test_prune_removes_only_ended_windows(sessionmaker) -> None:
    clock = FrozenClock()
    short = SharedLimiter("short", Limit(5, 10), clock, sessionmaker)
    long = SharedLimiter("long", Limit(5, 3600), clock, sessionmaker)
    await short.hit("a")
    await long.hit("a")
    clock.advance(10)
    now_ms = int(clock.now().timestamp() * 1000)
    async with sessionmaker() as s, s.begin():
        assert await repo.prune_counters(s, now_ms=now_ms) == 1
    async with sessionmaker() as s:
        assert (await s.execute(select(RateCounter.key))).scalars().all() == ["long:a"]
    assert await short.hit("a") is None  # as if the window had never been


async def test_two_engines_hitting_at_once_never_admit_more_than_the_limit(db_url) -> None:
    """Two engines (as two processes have) hammer one key concurrently: exactly `limit` hits
    are admitted, and every hit is counted (the upsert is atomic on both backends)."""
    first = create_engine(db_url)
    await migrate.upgrade(first)
    second = create_engine(db_url)
    clock = FrozenClock()
    limit, per_engine = 25, 40
    try:
        limiters = [
            limiter(create_sessionmaker(engine), clock, limit=limit) for engine in (first, second)
        ]
        results = await asyncio.gather(
            *(lim.hit("10.0.0.1") for lim in limiters for _ in range(per_engine))
        )
        assert sum(r is None for r in results) == limit
        assert all(r == pytest.approx(60) for r in results if r is not None)
        async with create_sessionmaker(first)() as s:
            row = await s.get(RateCounter, "test:10.0.0.1")
        assert row is not None and row.hits == 2 * per_engine
    finally:
        await first.dispose()
        await second.dispose()
