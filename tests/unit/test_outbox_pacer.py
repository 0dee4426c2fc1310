"""The outbox's global pacing: never more than the limit in any window at the server, and
no whole round trip lost per slot when round trips are steady."""

from __future__ import annotations

import heapq
import random

from bot.outbox import OutboxSettings, Pacer

LIMIT = 30


def simulate(rtt: callable, seconds: float = 20.0, cautious_from: float | None = None):
    """Sends as fast as the pacer allows to distinct chats (no per-chat limit in play), 16 in
    flight at most; each arrives at the server half-way through its round trip. Returns the
    arrival times and the send count."""
    # the margin these figures were worked out with (1.03 s per window below)
    pacer = Pacer(
        OutboxSettings(_env_file=None, global_per_second=LIMIT, pacing_margin_seconds=0.03)
    )
    now, chat, arrivals = 0.0, 0, []
    answers: list[tuple[float, int, list[float]]] = []  # (answered at, chat, slot)
    while now < seconds:
        while answers and answers[0][0] <= now:
            at, c, slot = heapq.heappop(answers)
            pacer.note_done(c, slot, at)
        if cautious_from is not None and now >= cautious_from:
            pacer.note_429(-1, 0.0, now)
            cautious_from = None
        ready = pacer.global_ready_at(now)
        if len(answers) < 16 and ready <= now:
            chat += 1
            slot = pacer.note_send(chat, now)
            trip = rtt()
            arrivals.append(now + trip / 2)
            heapq.heappush(answers, (now + trip, chat, slot))
            continue
        step = min([ready] + ([answers[0][0]] if answers else [])) if ready > now else now
        now = max(step, now + 1e-4)
    return sorted(arrivals)


def most_in_one_second(arrivals: list[float]) -> int:
    best, j = 0, 0
    for i, t in enumerate(arrivals):
        while arrivals[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def rate(arrivals: list[float]) -> float:
    tail = [t for t in arrivals if t >= 5.0]  # past the start-up
    return (len(tail) - 1) / (tail[-1] - tail[0])


def test_steady_round_trips_do_not_cost_a_round_trip_per_slot() -> None:
    arrivals = simulate(lambda: 0.3)
    assert most_in_one_second(arrivals) <= LIMIT
    # answer-based slots alone would give 30 / (1.03 + 0.3) = 22.6/s
    assert rate(arrivals) >= 0.95 * LIMIT / 1.03


def test_jittery_round_trips_never_exceed_the_limit_at_the_server() -> None:
    rng = random.Random(7)
    for low, high in ((0.01, 0.05), (0.05, 0.6), (0.2, 1.5)):
        arrivals = simulate(lambda low=low, high=high: rng.uniform(low, high))
        assert most_in_one_second(arrivals) <= LIMIT, (low, high)


def test_after_a_429_slots_last_until_the_answer_again() -> None:
    steady = simulate(lambda: 0.3)
    cautious = simulate(lambda: 0.3, cautious_from=0.0)
    assert rate(cautious) < 0.8 * rate(steady)
    assert rate(cautious) >= 0.95 * LIMIT / (1.03 + 0.3)
