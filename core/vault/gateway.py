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
from storage.vault_models import ClaimerKind, ClaimOutcome

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

    def sign_download(self, result: ClaimResult) -> SignedDownload:
        """A token for `/files/<token>` after a delivering claim."""
        if not result.delivers or result.item is None or result.link is None:
            raise ValueError("only a delivering claim gets a download token")
        now = self.clock.now().timestamp()
        ttl = min(self.config.download_ttl_seconds, result.link.expires_at.timestamp() - now)
        token = self._signer.sign({"i": result.item.id, "l": result.link.id}, ttl, now=now)
        return SignedDownload(token, datetime.fromtimestamp(int(now + ttl), UTC))

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
        if item is None or item.deleted_at is not None:
            raise Gone(claimer_text(ClaimOutcome.denied_deleted))
        if link is None or link.item_id != item.id or link.revoked_at is not None:
            raise Gone(claimer_text(ClaimOutcome.denied_revoked))
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
