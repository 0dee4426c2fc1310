"""Retry delays: exponential growth, a hard cap, and jitter that stays inside ±25 %."""

from __future__ import annotations

import random

import pytest

from core.jobs.backoff import retry_delay


class FixedRandom(random.Random):
    """`uniform` always returns one end of the range (or its middle)."""

    def __init__(self, where: str) -> None:
        super().__init__(0)
        self.where = where

    def uniform(self, a: float, b: float) -> float:
        return {"low": a, "high": b, "mid": (a + b) / 2}[self.where]


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 10.0), (1, 10.0), (2, 20.0), (3, 40.0), (4, 80.0), (7, 640.0), (8, 1000.0), (30, 1000.0)],
)
def test_doubles_per_attempt_up_to_the_cap(attempt: int, expected: float) -> None:
    assert retry_delay(attempt, base=10, cap=1000, rng=FixedRandom("mid")) == expected


def test_jitter_bounds() -> None:
    assert retry_delay(3, base=10, cap=1000, rng=FixedRandom("low")) == 30.0
    assert retry_delay(3, base=10, cap=1000, rng=FixedRandom("high")) == 50.0


def test_jitter_never_exceeds_the_cap() -> None:
    # 1.25 × a capped delay would overshoot; the cap holds after jitter too.
    assert retry_delay(20, base=10, cap=1000, rng=FixedRandom("high")) == 1000.0
    assert retry_delay(20, base=10, cap=1000, rng=FixedRandom("low")) == 750.0


def test_jitter_spreads_retries_of_many_jobs() -> None:
    rng = random.Random(42)
    delays = [retry_delay(2, base=10, cap=1000, rng=rng) for _ in range(2000)]
    assert all(15.0 <= d <= 25.0 for d in delays)
    # Not all the same: a thundering herd of retries would land in one instant.
    assert len({round(d, 3) for d in delays}) > 1500
    assert min(delays) < 15.5 and max(delays) > 24.5
    mean = sum(delays) / len(delays)
    assert 19.5 < mean < 20.5


def test_default_rng_is_used_when_none_given() -> None:
    for _ in range(200):
        assert 7.5 <= retry_delay(1, base=10, cap=1000) <= 12.5
