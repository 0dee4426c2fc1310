"""Request pacing shared by every account on one OAuth client id.

Reddit's limit belongs to the OAuth client id, not to the account, so every `RedditClient`
built for the same client id must draw from one `RateBudget` — get it from a
`RateBudgetRegistry`. Two rules decide when a request may go:

* **Header pacing** (as prawcore does): after an answer carrying `X-Ratelimit-Remaining` and
  `X-Ratelimit-Reset`, the next request waits `reset / remaining` seconds, which spreads what
  is left of the window evenly over the time until it resets. No headers seen yet → no wait;
  answers without the headers (CDN-cached) change nothing.
* **Hard ceiling**: at most `max_requests` per sliding `per_seconds` (100 per 60 s by default).
  A request occupies its slot from when it is sent until `per_seconds` after its answer came
  back: the server saw it somewhere in between, so counting from the answer can never
  undercount, even with many requests in flight.

A 429 pauses the whole budget for its `Retry-After`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from core.clock import Clock, SystemClock

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RateHeaders:
    used: int | None
    remaining: float
    reset_seconds: float


def parse_rate_headers(headers: Mapping[str, str]) -> RateHeaders | None:
    """Read `X-Ratelimit-*` (case-insensitive; Remaining may be "599.0"); None when absent."""
    lowered = {key.lower(): value for key, value in headers.items()}
    remaining = lowered.get("x-ratelimit-remaining")
    reset = lowered.get("x-ratelimit-reset")
    if remaining is None or reset is None:
        return None
    try:
        remaining_value = float(remaining)
        reset_value = float(reset)
    except ValueError:
        return None
    used_raw = lowered.get("x-ratelimit-used")
    try:
        used = int(float(used_raw)) if used_raw is not None else None
    except ValueError:
        used = None
    return RateHeaders(used=used, remaining=remaining_value, reset_seconds=max(0.0, reset_value))


class Ticket:
    """One admitted request; `release()` it when its answer (or failure) arrives."""

    __slots__ = ("_budget", "_released")

    def __init__(self, budget: RateBudget) -> None:
        self._budget = budget
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._budget._release()


class RateBudget:
    """The request budget of one OAuth client id. Read its attributes for metrics."""

    def __init__(
        self,
        client_id: str,
        *,
        max_requests: int = 100,
        per_seconds: float = 60.0,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if max_requests < 1 or per_seconds <= 0:
            raise ValueError("the ceiling needs max_requests >= 1 and per_seconds > 0")
        self.client_id = client_id
        self.max_requests = max_requests
        self.per_seconds = per_seconds
        self._clock = clock or SystemClock()
        self._sleep = sleep or asyncio.sleep
        # Last values Reddit reported.
        self.used: int | None = None
        self.remaining: float | None = None
        self.reset_at: float | None = None
        # Counters for metrics.
        self.total_requests = 0
        self.total_wait_seconds = 0.0
        self.throttled = 0
        self._interval: float | None = None
        self._next_slot: float | None = None
        self._paused_until: float | None = None
        self._done: deque[float] = deque()
        self._in_flight = 0
        self._wakeup: asyncio.Event | None = None

    # -- metrics -------------------------------------------------------------------------

    @property
    def seconds_to_reset(self) -> float | None:
        if self.reset_at is None:
            return None
        return max(0.0, self.reset_at - self._now())

    @property
    def in_window(self) -> int:
        """Requests that count against the hard ceiling right now (including in flight)."""
        self._purge(self._now())
        return len(self._done) + self._in_flight

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def snapshot(self) -> dict[str, float | int | str | None]:
        return {
            "client_id": self.client_id,
            "used": self.used,
            "remaining": self.remaining,
            "seconds_to_reset": self.seconds_to_reset,
            "in_window": self.in_window,
            "total_requests": self.total_requests,
            "total_wait_seconds": round(self.total_wait_seconds, 3),
            "throttled": self.throttled,
        }

    # -- admission -----------------------------------------------------------------------

    def delay(self) -> float | None:
        """Seconds until a request may go, or None if one must first come back."""
        now = self._now()
        self._purge(now)
        start = now
        if self._paused_until is not None:
            start = max(start, self._paused_until)
        if self._next_slot is not None:
            start = max(start, self._next_slot)
        occupied = len(self._done) + self._in_flight
        if occupied >= self.max_requests:
            must_expire = occupied - self.max_requests + 1
            if must_expire > len(self._done):
                return None
            start = max(start, self._done[must_expire - 1] + self.per_seconds)
        return start - now

    async def acquire(self) -> Ticket:
        """Wait until the next request may be sent and admit it."""
        while True:
            wait = self.delay()
            if wait is None:
                await self._wait_for_release()
                continue
            if wait <= 0:
                return self._admit()
            self.total_wait_seconds += wait
            await self._sleep(wait)

    def _admit(self) -> Ticket:
        now = self._now()
        self._in_flight += 1
        self.total_requests += 1
        if self._interval is not None:
            self._next_slot = max(self._next_slot or now, now + self._interval)
        return Ticket(self)

    def _release(self) -> None:
        self._in_flight -= 1
        self._done.append(self._now())
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    async def _wait_for_release(self) -> None:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        await self._wakeup.wait()

    # -- feedback from answers -------------------------------------------------------------

    def update(self, headers: Mapping[str, str]) -> None:
        """Take in an answer's rate-limit headers; answers without them change nothing."""
        parsed = parse_rate_headers(headers)
        if parsed is None:
            return
        now = self._now()
        self.used = parsed.used
        self.remaining = parsed.remaining
        self.reset_at = now + parsed.reset_seconds
        if parsed.remaining <= 0:
            self._interval = None
            self._next_slot = max(self._next_slot or now, self.reset_at)
            return
        self._interval = parsed.reset_seconds / parsed.remaining
        self._next_slot = max(self._next_slot or now, now + self._interval)

    def pause(self, seconds: float) -> None:
        """Hold every request on this client id for `seconds` (HTTP 429 `Retry-After`)."""
        self.throttled += 1
        until = self._now() + max(0.0, seconds)
        self._paused_until = max(self._paused_until or until, until)

    # -- helpers -------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _purge(self, now: float) -> None:
        horizon = now - self.per_seconds
        while self._done and self._done[0] <= horizon:
            self._done.popleft()


class RateBudgetRegistry:
    """One `RateBudget` per OAuth client id, so accounts on one app share their budget."""

    def __init__(
        self,
        *,
        max_requests: int = 100,
        per_seconds: float = 60.0,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self.max_requests = max_requests
        self.per_seconds = per_seconds
        self._clock = clock
        self._sleep = sleep
        self._budgets: dict[str, RateBudget] = {}

    def get(self, client_id: str) -> RateBudget:
        budget = self._budgets.get(client_id)
        if budget is None:
            budget = RateBudget(
                client_id,
                max_requests=self.max_requests,
                per_seconds=self.per_seconds,
                clock=self._clock,
                sleep=self._sleep,
            )
            self._budgets[client_id] = budget
        return budget

    def all(self) -> list[RateBudget]:
        return list(self._budgets.values())
