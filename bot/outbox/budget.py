"""The bot's send budget, shared through the database by every process (DESIGN.md §10).

Telegram's limits belong to the bot token, not to a process. The global pace is one row
(`outbox_budget`, key `bot:<bot id>`) holding the next free sending moment; a sender takes a
few consecutive slots at a time (`interval` apart, about a quarter second of sends) in one
short write, and sends each at its time. So two processes together never start more than one
send per interval, and one alone gets every slot. A granted slot is a short lease: used late
by more than `tolerance` (the event loop was busy), it is dropped rather than sent in a burst
with the next process's slots; the slots of a process that died are never used, and the pace
moves on without them. The per-chat pace is a row per chat (`outbox_chat_pace`), written with
each "sent" mark and read by the claim, so a chat's next message waits one gap whichever
process sends it. A 429 across chats (Telegram's global flood wait) moves the shared pace past
the wait, for every process.

Times are wall-clock milliseconds (`time.time()`): all processes' clocks must agree to well
within the pacing margin (NTP does; the tests and the bench run on one host).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque

from core.settings import OutboxSettings
from storage.repositories import outbox as repo
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

# how far ahead a sender keeps slots granted while it has rows to send: long enough that a
# grant waiting for the database (SQLite's write lock in a claim storm) never lets it run dry
LOOKAHEAD_SECONDS = 0.5
GRANT_SECONDS = 0.25  # slots taken per grant, as seconds of sending at the full rate


def wall_ms() -> int:
    return int(time.time() * 1000)


class SharedBudget:
    """One process's view of the shared global pace: slots granted to it, not yet used."""

    def __init__(self, uow: UnitOfWork, key: str, settings: OutboxSettings) -> None:
        self.uow = uow
        self.key = key
        # one send per interval; the margin keeps Telegram's sliding second from ever
        # counting one more than the limit when arrivals jitter
        period = 1.0 + settings.pacing_margin_seconds
        self.interval_ms = 1000.0 * period / settings.global_per_second
        self.tolerance_ms = max(1.0, 500.0 * settings.pacing_margin_seconds)
        self.grant_size = max(1, math.ceil(settings.global_per_second * GRANT_SECONDS))
        self._slots: deque[float] = deque()  # granted slot times (ms since the epoch)
        self._granting: asyncio.Task[None] | None = None
        self.granted = 0
        self.dropped = 0  # slots passed unused (late or given up)

    def due_in(self, wanted: int) -> float | None:
        """Seconds until this process's next slot (<= 0: now), or None while none is granted
        (a grant is then under way). `wanted`: rows ready to send, to size the next grant."""
        now = wall_ms()
        while self._slots and self._slots[0] < now - self.tolerance_ms:
            self._slots.popleft()
            self.dropped += 1
        horizon = now + LOOKAHEAD_SECONDS * 1000
        last = self._slots[-1] if self._slots else now
        if wanted > len(self._slots) and last < horizon and self._granting is None:
            count = min(self.grant_size, wanted - len(self._slots))
            self._granting = asyncio.create_task(self._grant(count))
        if not self._slots:
            return None
        return (self._slots[0] - now) / 1000.0

    async def wait_granted(self, within: float) -> None:
        if self._granting is not None:
            await asyncio.wait([self._granting], timeout=within)

    def use(self) -> None:
        self._slots.popleft()

    async def pause(self, seconds: float) -> None:
        """Telegram asked the whole bot to wait: no process sends before then."""
        until = wall_ms() + math.ceil(seconds * 1000)
        self.dropped += len(self._slots)
        self._slots.clear()
        async with self.uow.write() as session:
            await repo.pause_slots(session, self.key, until_ms=until)

    async def close(self) -> None:
        if self._granting is not None:
            self._granting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._granting
        self._slots.clear()

    async def _grant(self, count: int) -> None:
        try:
            async with self.uow.write() as session:
                first = await repo.grant_slots(
                    session,
                    self.key,
                    now_ms=wall_ms(),
                    count=count,
                    interval_ms=self.interval_ms,
                )
            self._slots.extend(first + i * self.interval_ms for i in range(count))
            self.granted += count
        except Exception:
            log.exception("outbox: taking send slots failed; retrying shortly")
            await asyncio.sleep(0.5)
        finally:
            self._granting = None
