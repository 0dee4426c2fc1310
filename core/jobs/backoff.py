"""Retry delays: exponential, capped, with jitter so retries of many jobs spread out."""

from __future__ import annotations

import random


def retry_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before retry number `attempt` (1 = first retry): base·2^(n-1) capped, ±25 %."""
    rng = rng or random
    raw = min(cap, base * (2 ** max(0, attempt - 1)))
    return min(cap, raw * rng.uniform(0.75, 1.25))
