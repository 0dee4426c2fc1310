"""A sliding-window request limiter per key (an HTTP client address), in process memory.

One process only: with several web processes behind a balancer each keeps its own count,
so the effective limit is multiplied. A shared limiter (Redis, the database) would be the
next step there.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """At most `limit` hits per `window_seconds` for each key.

    Memory is bounded: at most `max_keys` keys are tracked, the least recently seen are
    forgotten first (a forgotten key starts afresh, which errs on the side of letting in).
    """

    def __init__(
        self,
        limit: int,
        window_seconds: float,
        *,
        max_keys: int = 50_000,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("limit must be >= 1 and window_seconds > 0")
        self.limit = limit
        self.window = float(window_seconds)
        self.max_keys = max_keys
        self._now = now
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def hit(self, key: str) -> float | None:
        """Count a request. None when allowed; otherwise seconds until one would be."""
        now = self._now()
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
            self._evict()
        else:
            self._hits.move_to_end(key)
        horizon = now - self.window
        while hits and hits[0] <= horizon:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(0.001, hits[0] + self.window - now)
        hits.append(now)
        return None

    def _evict(self) -> None:
        while len(self._hits) > self.max_keys:
            self._hits.popitem(last=False)

    def __len__(self) -> int:
        return len(self._hits)
