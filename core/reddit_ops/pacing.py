"""Pacing: the earliest time a post may go without breaking the team's posting rules.

Three rules, all configurable, plus Reddit's own word:

* per account: at most `posts_per_day` posts in any 24 hours, and `min_gap` between two posts;
* per subreddit: `subreddit_gap` between any two of the workspace's posts there;
* Reddit's `RATELIMIT` answer: nothing from the account before `cooldown_until`.

`earliest_allowed` is pure. It only ever moves a post later, and every move jumps over a
stretch of time in which the post would break the rule that moved it, so the result is the
earliest allowed moment at or after the time asked for.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.timefmt import fmt

DAY = timedelta(hours=24)
_NUDGE = timedelta(seconds=1)
_MAX_STEPS = 10_000


@dataclass(frozen=True, slots=True)
class PacingRules:
    posts_per_day: int = 0  # 0 = no daily limit
    min_gap: timedelta = timedelta(0)
    subreddit_gap: timedelta = timedelta(0)
    cooldown_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class PacingDecision:
    """Where a post lands. `reason` says in plain words why it moved (None when it did not)."""

    scheduled_for: datetime
    moved: bool
    reason: str | None
    requested_for: datetime


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes % 60 == 0 and minutes >= 60:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} min"


def earliest_allowed(
    desired: datetime,
    rules: PacingRules,
    *,
    account_times: Sequence[datetime] = (),
    subreddit_times: Sequence[datetime] = (),
    username: str = "the account",
    subreddit: str = "the subreddit",
    tz: str = "UTC",
) -> PacingDecision:
    """The earliest moment at or after `desired` that keeps every rule.

    `account_times`: when the account's other posts go (or went); `subreddit_times`: when the
    workspace's other posts to this subreddit go (or went). Times are aware UTC datetimes.
    """
    acc = sorted(account_times)
    sub = sorted(subreddit_times)
    candidate = desired
    reasons: list[str] = []
    for _ in range(_MAX_STEPS):
        step = _first_violation(candidate, rules, acc, sub, username, subreddit, tz)
        if step is None:
            break
        later, why = step
        candidate = later
        if why not in reasons:
            reasons.append(why)
    moved = candidate != desired
    return PacingDecision(
        scheduled_for=candidate,
        moved=moved,
        reason="; ".join(reasons) if moved else None,
        requested_for=desired,
    )


def _first_violation(
    c: datetime,
    rules: PacingRules,
    acc: list[datetime],
    sub: list[datetime],
    username: str,
    subreddit: str,
    tz: str,
) -> tuple[datetime, str] | None:
    """(a later candidate, why) for the first rule `c` breaks, or None when it keeps them all."""
    if rules.cooldown_until is not None and c < rules.cooldown_until:
        return (
            rules.cooldown_until,
            f"Reddit asked u/{username} to wait until {fmt(rules.cooldown_until, tz)}",
        )
    gap = rules.min_gap
    if gap > timedelta(0):
        clash = _clashes(c, acc, gap)
        if clash is not None:
            return (
                clash + gap,
                f"u/{username} keeps {_minutes(gap)} between posts "
                f"(another post is at {fmt(clash, tz)})",
            )
    gap = rules.subreddit_gap
    if gap > timedelta(0):
        clash = _clashes(c, sub, gap)
        if clash is not None:
            return (
                clash + gap,
                f"the team keeps {_minutes(gap)} between posts to r/{subreddit} "
                f"(another is at {fmt(clash, tz)})",
            )
    limit = rules.posts_per_day
    if limit > 0:
        later = _daily_violation(c, acc, limit)
        if later is not None:
            return (
                later,
                f"u/{username} makes at most {limit} post{'s' if limit != 1 else ''} "
                "in any 24 hours",
            )
    return None


def _clashes(c: datetime, times: list[datetime], gap: timedelta) -> datetime | None:
    """The latest time closer than `gap` to `c`, if any (jumping past it skips every clash
    that lies before it too)."""
    lo = bisect.bisect_right(times, c - gap)
    hi = bisect.bisect_left(times, c + gap)
    return times[hi - 1] if hi > lo else None


def _daily_violation(c: datetime, acc: list[datetime], limit: int) -> datetime | None:
    """A later candidate when some 24-hour window around `c` would hold more than `limit`.

    Windows are (e − 24h, e]. Only windows ending at `c` or at a later post less than 24 h
    away can contain `c`, and the fullest window through `c` is one of those.
    """
    # Window ending at c: the oldest posts in it must age out first.
    lo = bisect.bisect_right(acc, c - DAY)
    hi = bisect.bisect_right(acc, c)
    count = hi - lo
    if count >= limit:
        return acc[lo + count - limit] + DAY
    # Windows ending at a later post e (c < e < c + 24h): c has to move past e.
    start = hi
    stop = bisect.bisect_left(acc, c + DAY)
    for index in range(start, stop):
        e = acc[index]
        inside = index + 1 - bisect.bisect_right(acc, e - DAY)
        if inside >= limit:
            return e + _NUDGE
    return None
