"""Claiming a link: the one path by which a file leaves the vault, through either door.

Semantics (DESIGN §4): a link delivers while `now < expires_at`, `used_count < max_uses`, it
is not revoked and its item is not deleted. The check and the count are one conditional
UPDATE (`storage.repositories.vault.spend_use`), so concurrent claims never overspend. A
claimer who already received the file through a link receives it again without spending a
use (as long as the link is not expired or revoked and the file still exists). Every attempt
is written to the access log; the code itself is never stored.

With `failure_limit`, failed attempts (malformed or unknown codes) are counted per claimer in
the database (`core.ratelimit`, shared by every process); a claimer past the limit is refused
with `denied:rate_limited` before the code is even looked up. Each lookup first reserves a
failure with one upsert that counts and returns the count (check and count in one
statement), so N concurrent guesses from one claimer look up at most `limit` codes; a code
that matches a link gives its reservation back in the claim's own write. A delivery counts
nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from core.crypto import hash_code
from core.ratelimit import Limit, SharedLimiter
from core.vault.codes import is_well_formed
from core.vault.texts import claimer_text, rate_limited_text
from core.vault.types import Claimer, ClaimResult
from storage.repositories import vault as repo
from storage.uow import UnitOfWork
from storage.vault_models import ClaimerKind, ClaimOutcome, VaultItem, VaultLink

log = logging.getLogger(__name__)

FAILURE_SCOPE = "claim-failures"

# Runs inside the write that logs the claim: what it writes (the Telegram door's queued
# answer) commits together with the use and the access-log row, or not at all.
Then = Callable[[ClaimResult, AsyncSession], Awaitable[None]]


class ClaimService:
    """Claims and the after-delivery hook, on the unit of work: the lookups are reads (no
    lock); the spend, the access-log row and whatever `then` queues are one short write."""

    def __init__(
        self, uow: UnitOfWork, clock: Clock, *, failure_limit: Limit | None = None
    ) -> None:
        self.uow = uow
        self.clock = clock
        self.failures = (
            SharedLimiter(FAILURE_SCOPE, failure_limit, clock) if failure_limit else None
        )

    async def claim(
        self,
        code: str,
        claimer: Claimer,
        channel: str | None = None,
        *,
        require_blob: bool = False,
        then: Then | None = None,
    ) -> ClaimResult:
        """Try to claim `code` for `claimer`; the use (if any), the log row and what `then`
        writes for the result commit in one transaction.

        `channel` is the door (`telegram` or `http`; defaults to the claimer's kind).
        `require_blob`: only deliver a file if its bytes are in the blob store (the HTTP door)
        — a Telegram-only file is then refused without spending a use. A batch or a short
        link has no bytes of its own: it is not refused for that.
        """
        channel = str(channel or claimer.kind)
        subject = f"{claimer.kind}:{claimer.id}"
        if self.failures is not None:
            async with self.uow.read() as reads:
                wait = await self.failures.blocked_in(reads, subject)
            if wait is not None:
                return await self._log_only(
                    ClaimOutcome.denied_rate_limited,
                    claimer,
                    channel,
                    then,
                    reason_text=rate_limited_text(wait),
                )
        if not is_well_formed(code):
            return await self._log_only(
                ClaimOutcome.denied_malformed, claimer, channel, then, failure=subject
            )
        refund = None  # the subject whose reserved failure this claim gives back if real
        if self.failures is not None:
            refused = await self._reserve_failure(subject, claimer, channel, then)
            if refused is not None:
                return refused
            refund = subject
        # What these reads found is re-checked by the conditional UPDATE that spends the use.
        async with self.uow.read() as reads:
            link = await repo.link_by_code_hash(reads, hash_code(code))
            if link is None:
                received, item = False, None
            else:
                received = await self._received_before(reads, link, claimer)
                item = await repo.get_item(reads, link.item_id, include_deleted=True)
        if link is None:  # the reserved failure stays counted
            return await self._log_only(ClaimOutcome.denied_unknown, claimer, channel, then)
        if received:
            return await self._redeliver(link, item, claimer, channel, require_blob, then, refund)

        link_id = link.id
        try:
            async with self.uow.write() as session:
                now = self.clock.now()
                spent = await repo.spend_use(
                    session,
                    link_id=link_id,
                    now=now,
                    require_blob=require_blob and (item is None or item.is_file),
                )
                if spent is not None:
                    outcome, link = ClaimOutcome.delivered, spent
                else:
                    # As it is now: a concurrent claim may have taken the last use.
                    link = await repo.get_link(session, link_id, fresh=True) or link
                    item = await repo.get_item(session, link.item_id, include_deleted=True)
                    outcome = self._why_not(link, item, require_blob) or ClaimOutcome.denied_used_up
                return await self._finish(
                    session, outcome, link, item, claimer, channel, then, refund
                )
        except IntegrityError:
            # The same claimer won a concurrent claim on this link a moment ago (one
            # `delivered` row per claimer and link): our spend is undone; deliver for free.
            async with self.uow.read() as reads:
                fresh = await repo.get_link(reads, link_id)
                item = fresh and await repo.get_item(reads, fresh.item_id, include_deleted=True)
            if fresh is None:  # deleted together with its item meanwhile
                return await self._log_only(
                    ClaimOutcome.denied_deleted, claimer, channel, then, refund=refund
                )
            return await self._redeliver(fresh, item, claimer, channel, require_blob, then, refund)

    async def preview(
        self, code: str, claimer: Claimer, *, require_blob: bool = False
    ) -> ClaimResult:
        """What claiming `code` would do for `claimer` now, reading only: `delivered` (a use
        would be spent), `redelivered` (free: they have it already) or the refusal. Spends,
        logs and counts nothing — the HTTP landing page, which link previewers fetch too."""
        if not is_well_formed(code):
            return _result(ClaimOutcome.denied_malformed)
        async with self.uow.read() as reads:
            link = await repo.link_by_code_hash(reads, hash_code(code))
            if link is None:
                return _result(ClaimOutcome.denied_unknown)
            item = await repo.get_item(reads, link.item_id, include_deleted=True)
            received = await self._received_before(reads, link, claimer)
        if received:
            why_not = self._why_not(link, item, require_blob, ignore_uses=True)
            return _result(why_not or ClaimOutcome.redelivered, item, link)
        why_not = self._why_not(link, item, require_blob)
        return _result(why_not or ClaimOutcome.delivered, item, link)

    async def record_file_id(
        self, item_id: int, file_id: str, file_unique_id: str | None = None
    ) -> None:
        """After a delivery uploaded the bytes to Telegram: keep its `file_id` for next time."""
        try:
            async with self.uow.write() as session:
                await repo.set_telegram_file(
                    session, item_id=item_id, file_id=file_id, file_unique_id=file_unique_id
                )
        except IntegrityError:
            # Another live Telegram-only item holds that file_unique_id; keep the file_id only.
            async with self.uow.write() as session:
                await repo.set_telegram_file(
                    session, item_id=item_id, file_id=file_id, file_unique_id=None
                )

    async def record_undelivered(
        self,
        session: AsyncSession,
        link_id: int,
        claimer: Claimer,
        outcome: ClaimOutcome,
        channel: str = "telegram",
    ) -> bool:
        """A delivery this link granted did not reach `claimer`: say so in the access log, in
        `session`'s transaction (the outbox's, marking the delivery failed). The `delivered`
        row stays — the use is theirs and claiming again is free. False when the link is gone."""
        link = await repo.get_link(session, link_id)
        if link is None:
            return False
        await self._log(session, outcome, claimer, channel, link)
        log.info("vault claim: link %s item %s %s", link.id, link.item_id, outcome.value)
        return True

    # -- steps -------------------------------------------------------------------------------
    async def _log(
        self,
        session: AsyncSession,
        outcome: ClaimOutcome,
        claimer: Claimer,
        channel: str,
        link: VaultLink | None,
    ) -> None:
        """One access-log row; no link for codes that match none (no workspace either)."""
        await repo.add_claim(
            session,
            {
                "tenant_id": link.tenant_id if link is not None else None,
                "link_id": link.id if link is not None else None,
                "item_id": link.item_id if link is not None else None,
                "claimer_kind": str(claimer.kind),
                "claimer_id": claimer.id,
                "channel": channel,
                "outcome": outcome.value,
                "at": self.clock.now(),
            },
        )

    @staticmethod
    async def _received_before(session: AsyncSession, link: VaultLink, claimer: Claimer) -> bool:
        return await repo.has_delivered(
            session,
            link_id=link.id,
            claimer_kind=str(claimer.kind),
            claimer_id=claimer.id,
        )

    async def _redeliver(
        self,
        link: VaultLink,
        item: VaultItem | None,
        claimer: Claimer,
        channel: str,
        require_blob: bool,
        then: Then | None,
        refund: str | None = None,
    ) -> ClaimResult:
        outcome = self._why_not(link, item, require_blob, ignore_uses=True)
        async with self.uow.write() as session:
            return await self._finish(
                session,
                outcome or ClaimOutcome.redelivered,
                link,
                item,
                claimer,
                channel,
                then,
                refund,
            )

    def _why_not(
        self,
        link: VaultLink,
        item: VaultItem | None,
        require_blob: bool,
        *,
        ignore_uses: bool = False,
    ) -> ClaimOutcome | None:
        """The reason a link cannot deliver now; None if it can. The first reason that
        applies wins, most final first (a deleted file beats the revocation that came with it).
        `ignore_uses`: for a re-delivery, which spends nothing.
        """
        now = self.clock.now()
        if item is None or item.deleted_at is not None:
            return ClaimOutcome.denied_deleted
        if link.revoked_at is not None:
            return ClaimOutcome.denied_revoked
        if now >= link.expires_at:
            return ClaimOutcome.denied_expired
        if not ignore_uses and link.used_count >= link.max_uses:
            return ClaimOutcome.denied_used_up
        if require_blob and item.is_file and item.blob_key is None:
            return ClaimOutcome.denied_telegram_only
        return None

    async def _finish(
        self,
        session: AsyncSession,
        outcome: ClaimOutcome,
        link: VaultLink,
        item: VaultItem | None,
        claimer: Claimer,
        channel: str,
        then: Then | None,
        refund: str | None = None,
    ) -> ClaimResult:
        await self._give_back(session, refund)
        await self._log(session, outcome, claimer, channel, link)
        result = ClaimResult(outcome, item, link, claimer_text(outcome))
        if then is not None:
            await then(result, session)
        if outcome.delivers:
            log.info("vault claim: link %s item %s %s", link.id, link.item_id, outcome.value)
        return result

    async def _log_only(
        self,
        outcome: ClaimOutcome,
        claimer: Claimer,
        channel: str,
        then: Then | None,
        *,
        failure: str | None = None,
        reason_text: str | None = None,
        refund: str | None = None,
    ) -> ClaimResult:
        """A refusal that matched no link; `failure`: count it against that subject too (past
        the limit, that count makes it a rate-limited refusal: one statement decides)."""
        async with self.uow.write() as session:
            if failure is not None and self.failures is not None:
                wait = await self.failures.hit_in(session, failure)
                if wait is not None:  # refused, not failed: the count stays the failures'
                    outcome = ClaimOutcome.denied_rate_limited
                    reason_text = rate_limited_text(wait)
                    refund = failure
            await self._give_back(session, refund)
            return await self._refusal(session, outcome, claimer, channel, then, reason_text)

    async def _refusal(
        self,
        session: AsyncSession,
        outcome: ClaimOutcome,
        claimer: Claimer,
        channel: str,
        then: Then | None,
        reason_text: str | None = None,
    ) -> ClaimResult:
        result = ClaimResult(outcome, None, None, reason_text or claimer_text(outcome))
        await self._log(session, outcome, claimer, channel, None)
        if then is not None:
            await then(result, session)
        return result

    async def _reserve_failure(
        self, subject: str, claimer: Claimer, channel: str, then: Then | None
    ) -> ClaimResult | None:
        """Count this attempt as a failure before the code is looked up; None: go ahead.
        Past the limit the refusal is written in the same short write."""
        assert self.failures is not None
        async with self.uow.write() as session:
            wait = await self.failures.hit_in(session, subject)
            if wait is None:
                return None
            # refused without a lookup: no failure either, so the count stays exact
            await self.failures.refund_in(session, subject)
            return await self._refusal(
                session,
                ClaimOutcome.denied_rate_limited,
                claimer,
                channel,
                then,
                rate_limited_text(wait),
            )

    async def _give_back(self, session: AsyncSession, refund: str | None) -> None:
        """The looked-up code matched a link: its reserved failure was none."""
        if refund is not None and self.failures is not None:
            await self.failures.refund_in(session, refund)


def _result(
    outcome: ClaimOutcome, item: VaultItem | None = None, link: VaultLink | None = None
) -> ClaimResult:
    return ClaimResult(outcome, item, link, claimer_text(outcome))


async def claim(
    uow: UnitOfWork,
    clock: Clock,
    code: str,
    claimer: Claimer,
    channel: str | None = None,
    *,
    require_blob: bool = False,
) -> ClaimResult:
    """`ClaimService(uow, clock).claim(...)` for callers that hold no service."""
    return await ClaimService(uow, clock).claim(code, claimer, channel, require_blob=require_blob)


__all__ = ["ClaimOutcome", "ClaimResult", "ClaimService", "Claimer", "ClaimerKind", "claim"]
