"""Rate limits counted in the database, so every process behind a balancer shares them.

A `SharedLimiter` allows at most `limit` hits per `window_seconds` for each key. Each key has
one fixed window that starts at its first hit after the previous window ended; counting a
hit is one upsert (`INSERT … ON CONFLICT DO UPDATE … RETURNING`) on SQLite and PostgreSQL,
so two processes hitting the same key at once are counted exactly. Like any fixed window it
can let up to twice the limit through around the moment one window ends and the next starts.

Ended windows are deleted by the hourly `maintenance.prune` job (`prune_counters`); a row
whose window has ended decides exactly like a missing one, so pruning changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import Clock
from storage.repositories import ratelimit as repo

KEY_LIMIT = 200


def now_ms(clock: Clock) -> int:
    return int(clock.now().timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Limit:
    limit: int
    window_seconds: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window_seconds <= 0:
            raise ValueError("a limit needs limit >= 1 and window_seconds > 0")


class SharedLimiter:
    """At most `limit.limit` hits per `limit.window_seconds` for each subject of `scope`.

    `hit*` count and say whether the hit is allowed (None) or how many seconds remain until
    one would be — the check and the count are one statement, so concurrent hits never get
    past the limit together; `blocked_in` asks the same question without counting (a cheap
    early refusal, never the decision that lets an attempt through).
    """

    def __init__(
        self,
        scope: str,
        limit: Limit,
        clock: Clock,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self.scope = scope
        self.limit = limit
        self.clock = clock
        self.sessionmaker = sessionmaker

    def key(self, subject: str) -> str:
        key = f"{self.scope}:{subject}"
        if len(key) > KEY_LIMIT:
            key = f"{self.scope}:sha256:{hashlib.sha256(subject.encode()).hexdigest()}"
        return key

    async def hit(self, subject: str) -> float | None:
        """Count a hit in a transaction of its own."""
        if self.sessionmaker is None:
            raise RuntimeError("this limiter has no sessionmaker; use hit_in(session, …)")
        async with self.sessionmaker() as session, session.begin():
            return await self.hit_in(session, subject)

    async def hit_in(self, session: AsyncSession, subject: str) -> float | None:
        """Count a hit in the caller's transaction (committed with it)."""
        now = now_ms(self.clock)
        hits, resets_at = await repo.hit(
            session,
            self.key(subject),
            now_ms=now,
            window_ms=max(1, round(self.limit.window_seconds * 1000)),
        )
        if hits <= self.limit.limit:
            return None
        return max(0.001, (resets_at - now) / 1000)

    async def refund_in(self, session: AsyncSession, subject: str) -> None:
        """Give back a hit counted by `hit_in` (in the caller's transaction): a reservation
        for an attempt that turned out not to be one the limit is about."""
        await repo.unhit(session, self.key(subject), now_ms=now_ms(self.clock))

    async def blocked_in(self, session: AsyncSession, subject: str) -> float | None:
        """Seconds until `subject` may hit again if it has used up its window; else None."""
        now = now_ms(self.clock)
        found = await repo.peek(session, self.key(subject), now_ms=now)
        if found is None or found[0] < self.limit.limit:
            return None
        return max(0.001, (found[1] - now) / 1000)
