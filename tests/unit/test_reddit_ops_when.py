"""parse_when: what operators type, in their timezone, read as UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.errors import InvalidInput
from core.reddit_ops.when import parse_when

NOW = datetime(2026, 3, 28, 10, 15, tzinfo=UTC)  # Berlin: 11:15 CET, the day before DST


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("  NOW ", NOW),
        ("+2h", NOW + timedelta(hours=2)),
        ("+30m", NOW + timedelta(minutes=30)),
        ("+1h30m", NOW + timedelta(minutes=90)),
        ("in 90 min", NOW + timedelta(minutes=90)),
        ("in 2 hours", NOW + timedelta(hours=2)),
        ("+1d", NOW + timedelta(days=1)),
    ],
)
def test_now_and_relative(text: str, expected: datetime) -> None:
    assert parse_when(text, "Europe/Berlin", NOW) == expected


def test_tomorrow_at_a_time_is_read_in_the_operators_zone() -> None:
    # 2026-03-29 is the DST switch in Berlin: 09:00 is CEST (+2).
    assert parse_when("tomorrow 09:00", "Europe/Berlin", NOW) == datetime(
        2026, 3, 29, 7, 0, tzinfo=UTC
    )
    assert parse_when("tomorrow 9am", "America/New_York", NOW) == datetime(
        2026, 3, 29, 13, 0, tzinfo=UTC
    )


def test_a_clock_time_is_today_or_tomorrow_once_passed() -> None:
    assert parse_when("18:30", "Europe/Berlin", NOW) == datetime(2026, 3, 28, 17, 30, tzinfo=UTC)
    assert parse_when("08:00", "Europe/Berlin", NOW) == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    assert parse_when("today 12:00", "UTC", NOW) == datetime(2026, 3, 28, 12, 0, tzinfo=UTC)


def test_dates() -> None:
    expected = datetime(2026, 12, 1, 13, 30, tzinfo=UTC)  # 14:30 CET
    assert parse_when("2026-12-01 14:30", "Europe/Berlin", NOW) == expected
    assert parse_when("2026-12-01T14:30", "Europe/Berlin", NOW) == expected
    assert parse_when("01.12.2026 14:30", "Europe/Berlin", NOW) == expected
    assert parse_when("2026-12-01", "UTC", NOW) == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_a_time_skipped_by_dst_lands_after_the_switch() -> None:
    # 02:30 does not exist in Berlin on 2026-03-29; it reads as 03:30 CEST = 01:30 UTC.
    assert parse_when("2026-03-29 02:30", "Europe/Berlin", NOW) == datetime(
        2026, 3, 29, 1, 30, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "text", ["", "soon", "25:00", "2026-02-30 10:00", "+5 parsecs", "13pm", "today"]
)
def test_unreadable_times_are_refused_with_help(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_when(text, "UTC", NOW)
    assert "now" in caught.value.message  # the help lists what works


def test_past_and_far_future_are_refused() -> None:
    with pytest.raises(InvalidInput, match="already passed"):
        parse_when("2026-03-28 09:00", "UTC", NOW)
    with pytest.raises(InvalidInput, match="year"):
        parse_when("2028-01-01 10:00", "UTC", NOW)
    # a minute ago is still "now"
    assert parse_when("2026-03-28 10:14", "UTC", NOW) == NOW
