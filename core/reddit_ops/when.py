"""Reading "when" the way an operator types it, in their own timezone, into UTC."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.errors import InvalidInput
from core.timefmt import zone

# What the chat can offer as one-tap choices.
WHEN_PRESETS: tuple[str, ...] = ("now", "+1h", "+3h", "tomorrow 09:00")
# A typed time this far in the past still means "now" (the operator took a moment to type).
PAST_TOLERANCE = timedelta(minutes=2)
MAX_AHEAD = timedelta(days=366)

_UNITS = {
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_RELATIVE = re.compile(r"^(?:\+|in\s+)\s*((?:\d+(?:\.\d+)?\s*[a-z]+\s*)+)$")
_CLOCK = r"(\d{1,2})(?::(\d{2}))?\s*(am|pm)?"
_DAY_WORD = re.compile(rf"^(today|tomorrow|tonight)(?:\s+(?:at\s+)?{_CLOCK})?$")
_CLOCK_ONLY = re.compile(rf"^(?:at\s+)?{_CLOCK}$")
_ISO = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ t]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$", re.IGNORECASE
)
_DOTTED = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})(?:\s+(\d{1,2}):(\d{2}))?$")

HELP = (
    'Say when: "now", "+2h", "+30m", "in 1 day", "18:30", "tomorrow 09:00" or '
    '"2026-12-01 14:30" (your timezone).'
)


def parse_when(text: str, tz: str, now: datetime) -> datetime:
    """`text` read in timezone `tz` (IANA name), as an aware UTC datetime.

    Accepts "now", relative offsets ("+2h", "+1h30m", "in 90 min", "+1d"), a clock time
    ("18:30", "9am": today, or tomorrow once passed), "today 18:00", "tomorrow 09:00", and
    dates ("2026-12-01 14:30", "2026-12-01T14:30", "01.12.2026 14:30"; a bare date is 09:00).
    A time in the past (beyond a couple of minutes) or more than a year ahead is refused.
    """
    raw = " ".join((text or "").strip().lower().split())
    if not raw:
        raise InvalidInput(HELP)
    now = now.astimezone(UTC)
    tzinfo = zone(tz)
    if raw in {"now", "asap", "right now", "immediately"}:
        return now
    result = _relative(raw, now)
    if result is None:
        result = _absolute(raw, now, tzinfo)
    if result is None:
        raise InvalidInput(f"I could not read “{text.strip()}” as a time. {HELP}")
    if result < now - PAST_TOLERANCE:
        local = result.astimezone(tzinfo).strftime("%Y-%m-%d %H:%M")
        raise InvalidInput(f"{local} ({tz}) has already passed. {HELP}")
    if result - now > MAX_AHEAD:
        raise InvalidInput("That is more than a year ahead; pick a nearer time.")
    return max(result, now)


def _relative(raw: str, now: datetime) -> datetime | None:
    match = _RELATIVE.match(raw)
    if match is None:
        return None
    seconds = 0.0
    for amount, unit in _PART.findall(match.group(1)):
        if unit not in _UNITS:
            return None
        seconds += float(amount) * _UNITS[unit]
    return now + timedelta(seconds=seconds)


def _absolute(raw: str, now: datetime, tzinfo: ZoneInfo) -> datetime | None:
    today = now.astimezone(tzinfo).date()
    match = _DAY_WORD.match(raw)
    if match is not None:
        word = match.group(1)
        day = today + timedelta(days=1) if word == "tomorrow" else today
        if match.group(2) is None:
            clock = time(20, 0) if word == "tonight" else time(9, 0)
            if word == "today":
                return None
        else:
            clock = _clock(match.group(2), match.group(3), match.group(4))
            if clock is None:
                return None
        return _local(day, clock, tzinfo)
    match = _CLOCK_ONLY.match(raw)
    if match is not None and (match.group(2) is not None or match.group(3) is not None):
        clock = _clock(match.group(1), match.group(2), match.group(3))
        if clock is None:
            return None
        result = _local(today, clock, tzinfo)
        if result < now - PAST_TOLERANCE:
            result = _local(today + timedelta(days=1), clock, tzinfo)
        return result
    match = _ISO.match(raw)
    if match is not None:
        y, mo, d, hh, mm, ss = match.groups()
        return _build(int(y), int(mo), int(d), hh, mm, ss, tzinfo)
    match = _DOTTED.match(raw)
    if match is not None:
        d, mo, y, hh, mm = match.groups()
        return _build(int(y), int(mo), int(d), hh, mm, None, tzinfo)
    return None


def _build(
    y: int, mo: int, d: int, hh: str | None, mm: str | None, ss: str | None, tzinfo: ZoneInfo
) -> datetime | None:
    try:
        day = date(y, mo, d)
        clock = time(9, 0) if hh is None else time(int(hh), int(mm or 0), int(ss or 0))
    except ValueError:
        return None
    return _local(day, clock, tzinfo)


def _clock(hour: str, minute: str | None, meridiem: str | None) -> time | None:
    h, m = int(hour), int(minute or 0)
    if meridiem is not None:
        if not 1 <= h <= 12:
            return None
        h = h % 12 + (12 if meridiem == "pm" else 0)
    if not (0 <= h <= 23 and 0 <= m <= 59):
        return None
    return time(h, m)


def _local(day: date, clock: time, tzinfo: ZoneInfo) -> datetime:
    """A wall-clock time in `tzinfo` as UTC. A time skipped by a DST change lands just after
    the change; a repeated one means its first occurrence."""
    return datetime.combine(day, clock, tzinfo=tzinfo).astimezone(UTC)
