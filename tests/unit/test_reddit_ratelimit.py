"""RateBudget pacing, computed on a virtual clock: the waits are asserted, not wall time."""

from __future__ import annotations

import asyncio

import pytest

from core.reddit import RateBudget, RateBudgetRegistry, parse_rate_headers
from tests.fakes.reddit import VirtualTime


def headers(used: int, remaining: str, reset: int) -> dict[str, str]:
    return {
        "X-Ratelimit-Used": str(used),
        "X-Ratelimit-Remaining": remaining,
        "X-Ratelimit-Reset": str(reset),
    }


@pytest.fixture
def vt() -> VirtualTime:
    return VirtualTime()


def budget(vt: VirtualTime, **kwargs: object) -> RateBudget:
    return RateBudget("app", clock=vt, sleep=vt.sleep, **kwargs)  # type: ignore[arg-type]


def test_parse_rate_headers_reads_float_remaining() -> None:
    parsed = parse_rate_headers(
        {"x-ratelimit-remaining": "599.0", "x-ratelimit-reset": "82", "x-ratelimit-used": "1"}
    )
    assert parsed is not None
    assert parsed.remaining == 599.0
    assert parsed.reset_seconds == 82
    assert parsed.used == 1
    assert parse_rate_headers({"content-type": "application/json"}) is None
    assert parse_rate_headers({"x-ratelimit-remaining": "n/a", "x-ratelimit-reset": "1"}) is None


async def test_no_header_info_means_no_wait(vt: VirtualTime) -> None:
    b = budget(vt)
    for _ in range(5):
        (await b.acquire()).release()
    assert vt.sleeps == []


async def test_pacing_spreads_remaining_budget_over_reset(vt: VirtualTime) -> None:
    b = budget(vt)
    (await b.acquire()).release()
    b.update(headers(1, "599.0", 82))
    assert b.remaining == 599.0
    assert b.used == 1
    assert b.seconds_to_reset == pytest.approx(82)

    (await b.acquire()).release()
    assert vt.sleeps == [pytest.approx(82 / 599)]

    b.update(headers(2, "4", 20))
    (await b.acquire()).release()
    assert vt.sleeps[-1] == pytest.approx(5.0)


async def test_answers_without_headers_change_nothing(vt: VirtualTime) -> None:
    b = budget(vt)
    b.update(headers(10, "10.0", 30))
    b.update({"content-type": "text/html"})  # a CDN-cached answer
    assert (b.used, b.remaining) == (10, 10.0)
    (await b.acquire()).release()
    assert vt.sleeps == [pytest.approx(3.0)]


async def test_exhausted_budget_waits_for_reset(vt: VirtualTime) -> None:
    b = budget(vt)
    b.update(headers(600, "0.0", 42))
    (await b.acquire()).release()
    assert vt.sleeps == [pytest.approx(42)]


async def test_hard_ceiling_counts_from_the_answer(vt: VirtualTime) -> None:
    b = budget(vt, max_requests=3, per_seconds=10)
    for _ in range(3):
        ticket = await b.acquire()
        vt.advance(1)  # each answer takes a second
        ticket.release()
    # the first answer came back at t=1, so the 4th request may go at t=11 (now t=3)
    (await b.acquire()).release()
    assert vt.sleeps == [pytest.approx(8)]
    assert b.in_window == 3


async def test_hard_ceiling_waits_for_requests_in_flight(vt: VirtualTime) -> None:
    b = budget(vt, max_requests=2, per_seconds=10)
    first = await b.acquire()
    second = await b.acquire()
    third = asyncio.create_task(b.acquire())
    await asyncio.sleep(0)
    assert not third.done()  # nothing came back yet, so no slot can be dated

    vt.advance(2)
    first.release()
    ticket = await third
    ticket.release()
    second.release()
    assert vt.sleeps == [pytest.approx(10)]  # 10 s after the first answer


async def test_pause_holds_everyone(vt: VirtualTime) -> None:
    b = budget(vt)
    b.pause(7)
    (await b.acquire()).release()
    assert vt.sleeps == [pytest.approx(7)]
    assert b.throttled == 1
    assert b.total_wait_seconds == pytest.approx(7)


async def test_concurrent_acquirers_are_spread(vt: VirtualTime) -> None:
    b = budget(vt)
    b.update(headers(1, "10.0", 10))  # one request per second

    async def one() -> float:
        (await b.acquire()).release()
        return vt.timestamp()

    start = vt.timestamp()
    times = sorted(await asyncio.gather(*(one() for _ in range(4))))
    gaps = [b_ - a for a, b_ in zip([start, *times], times, strict=False)]
    assert gaps == [pytest.approx(1.0, abs=1e-5)] * 4


def test_registry_shares_one_budget_per_client_id(vt: VirtualTime) -> None:
    registry = RateBudgetRegistry(clock=vt, sleep=vt.sleep)
    assert registry.get("app1") is registry.get("app1")
    assert registry.get("app1") is not registry.get("app2")
    assert {b.client_id for b in registry.all()} == {"app1", "app2"}
    assert registry.get("app1").max_requests == 100
    assert registry.get("app1").per_seconds == 60
