"""The local pacer of one sender: its sliding window, per-chat spacing and 429 holds."""

from __future__ import annotations

from collections import deque

from core.settings import OutboxSettings


class Pacer:
    """Sliding-window global limit, minimum spacing per chat, and 429 holds (monotonic time).

    Telegram counts a message when it arrives, somewhere between our request and its answer.
    A chat's next send waits one gap after the previous one was answered. For the global
    window, a send occupies its slot from when it starts until one period after its arrival
    could have been at the latest. That is its answer, which is always safe but costs a whole
    round trip per slot: 30 slots per (1 s + RTT), 0.75x of the limit at a 300 ms RTT. When
    the recent round trips are steady, arrival is bounded tighter: the arrivals of two sends
    differ from their starts by at most the spread of the round trips (slowest - fastest), so
    a slot ends one period after `start + spread` (or its answer, if that came first). With
    too few samples, or for a minute after a 429, the answer is used again.
    """

    RTT_SAMPLES = 64
    MIN_SAMPLES = 8
    CAUTIOUS_AFTER_429 = 60.0

    def __init__(self, settings: OutboxSettings) -> None:
        self.s = settings
        self.window: list[list[float]] = []  # [counted until - period, started]; inf in flight
        self.chat_next: dict[int, float] = {}
        self.paused_until = 0.0
        self.rtts: deque[float] = deque(maxlen=self.RTT_SAMPLES)
        self.cautious_until = 0.0
        self.recent_429: deque[tuple[float, int]] = deque()

    @property
    def period(self) -> float:
        return 1.0 + self.s.pacing_margin_seconds

    @property
    def gap(self) -> float:
        return 1.0 / self.s.per_chat_per_second + self.s.pacing_margin_seconds

    def chat_ready_at(self, chat_id: int) -> float:
        return self.chat_next.get(chat_id, 0.0)

    def global_ready_at(self, now: float) -> float:
        self.window = [slot for slot in self.window if slot[0] + self.period > now]
        ready = self.paused_until
        excess = len(self.window) - self.s.global_per_second
        if excess >= 0:
            # the window is full until enough slots end; never "ready now" while it is full
            # (at `now == end + period` rounding kept the slot and admitted sends unbounded)
            end = sorted(slot[0] for slot in self.window)[excess]
            ready = max(ready, end + self.period if end != float("inf") else now + 0.01)
            ready = max(ready, now + 1e-4)
        return ready

    def note_send(self, chat_id: int, now: float) -> list[float]:
        """A send starts; returns its slot, to hand to `note_done` when it is answered."""
        slot = [float("inf"), now]
        self.window.append(slot)
        self.chat_next[chat_id] = max(self.chat_next.get(chat_id, 0.0), now + self.gap)
        if len(self.chat_next) > 50_000:  # forget chats whose spacing has long passed
            self.chat_next = {c: t for c, t in self.chat_next.items() if t > now}
        return slot

    def note_done(self, chat_id: int, slot: list[float], now: float) -> None:
        started = slot[1]
        self.rtts.append(now - started)
        latest_arrival = now
        if len(self.rtts) >= self.MIN_SAMPLES and now >= self.cautious_until:
            latest_arrival = min(now, started + max(self.rtts) - min(self.rtts))
        slot[0] = latest_arrival
        self.chat_next[chat_id] = max(self.chat_next.get(chat_id, 0.0), now + self.gap)

    def note_429(self, chat_id: int, retry_after: float, now: float) -> bool:
        """Hold the chat; pause everything when several chats are throttled. True if paused."""
        until = now + retry_after
        self.cautious_until = max(self.cautious_until, until + self.CAUTIOUS_AFTER_429)
        self.chat_next[chat_id] = max(self.chat_next.get(chat_id, 0.0), until)
        self.recent_429.append((now, chat_id))
        while self.recent_429 and self.recent_429[0][0] < now - 1.0:
            self.recent_429.popleft()
        chats = {c for _, c in self.recent_429}
        if len(chats) >= self.s.global_pause_after_chats:
            self.paused_until = max(self.paused_until, until)
            return True
        return False
