"""Showing and reading times in the operator's timezone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from core.errors import InvalidInput


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return ZoneInfo("UTC")


def parse_timezone(name: str) -> str:
    """Validate an IANA name ("Europe/Berlin"); case-insensitive; returns the canonical spelling."""
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise InvalidInput("Give a timezone name like Europe/Berlin or America/New_York.")
    lower = {tz.lower(): tz for tz in available_timezones()}
    canonical = lower.get(name.lower()) or ("UTC" if name.upper() in ("UTC", "GMT", "Z") else None)
    if canonical is None:
        raise InvalidInput(f"Unknown timezone {name!r}. Use an IANA name like Europe/Berlin.")
    return canonical


def fmt(dt: datetime | None, tz: str, *, with_zone: bool = True) -> str:
    if dt is None:
        return "—"
    local = dt.astimezone(zone(tz))
    text = local.strftime("%Y-%m-%d %H:%M")
    return f"{text} {local.tzname()}" if with_zone else text


def fmt_relative(dt: datetime | None, now: datetime, tz: str) -> str:
    """ "2026-11-23 16:02 CET (in 5 min)" — absolute in the operator's zone, plus how far."""
    if dt is None:
        return "—"
    delta = dt - now
    secs = int(abs(delta.total_seconds()))
    if secs < 60:
        rel = f"{secs}s"
    elif secs < 3600:
        rel = f"{secs // 60} min"
    elif secs < 86400:
        rel = f"{secs // 3600}h {secs % 3600 // 60}m"
    else:
        rel = f"{secs // 86400}d"
    rel = f"in {rel}" if delta > timedelta(0) else f"{rel} ago"
    return f"{fmt(dt, tz)} ({rel})"


def utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC)
