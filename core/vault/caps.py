"""Per-operator upload caps (issue 6 item 4): files per sliding hour, bytes per sliding day.

What counts is the operator's own items in the database (deleted ones too), so the caps hold
across processes and restarts. `over_cap` is pure: it gets those rows and says which cap a new
file would break, and when enough of the window has passed for it to fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.timefmt import fmt_relative
from core.vault.config import VaultConfig

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

UPLOADS_PER_HOUR = "uploads_per_hour"
BYTES_PER_DAY = "bytes_per_day"


def _size(n: int) -> str:
    from core.vault.service import human_size  # the vault's one way to show a size

    return human_size(n)


@dataclass(frozen=True, slots=True)
class CapRefusal:
    """Which cap a new file would break, how much of it is used, and when it fits again
    (`frees_at` None: never — the file alone is larger than the cap)."""

    cap: str
    limit: int
    used: int
    size: int | None
    frees_at: datetime | None
    details: dict[str, Any] = field(default_factory=dict)

    def message(self, now: datetime, tz: str) -> str:
        when = (
            f"You can add the next file from {fmt_relative(self.frees_at, now, tz)}."
            if self.frees_at is not None
            else "A file this large never fits; ask an owner to raise the cap."
        )
        if self.cap == UPLOADS_PER_HOUR:
            return (
                f"Upload cap reached: you added {self.used} files in the last hour and each "
                f"operator may add {self.limit} per hour (VAULT_OPERATOR_MAX_UPLOADS_PER_HOUR). "
                f"Nothing was stored. {when}"
            )
        subject = f"this file ({_size(self.size)})" if self.size is not None else "this file"
        if self.frees_at is None:
            return (
                f"Daily upload cap: {subject} is larger than the {_size(self.limit)} each "
                "operator may add per 24 hours (VAULT_OPERATOR_MAX_BYTES_PER_DAY). "
                "Nothing was stored."
            )
        return (
            f"Daily upload cap reached: you added {_size(self.used)} in the last 24 hours and "
            f"each operator may add {_size(self.limit)} (VAULT_OPERATOR_MAX_BYTES_PER_DAY), so "
            f"{subject} does not fit. Nothing was stored. {when}"
        )


def over_cap(
    config: VaultConfig,
    day_rows: list[tuple[datetime, int]],
    size: int | None,
    now: datetime,
) -> CapRefusal | None:
    """The cap a new file of `size` bytes (None: not known yet) would break, given the
    operator's uploads of the last 24 hours (`(created_at, size)`, oldest first)."""
    per_hour = config.operator_max_uploads_per_hour
    if per_hour:
        hour = [at for at, _ in day_rows if at > now - HOUR]
        if len(hour) >= per_hour:
            # the file fits once all but (cap - 1) of these have left the window
            frees = hour[len(hour) - per_hour] + HOUR
            return CapRefusal(UPLOADS_PER_HOUR, per_hour, len(hour), size, frees)
    per_day = config.operator_max_bytes_per_day
    if per_day:
        used = sum(n for _, n in day_rows)
        need = size or 0
        if size is not None and size > per_day:
            return CapRefusal(BYTES_PER_DAY, per_day, used, size, None)
        if used + need > per_day or (size is None and used >= per_day):
            freed = 0
            frees: datetime | None = None
            for at, n in day_rows:
                freed += n
                if used - freed + need <= per_day and used - freed < per_day:
                    frees = at + DAY
                    break
            return CapRefusal(BYTES_PER_DAY, per_day, used, size, frees)
    return None


def bytes_left(config: VaultConfig, day_rows: list[tuple[datetime, int]]) -> int | None:
    """What the operator may still add today (None: no daily cap)."""
    if not config.operator_max_bytes_per_day:
        return None
    return max(0, config.operator_max_bytes_per_day - sum(n for _, n in day_rows))
