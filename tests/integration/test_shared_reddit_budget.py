"""The Reddit request budget shared through the database (`core.reddit_ops.budget`), on
SQLite and PostgreSQL: two registries on two engines stand for two processes. Time is
virtual (the waits are computed, not slept), the database is real."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from core.reddit import RateBudget, RateBudgetRegistry
from core.reddit.ratelimit import parse_rate_headers
from core.reddit_ops.budget import DatabaseBudget, database_budgets
from storage import migrate
from storage.db import create_engine
from storage.uow import UnitOfWork
from tests.fakes.reddit import VirtualTime

MAX, PER = 5, 10.0


@pytest.fixture
async def two_processes(db_url) -> AsyncIterator[list[UnitOfWork]]:
    """Two engines (two connection pools) on one migrated database."""
    engines = [create_engine(db_url), create_engine(db_url)]
    await migrate.upgrade(engines[0])
    uows = [UnitOfWork(e) for e in engines]
    try:
        yield uows
    finally:
        for uow, engine in zip(uows, engines, strict=True):
            await uow.dispose()
            await engine.dispose()


def registry(vt: VirtualTime, uow: UnitOfWork | None = None) -> RateBudgetRegistry:
    return RateBudgetRegistry(
        max_requests=MAX,
        per_seconds=PER,
        clock=vt,
        sleep=vt.sleep,
        shared=database_budgets(uow) if uow is not None else None,
    )


async def hammer(budgets: list[RateBudget], vt: VirtualTime, workers: int, each: int):
    """`workers` concurrent senders per budget, `each` requests apiece, answers instant."""
    sent: list[tuple[float, int]] = []

    async def worker(index: int, budget: RateBudget) -> None:
        for _ in range(each):
            ticket = await budget.acquire()
            sent.append((vt.timestamp(), index))
            await asyncio.sleep(0)
            ticket.release()

    await asyncio.gather(*(worker(i, b) for i, b in enumerate(budgets) for _ in range(workers)))
    for budget in budgets:
        await budget.flush()
    return sorted(sent)


def most_in_any_window(times: list[float]) -> int:
    return max(sum(1 for u in times if t <= u < t + PER) for t in times)


async def test_two_processes_together_never_exceed_the_ceiling(two_processes) -> None:
    vt = VirtualTime()
    budgets = [registry(vt, sm).get("app") for sm in two_processes]
    sent = await hammer(budgets, vt, workers=3, each=8)
    times = [t for t, _ in sent]
    assert len(sent) == 48
    assert {i for _, i in sent} == {0, 1}  # both took part
    assert most_in_any_window(times) <= MAX
    assert times[-1] - times[0] >= (48 / MAX - 1) * PER
    # The control: the same load on two unshared budgets goes through twice as fast.
    vt2 = VirtualTime()
    alone = await hammer([registry(vt2).get("app"), registry(vt2).get("app")], vt2, 3, 8)
    assert most_in_any_window([t for t, _ in alone]) == 2 * MAX


async def test_header_pacing_and_a_429_pause_reach_the_other_process(two_processes) -> None:
    vt = VirtualTime()
    first, second = (registry(vt, sm).get("app") for sm in two_processes)
    (await first.acquire()).release()
    # Reddit says: 10 left, reset in 100 s → one request every 10 s, for both processes.
    first.update(
        {"X-Ratelimit-Used": "590", "X-Ratelimit-Remaining": "10", "X-Ratelimit-Reset": "100"}
    )
    await first.flush()
    start = vt.timestamp()
    (await second.acquire()).release()
    assert vt.timestamp() - start == pytest.approx(10, abs=0.01)
    # what Reddit reported to the first process shows in the second one's metrics
    assert second.snapshot()["remaining"] == 10 and second.snapshot()["used"] == 590

    second.pause(60)  # a 429 seen by the second process holds the first one too
    await second.flush()
    start = vt.timestamp()
    (await first.acquire()).release()
    assert vt.timestamp() - start == pytest.approx(60, abs=0.01)
    await first.flush()


async def test_a_dead_process_slots_free_themselves_after_the_in_flight_lease(
    two_processes,
) -> None:
    vt = VirtualTime()
    dead = DatabaseBudget(two_processes[0], "app", max_requests=1, per_seconds=PER)
    alive = DatabaseBudget(
        two_processes[1], "app", max_requests=1, per_seconds=PER, in_flight_seconds=300
    )
    now = vt.timestamp()
    taken = await dead.admit(now)
    assert taken.granted  # ... and never released: the process died mid-request
    refused = await alive.admit(now + 299)
    assert not refused.granted and refused.wait == pytest.approx(1)
    assert await alive.busy(now + 299) == 1
    granted = await alive.admit(now + 300)
    assert granted.granted
    # The dead process's late release (had it come back) leaves the new holder alone.
    await dead.release(taken, now + 301)
    assert not (await alive.admit(now + 301 + PER)).granted
    await alive.release(granted, now + 302)
    assert (await alive.admit(now + 302 + PER)).granted


async def test_remaining_zero_holds_everyone_until_the_reset(two_processes) -> None:
    vt = VirtualTime()
    budget = DatabaseBudget(two_processes[0], "app", max_requests=MAX, per_seconds=PER)
    other = DatabaseBudget(two_processes[1], "app", max_requests=MAX, per_seconds=PER)
    now = vt.timestamp()
    assert (await budget.admit(now)).granted
    headers = parse_rate_headers({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "42"})
    assert headers is not None
    await budget.report(now, headers)
    held = await other.admit(now + 1)
    assert not held.granted and held.wait == pytest.approx(41)
    assert (await other.admit(now + 42)).granted
