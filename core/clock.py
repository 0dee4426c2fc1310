"""Time source. Everything that reads the time takes a Clock, so tests can move it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock tests move by hand. Starts at the real time unless told otherwise."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        self._offset = timedelta()

    def now(self) -> datetime:
        return self._now + self._offset

    def advance(self, delta: timedelta | float) -> None:
        self._offset += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
