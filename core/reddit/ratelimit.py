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

**Across processes** (several `serve` processes on one database): give the budget a
`SharedBudget` (`core.reddit_ops.budget.DatabaseBudget`) and every admission must also be
granted by it. The shared budget holds the same three things for all processes — the
requests in the sliding window (as `max_requests` slots, each busy from admission until
`per_seconds` after its answer), the header pacing and the 429 pause — so the processes
together stay under the ceiling. This process's own rules still apply first (they are never
looser than the shared ones), and what it learns from answers is passed on in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from core.clock import Clock, SystemClock

log = logging.getLogger(__name__)

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


@dataclass(frozen=True, slots=True)
class SharedAdmission:
    """A shared budget's answer: a slot (admitted), or how long to wait before asking again.

    `used`/`remaining`/`reset_at` are what Reddit last reported to any process (for metrics).
    """

    slot: int | None
    token: int = 0
    wait: float = 0.0
    used: int | None = None
    remaining: float | None = None
    reset_at: float | None = None

    @property
    def granted(self) -> bool:
        return self.slot is not None


class SharedBudget(Protocol):
    """The part of one OAuth client id's budget that every process shares (times are epoch
    seconds from the budget's clock)."""

    async def admit(self, now: float) -> SharedAdmission: ...

    async def release(self, admission: SharedAdmission, now: float) -> None: ...

    async def report(self, now: float, headers: RateHeaders) -> None: ...

    async def pause(self, until: float) -> None: ...


class Ticket:
    """One admitted request; `release()` it when its answer (or failure) arrives."""

    __slots__ = ("_admission", "_budget", "_released")

    def __init__(self, budget: RateBudget, admission: SharedAdmission | None = None) -> None:
        self._budget = budget
        self._admission = admission
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._budget._release(self._admission)


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
        shared: SharedBudget | None = None,
        shared_poll_seconds: float = 1.0,
    ) -> None:
        if max_requests < 1 or per_seconds <= 0:
            raise ValueError("the ceiling needs max_requests >= 1 and per_seconds > 0")
        self.client_id = client_id
        self.shared = shared
        # Releases by other processes wake nobody here: ask the shared budget again this often.
        self.shared_poll_seconds = shared_poll_seconds
        self._background: set[asyncio.Task[None]] = set()
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
        """Wait until the next request may be sent and admit it (with a shared budget: once
        this process's rules and the shared ones both let it go)."""
        while True:
            wait = self.delay()
            if wait is None:
                await self._wait_for_release()
                continue
            if wait <= 0:
                if self.shared is None:
                    return self._admit()
                admission = await self.shared.admit(self._now())
                if admission.granted:
                    return self._admit(admission)
                wait = max(0.001, min(admission.wait, self.shared_poll_seconds))
            self.total_wait_seconds += wait
            await self._sleep(wait)

    def _admit(self, admission: SharedAdmission | None = None) -> Ticket:
        now = self._now()
        self._in_flight += 1
        self.total_requests += 1
        if self._interval is not None:
            self._next_slot = max(self._next_slot or now, now + self._interval)
        if admission is not None and admission.remaining is not None:
            # what Reddit last told any process: the freshest figures for metrics
            self.used = admission.used
            self.remaining = admission.remaining
            self.reset_at = admission.reset_at
        return Ticket(self, admission)

    def _release(self, admission: SharedAdmission | None = None) -> None:
        self._in_flight -= 1
        now = self._now()
        self._done.append(now)
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None
        if self.shared is not None and admission is not None:
            self._in_background(self.shared.release(admission, now), "release a slot")

    def _in_background(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Tell the shared budget without making the caller wait (release/update/pause are
        synchronous); a failure costs at most a slot held until its in-flight lease ends."""

        async def run() -> None:
            try:
                await work
            except Exception:
                log.warning("reddit budget %s: could not %s", self.client_id, what, exc_info=True)

        task = asyncio.ensure_future(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def flush(self) -> None:
        """Wait for what is still being told to the shared budget (at shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

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
        if self.shared is not None:
            self._in_background(self.shared.report(now, parsed), "share the rate headers")
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
        if self.shared is not None:
            self._in_background(self.shared.pause(until), "share the pause")

    # -- helpers -------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _purge(self, now: float) -> None:
        horizon = now - self.per_seconds
        while self._done and self._done[0] <= horizon:
            self._done.popleft()


SharedFactory = Callable[[str, int, float], SharedBudget]


class RateBudgetRegistry:
    """One `RateBudget` per OAuth client id, so accounts on one app share their budget.

    With `shared` (`shared(client_id, max_requests, per_seconds)` → a `SharedBudget`), each
    budget is also shared with every other process that builds its budgets the same way.
    """

    def __init__(
        self,
        *,
        max_requests: int = 100,
        per_seconds: float = 60.0,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        shared: SharedFactory | None = None,
    ) -> None:
        self.max_requests = max_requests
        self.per_seconds = per_seconds
        self._clock = clock
        self._sleep = sleep
        self._shared = shared
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
                shared=(
                    self._shared(client_id, self.max_requests, self.per_seconds)
                    if self._shared is not None
                    else None
                ),
            )
            self._budgets[client_id] = budget
        return budget

    def all(self) -> list[RateBudget]:
        return list(self._budgets.values())

    async def flush(self) -> None:
        for budget in self.all():
            await budget.flush()
