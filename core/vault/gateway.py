"""The HTTP door to the vault: claim a code, sign a short-lived download URL, open the bytes.

Framework-free (the aiohttp routes live in `bot.web_claims`). Each call is its own unit of
work (reads outside any transaction; a claim is one short write). Download tokens are
HMAC-signed (`Signer` purpose "download") and carry only the item and link ids; they spend
nothing — the claim that issued them did. A token dies with its link (DESIGN §4): it expires
at the earlier of its own TTL and the link's expiry, and each request re-reads the link and
the item, so a revocation or a deletion stops it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from core.clock import Clock
from core.crypto import Signer
from core.errors import Forbidden
from core.vault.claims import ClaimService
from core.vault.config import VaultConfig
from core.vault.errors import Gone, NotDownloadable
from core.vault.texts import claimer_text
from core.vault.types import Claimer, ClaimResult
from storage.blobs.base import BlobStore
from storage.repositories import vault as repo
from storage.uow import UnitOfWork
from storage.vault_models import ClaimerKind, ClaimOutcome, VaultItem, VaultKind

DOWNLOAD_PURPOSE = "download"


@dataclass(frozen=True, slots=True)
class SignedDownload:
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Download:
    """A file ready to stream: everything the response headers need, and where the bytes are."""

    item_id: int
    link_id: int
    name: str
    mime: str
    size: int
    sha256: str
    blob_key: str
    created_at: datetime
    expires_at: datetime  # the token's, or the link's if sooner: how long a copy may be kept


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """One file of a batch link, after its claim: what a page lists, and its own download
    (None: the file is Telegram-only, or gone since)."""

    item_id: int
    name: str
    kind: str
    mime: str
    size: int | None
    sha256: str | None
    download: SignedDownload | None


class VaultGateway:
    """What `bot.web_claims` calls. Long-lived: holds the unit of work, not a session."""

    def __init__(
        self,
        *,
        uow: UnitOfWork,
        clock: Clock,
        blobs: BlobStore,
        secret_key: bytes,
        config: VaultConfig | None = None,
    ) -> None:
        self.uow = uow
        self.clock = clock
        self.blobs = blobs
        self.config = config or VaultConfig()
        self._signer = Signer(secret_key, DOWNLOAD_PURPOSE)

    async def preview(self, code: str, claimer: Claimer) -> ClaimResult:
        """What claiming `code` would do for `claimer` (a browser), spending nothing: the
        landing page. `delivered` means a claim would spend a use; `redelivered`, free."""
        return await ClaimService(self.uow, self.clock).preview(code, claimer, require_blob=True)

    async def claim(self, code: str, claimer: Claimer) -> ClaimResult:
        """Claim `code` for `claimer` (a browser; spends a use on its first delivery).

        Telegram-only files are refused (`denied:telegram_only`) without spending a use."""
        return await ClaimService(self.uow, self.clock).claim(
            code, claimer, ClaimerKind.http, require_blob=True
        )

    def sign_download(self, result: ClaimResult, item: VaultItem | None = None) -> SignedDownload:
        """A token for `/files/<token>` after a delivering claim: for the claimed file, or
        for `item`, one file of the claimed batch."""
        if not result.delivers or result.item is None or result.link is None:
            raise ValueError("only a delivering claim gets a download token")
        now = self.clock.now().timestamp()
        ttl = min(self.config.download_ttl_seconds, result.link.expires_at.timestamp() - now)
        item_id = (item or result.item).id
        token = self._signer.sign({"i": item_id, "l": result.link.id}, ttl, now=now)
        return SignedDownload(token, datetime.fromtimestamp(int(now + ttl), UTC))

    async def batch_files(self, batch_id: int) -> list[VaultItem]:
        """A batch's live files, in order, for its landing page (nothing is handed out)."""
        async with self.uow.read() as session:
            return await repo.batch_members(session, batch_id)

    async def batch_entries(self, result: ClaimResult) -> list[BatchEntry]:
        """After a delivering claim on a batch link (one use covers the batch): each live file
        with its metadata and its own download."""
        if not result.delivers or result.item is None or result.item.kind != VaultKind.batch:
            raise ValueError("only a delivering claim on a batch lists its files")
        async with self.uow.read() as session:
            members = await repo.batch_members(session, result.item.id)
        return [
            BatchEntry(
                item_id=m.id,
                name=m.name,
                kind=m.kind,
                mime=m.mime,
                size=m.size,
                sha256=m.sha256,
                download=self.sign_download(result, m) if m.blob_key is not None else None,
            )
            for m in members
        ]

    async def open_download(self, token: str) -> Download:
        """The file a token names. Forbidden: forged, malformed or expired token. Gone: the
        link expired or was revoked, or the file was deleted since. NotDownloadable: no bytes
        to serve. Two primary-key reads, outside any transaction."""
        now = self.clock.now()
        data = self._signer.verify(token, now=now.timestamp())
        try:
            item_id, link_id = int(data["i"]), int(data["l"])
        except (KeyError, TypeError, ValueError):
            raise Forbidden("This link is not valid.") from None
        async with self.uow.read() as session:
            item = await repo.get_item(session, item_id, include_deleted=True)
            link = await repo.get_link(session, link_id)
            # the link's own file, or one of the files of its batch
            named = link is not None and (
                link.item_id == item_id
                or await repo.is_batch_member(session, link.item_id, item_id)
            )
            holder = (
                await repo.get_item(session, link.item_id, include_deleted=True) if named else None
            )
        if item is None or item.deleted_at is not None:
            raise Gone(claimer_text(ClaimOutcome.denied_deleted))
        if link is None or not named or link.revoked_at is not None:
            raise Gone(claimer_text(ClaimOutcome.denied_revoked))
        if holder is None or holder.deleted_at is not None:  # the batch itself was deleted
            raise Gone(claimer_text(ClaimOutcome.denied_deleted))
        if now >= link.expires_at:
            raise Gone(claimer_text(ClaimOutcome.denied_expired))
        if item.blob_key is None or item.sha256 is None or item.size is None:
            raise NotDownloadable(claimer_text(ClaimOutcome.denied_telegram_only))
        return Download(
            item_id=item.id,
            link_id=link.id,
            name=item.name,
            mime=item.mime,
            size=item.size,
            sha256=item.sha256,
            blob_key=item.blob_key,
            created_at=item.created_at,
            expires_at=min(datetime.fromtimestamp(int(data["exp"]), UTC), link.expires_at),
        )
