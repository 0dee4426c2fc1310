"""The flood rule for strangers: one answer a minute each, whatever they send (/start too)."""

from __future__ import annotations

import time

STRANGER_REPLY_EVERY = 60.0  # seconds: a flood from one stranger gets one answer a minute


class StrangerReplies:
    """The flood rule: at most one answer a minute to each stranger for a refused message, a
    bare `/start` or a claim refused past the failure limit. What a claimer needs is not
    counted: the file, what is wrong with a real link ("expired", "used up"), and the first
    VAULT_CLAIM_FAILURE_LIMIT "does not exist" for mistyped codes (that limit bounds those).

    In memory, per process: it bounds what strangers cost the shared send budget; the claim
    failure limit (in the database) bounds their lookups."""

    def __init__(self, every: float = STRANGER_REPLY_EVERY) -> None:
        self.every = every
        self._last: dict[int, float] = {}

    def allow(self, user_id: int) -> bool:
        """True (and counted) when `user_id` may be answered now."""
        now = time.monotonic()
        if now - self._last.get(user_id, -1e9) < self.every:
            return False
        self._last[user_id] = now
        if len(self._last) > 10_000:  # bound memory under a flood of distinct strangers
            cutoff = now - self.every
            self._last = {k: v for k, v in self._last.items() if v >= cutoff}
        return True
