"""The Reddit request budget of an OAuth client id, shared through the database by every
process (`core.reddit.ratelimit.SharedBudget`).

Per client id there is one `reddit_rate_budgets` row (header pacing: the next moment a
request may go and the interval `reset / remaining`; the 429 pause; the figures Reddit last
reported) and `max_requests` `reddit_rate_slots` rows. A request is admitted in one short
`uow.write()` that locks the budget row (`SELECT … FOR UPDATE` on PostgreSQL; a write on
SQLite is serialised anyway), checks the pause and the pacing, takes a
free slot and moves the pacing on. So admissions of one client id are serialised across
processes, and at most `max_requests` requests are in the sliding window whichever process
sent them: a slot is busy from admission until `per_seconds` after the answer came back.

A process that dies with requests in flight leaves their slots busy until
`in_flight_seconds` after admission (longer than any request may take), then they free
themselves: counting too much for a while, never too little. All processes' clocks must
agree to within a small fraction of `per_seconds` (NTP does).
"""

from __future__ import annotations

from core.reddit.ratelimit import RateHeaders, SharedAdmission, SharedFactory
from storage.ratelimit_models import RedditRateBudget
from storage.repositories import ratelimit as repo
from storage.uow import UnitOfWork

IN_FLIGHT_SECONDS = 300.0


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class DatabaseBudget:
    """One client id's shared budget (a `SharedBudget`)."""

    def __init__(
        self,
        uow: UnitOfWork,
        client_id: str,
        *,
        max_requests: int = 100,
        per_seconds: float = 60.0,
        in_flight_seconds: float = IN_FLIGHT_SECONDS,
    ) -> None:
        self.uow = uow
        self.client_id = client_id
        self.max_requests = max_requests
        self.per_ms = _ms(per_seconds)
        self.in_flight_ms = _ms(max(in_flight_seconds, per_seconds))
        self._ready = False

    async def admit(self, now: float) -> SharedAdmission:
        now_ms = _ms(now)
        async with self.uow.write() as session:
            row = await repo.lock_budget(session, self.client_id) if self._ready else None
            if row is None:  # first use by this process: create what is missing
                await repo.ensure_budget(session, self.client_id, self.max_requests, now_ms=now_ms)
                row = await repo.lock_budget(session, self.client_id)
                assert row is not None
            self._ready = True
            figures = _figures(row)
            start = max(now_ms, row.paused_until_ms or 0, row.next_slot_ms or 0)
            if start > now_ms:
                return SharedAdmission(None, wait=(start - now_ms) / 1000, **figures)
            slot = await repo.free_slot(session, self.client_id, self.max_requests, now_ms=now_ms)
            if slot is None:
                earliest = await repo.earliest_free(session, self.client_id, self.max_requests)
                wait = max(1, (earliest or now_ms) - now_ms) / 1000
                return SharedAdmission(None, wait=wait, **figures)
            token = now_ms + self.in_flight_ms
            await repo.set_slot(session, self.client_id, slot, token)
            if row.interval_ms is not None:
                nxt = max(row.next_slot_ms or now_ms, now_ms + round(row.interval_ms))
                await repo.update_budget(
                    session, self.client_id, {"next_slot_ms": nxt, "updated_ms": now_ms}
                )
        return SharedAdmission(slot, token=token, **figures)

    async def release(self, admission: SharedAdmission, now: float) -> None:
        """The answer came back: the slot stays busy for `per_seconds` from now."""
        assert admission.slot is not None
        async with self.uow.write() as session:
            await repo.set_slot(
                session,
                self.client_id,
                admission.slot,
                _ms(now) + self.per_ms,
                only_if=admission.token,
            )

    async def report(self, now: float, headers: RateHeaders) -> None:
        """An answer's rate headers: pace everyone's next requests by them."""
        now_ms = _ms(now)
        reset_at_ms = now_ms + _ms(headers.reset_seconds)
        column = RedditRateBudget.next_slot_ms
        values: dict[str, object] = {
            "used": headers.used,
            "remaining": headers.remaining,
            "reset_at_ms": reset_at_ms,
            "updated_ms": now_ms,
        }
        if headers.remaining <= 0:
            values["interval_ms"] = None
            values["next_slot_ms"] = repo.at_least(column, reset_at_ms)
        else:
            interval_ms = headers.reset_seconds * 1000 / headers.remaining
            values["interval_ms"] = interval_ms
            values["next_slot_ms"] = repo.at_least(column, now_ms + round(interval_ms))
        async with self.uow.write() as session:
            await repo.update_budget(session, self.client_id, values)

    async def pause(self, until: float) -> None:
        """HTTP 429: nobody sends on this client id before `until`."""
        async with self.uow.write() as session:
            await repo.update_budget(
                session,
                self.client_id,
                {"paused_until_ms": repo.at_least(RedditRateBudget.paused_until_ms, _ms(until))},
            )

    async def busy(self, now: float) -> int:
        """Slots counting against the ceiling right now, across all processes."""
        async with self.uow.read() as session:
            return await repo.busy_slots(
                session, self.client_id, self.max_requests, now_ms=_ms(now)
            )


def _figures(row: RedditRateBudget) -> dict[str, float | int | None]:
    return {
        "used": row.used,
        "remaining": row.remaining,
        "reset_at": row.reset_at_ms / 1000 if row.reset_at_ms is not None else None,
    }


def database_budgets(uow: UnitOfWork) -> SharedFactory:
    """For `RateBudgetRegistry(shared=…)`: every client id's budget shared through the database."""

    def build(client_id: str, max_requests: int, per_seconds: float) -> DatabaseBudget:
        return DatabaseBudget(uow, client_id, max_requests=max_requests, per_seconds=per_seconds)

    return build


__all__ = ["IN_FLIGHT_SECONDS", "DatabaseBudget", "database_budgets"]
