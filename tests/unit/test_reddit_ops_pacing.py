"""Pacing: the earliest allowed time, and why a post moved."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from core.reddit_ops.pacing import DAY, PacingRules, earliest_allowed

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def test_nothing_in_the_way_keeps_the_time() -> None:
    decision = earliest_allowed(T0, PacingRules(posts_per_day=5, min_gap=minutes(30)))
    assert (decision.scheduled_for, decision.moved, decision.reason) == (T0, False, None)
    assert decision.requested_for == T0


def test_account_gap_moves_past_the_neighbour_and_says_why() -> None:
    rules = PacingRules(min_gap=minutes(30))
    decision = earliest_allowed(
        T0, rules, account_times=[T0 - minutes(10)], username="alice", tz="Europe/Berlin"
    )
    assert decision.scheduled_for == T0 + minutes(20)
    assert decision.moved
    assert decision.reason is not None
    assert "u/alice keeps 30 min between posts" in decision.reason
    assert "13:50 CEST" in decision.reason  # the other post, in the operator's zone


def test_gap_rule_skips_a_chain_of_posts() -> None:
    rules = PacingRules(min_gap=minutes(30))
    taken = [T0, T0 + minutes(30), T0 + minutes(60)]
    decision = earliest_allowed(T0 + minutes(5), rules, account_times=taken)
    assert decision.scheduled_for == T0 + minutes(90)


def test_a_free_slot_between_posts_is_used() -> None:
    rules = PacingRules(min_gap=minutes(30))
    decision = earliest_allowed(T0, rules, account_times=[T0 - minutes(30), T0 + minutes(30)])
    assert decision.scheduled_for == T0
    assert not decision.moved


def test_subreddit_gap() -> None:
    rules = PacingRules(subreddit_gap=timedelta(hours=2))
    decision = earliest_allowed(
        T0, rules, subreddit_times=[T0 - minutes(30)], subreddit="pics", tz="UTC"
    )
    assert decision.scheduled_for == T0 + minutes(90)
    assert decision.reason is not None
    assert "the team keeps 2 hours between posts to r/pics" in decision.reason


def test_daily_limit_waits_for_the_oldest_to_age_out() -> None:
    rules = PacingRules(posts_per_day=3)
    taken = [T0 - timedelta(hours=20), T0 - timedelta(hours=10), T0 - timedelta(hours=1)]
    decision = earliest_allowed(T0, rules, account_times=taken, username="bob")
    assert decision.scheduled_for == T0 + timedelta(hours=4)  # when the 20-hour-old one is 24 h
    assert decision.reason == "u/bob makes at most 3 posts in any 24 hours"


def test_daily_limit_also_counts_posts_planned_after() -> None:
    rules = PacingRules(posts_per_day=2)
    later = [T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    decision = earliest_allowed(T0, rules, account_times=later)
    # Any time before the second planned post puts 3 into one day; the post goes after
    # the day of the first planned post ends.
    assert decision.scheduled_for >= T0 + timedelta(hours=25)
    assert _daily_ok([*later, decision.scheduled_for], 2)


def test_cooldown_from_reddit_comes_first() -> None:
    rules = PacingRules(cooldown_until=T0 + minutes(9))
    decision = earliest_allowed(T0, rules, username="carol", tz="UTC")
    assert decision.scheduled_for == T0 + minutes(9)
    assert decision.reason == "Reddit asked u/carol to wait until 2026-05-01 12:09 UTC"


def test_several_rules_are_all_named() -> None:
    rules = PacingRules(min_gap=minutes(30), subreddit_gap=minutes(60))
    decision = earliest_allowed(T0, rules, account_times=[T0], subreddit_times=[T0 + minutes(20)])
    assert decision.scheduled_for == T0 + minutes(80)
    assert decision.reason is not None
    assert "between posts (" in decision.reason and "r/the subreddit" in decision.reason


def _daily_ok(times: list[datetime], limit: int) -> bool:
    times = sorted(times)
    return all(times[i + limit] - times[i] >= DAY for i in range(len(times) - limit))


def _gaps_ok(times: list[datetime], gap: timedelta) -> bool:
    times = sorted(times)
    return all(b - a >= gap for a, b in itertools.pairwise(times))


@settings(max_examples=200, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=-2000, max_value=3000), max_size=25),
    limit=st.integers(min_value=1, max_value=6),
    gap=st.integers(min_value=0, max_value=240),
    desired=st.integers(min_value=0, max_value=1500),
)
def test_result_keeps_every_rule_and_nothing_earlier_does(
    offsets: list[int], limit: int, gap: int, desired: int
) -> None:
    # Build a schedule that already keeps the rules, by placing the posts one by one.
    rules = PacingRules(posts_per_day=limit, min_gap=minutes(gap))
    taken: list[datetime] = []
    for offset in offsets:
        taken.append(
            earliest_allowed(T0 + minutes(offset), rules, account_times=taken).scheduled_for
        )
    want = T0 + minutes(desired)
    result = earliest_allowed(want, rules, account_times=taken).scheduled_for
    assert result >= want
    assert _daily_ok([*taken, result], limit)
    assert _gaps_ok([*taken, result], minutes(gap))
    # Earliest: a sample of earlier moments (on a one-minute grid) all break a rule.
    rng = random.Random(desired)
    span = int((result - want).total_seconds() // 60)
    for step in rng.sample(range(span), min(span, 30)) if span > 0 else []:
        probe = want + minutes(step)
        assert not (_daily_ok([*taken, probe], limit) and _gaps_ok([*taken, probe], minutes(gap)))
