"""Claiming a link: the one path by which a file leaves the vault, through either door.

Semantics (DESIGN §4): a link delivers while `now < expires_at`, `used_count < max_uses`, it
is not revoked and its item is not deleted. The check and the count are one conditional
UPDATE (`storage.repositories.vault.spend_use`), so concurrent claims never overspend. A
claimer who already received the file through a link receives it again without spending a
use (as long as the link is not expired or revoked and the file still exists). Every attempt
is written to the access log; the code itself is never stored.

With `failure_limit`, failed attempts (malformed or unknown codes) are counted per claimer in
the database (`core.ratelimit`, shared by every process); a claimer past the limit is refused
with `denied:rate_limited` before the code is even looked up. A delivery counts nothing.
"""

from __future__ import annotations

import dataclasses
import logging

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from core.crypto import hash_code
from core.ratelimit import Limit, SharedLimiter
from core.vault.codes import is_well_formed
from core.vault.texts import claimer_text, rate_limited_text
from core.vault.types import Claimer, ClaimResult
from storage.repositories import vault as repo
from storage.vault_models import ClaimerKind, ClaimOutcome, VaultItem, VaultLink

log = logging.getLogger(__name__)

FAILURE_SCOPE = "claim-failures"


class ClaimService:
    """Claims and the after-delivery hook. Bound to one session; commits each claim unless
    `commit=False` (the caller's unit of work then commits the claim together with whatever
    it queues for it — the Telegram door's outbox row — in one transaction)."""

    def __init__(
        self,
        session: AsyncSession,
        clock: Clock,
        *,
        commit: bool = True,
        failure_limit: Limit | None = None,
        reads: AsyncSession | None = None,
    ) -> None:
        self.session = session
        # the lookups before the use is spent; on SQLite a session outside any transaction
        # (storage.db.create_read_engine), so they do not hold the write lock: what they
        # found is re-checked by the conditional UPDATE that spends the use
        self.reads = reads or session
        self.clock = clock
        self.commit = commit
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
    ) -> ClaimResult:
        """Try to claim `code` for `claimer`; commits the use (if any) and the log row
        (with `commit=False`: leaves them in the session's open transaction).

        `channel` is the door (`telegram` or `http`; defaults to the claimer's kind).
        `require_blob`: only deliver if the bytes are in the blob store (the HTTP door) —
        a Telegram-only item is then refused without spending a use.
        """
        channel = str(channel or claimer.kind)
        subject = f"{claimer.kind}:{claimer.id}"
        if self.failures is not None:
            wait = await self.failures.blocked_in(self.reads, subject)
            if wait is not None:
                refused = await self._log_only(ClaimOutcome.denied_rate_limited, claimer, channel)
                return dataclasses.replace(refused, reason_text=rate_limited_text(wait))
        if not is_well_formed(code):
            await self._count_failure(subject)
            return await self._log_only(ClaimOutcome.denied_malformed, claimer, channel)
        link = await repo.link_by_code_hash(self.reads, hash_code(code))
        if link is None:
            await self._count_failure(subject)
            return await self._log_only(ClaimOutcome.denied_unknown, claimer, channel)

        link_id = link.id  # attributes expire on rollback; keep the id at hand
        if await self._received_before(link, claimer):
            return await self._redeliver(link, claimer, channel, require_blob)

        # read before the use is spent: the spend re-checks that it is not deleted
        item = await repo.get_item(self.reads, link.item_id, include_deleted=True)
        now = self.clock.now()
        spent = await repo.spend_use(
            self.session, link_id=link_id, now=now, require_blob=require_blob
        )
        if spent is None:
            # Read the link as it is now: a concurrent claim may have taken the last use.
            link = await repo.get_link(self.reads, link_id, fresh=True) or link
            item = await repo.get_item(self.reads, link.item_id, include_deleted=True)
            outcome = self._why_not(link, item, require_blob) or ClaimOutcome.denied_used_up
            return await self._finish(outcome, link, item, claimer, channel)
        try:
            return await self._finish(
                ClaimOutcome.delivered,
                spent,
                item,
                claimer,
                channel,
            )
        except IntegrityError:
            # The same claimer won a concurrent claim on this link a moment ago (one
            # `delivered` row per claimer and link): undo our spend, deliver again for free.
            await self.session.rollback()
            link = await repo.get_link(self.session, link_id, fresh=True)
            if link is None:  # deleted together with its item meanwhile
                return await self._log_only(ClaimOutcome.denied_deleted, claimer, channel)
            return await self._redeliver(link, claimer, channel, require_blob)

    async def record_file_id(
        self, item_id: int, file_id: str, file_unique_id: str | None = None
    ) -> None:
        """After a delivery uploaded the bytes to Telegram: keep its `file_id` for next time."""
        try:
            await repo.set_telegram_file(
                self.session, item_id=item_id, file_id=file_id, file_unique_id=file_unique_id
            )
            await self.session.commit()
        except IntegrityError:
            # Another live Telegram-only item holds that file_unique_id; keep the file_id only.
            await self.session.rollback()
            await repo.set_telegram_file(
                self.session, item_id=item_id, file_id=file_id, file_unique_id=None
            )
            await self.session.commit()

    async def record_undelivered(
        self, link_id: int, claimer: Claimer, outcome: ClaimOutcome, channel: str = "telegram"
    ) -> bool:
        """A delivery this link granted did not reach `claimer`: say so in the access log (in
        the caller's transaction; nothing is committed here). The `delivered` row stays — the
        use is theirs and claiming again is free. False when the link is gone."""
        link = await repo.get_link(self.session, link_id)
        if link is None:
            return False
        await self._log(outcome, claimer, channel, link)
        log.info("vault claim: link %s item %s %s", link.id, link.item_id, outcome.value)
        return True

    # -- steps -------------------------------------------------------------------------------
    async def _log(
        self, outcome: ClaimOutcome, claimer: Claimer, channel: str, link: VaultLink | None
    ) -> None:
        """One access-log row; no link for codes that match none (no workspace either)."""
        await repo.add_claim(
            self.session,
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

    async def _count_failure(self, subject: str) -> None:
        if self.failures is not None:  # in the claim's transaction: committed with its log row
            await self.failures.hit_in(self.session, subject)

    async def _received_before(self, link: VaultLink, claimer: Claimer) -> bool:
        return await repo.has_delivered(
            self.reads,
            link_id=link.id,
            claimer_kind=str(claimer.kind),
            claimer_id=claimer.id,
        )

    async def _redeliver(
        self, link: VaultLink, claimer: Claimer, channel: str, require_blob: bool
    ) -> ClaimResult:
        item = await repo.get_item(self.session, link.item_id, include_deleted=True)
        outcome = self._why_not(link, item, require_blob, ignore_uses=True)
        return await self._finish(outcome or ClaimOutcome.redelivered, link, item, claimer, channel)

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
        if require_blob and item.blob_key is None:
            return ClaimOutcome.denied_telegram_only
        return None

    async def _finish(
        self,
        outcome: ClaimOutcome,
        link: VaultLink,
        item: VaultItem | None,
        claimer: Claimer,
        channel: str,
    ) -> ClaimResult:
        await self._log(outcome, claimer, channel, link)
        if self.commit:
            await self.session.commit()
        if outcome.delivers:
            log.info("vault claim: link %s item %s %s", link.id, link.item_id, outcome.value)
        return ClaimResult(outcome, item, link, claimer_text(outcome))

    async def _log_only(self, outcome: ClaimOutcome, claimer: Claimer, channel: str) -> ClaimResult:
        await self._log(outcome, claimer, channel, None)
        if self.commit:
            await self.session.commit()
        return ClaimResult(outcome, None, None, claimer_text(outcome))


async def claim(
    session: AsyncSession,
    clock: Clock,
    code: str,
    claimer: Claimer,
    channel: str | None = None,
    *,
    require_blob: bool = False,
) -> ClaimResult:
    """`ClaimService(session, clock).claim(...)` for callers that hold no service."""
    return await ClaimService(session, clock).claim(
        code, claimer, channel, require_blob=require_blob
    )


__all__ = ["ClaimOutcome", "ClaimResult", "ClaimService", "Claimer", "ClaimerKind", "claim"]
