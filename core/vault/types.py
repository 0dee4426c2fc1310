"""Values the vault API takes and returns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from core.vault.browsers import claimer_id
from storage.vault_models import (
    ClaimerKind,
    ClaimOutcome,
    VaultClaim,
    VaultItem,
    VaultKind,
    VaultLink,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class IngestSource:
    """A file an operator sent, as the Telegram handler sees it.

    `content` streams the bytes (from `getFile` or a local file); None when the Bot API
    cannot hand them over (over 20 MB on the cloud API) — the item is then Telegram-only
    and is re-sent by `file_id`. Declared name, mime and size are what Telegram reported.
    """

    kind: VaultKind | str
    file_id: str | None = None
    file_unique_id: str | None = None
    name: str | None = None
    mime: str | None = None
    size: int | None = None
    caption: str | None = None
    nsfw: bool = False
    content: AsyncIterator[bytes] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class IngestResult:
    item: VaultItem
    duplicate: bool  # True: these bytes (or this Telegram file) were already in the vault

    @property
    def telegram_only(self) -> bool:
        return self.item.blob_key is None


@dataclass(frozen=True, slots=True)
class Claimer:
    """Who claims: a Telegram user id, or a browser (`core.vault.browsers`) — never an address."""

    kind: ClaimerKind | str
    id: str

    @classmethod
    def telegram(cls, user_id: int) -> Claimer:
        return cls(ClaimerKind.telegram, str(user_id))

    @classmethod
    def browser(cls, browser_id: str) -> Claimer:
        """The HTTP claimer: the browser whose signed cookie carries `browser_id`."""
        return cls(ClaimerKind.http, claimer_id(browser_id))


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """What a claim came to. `item`/`link` are set whenever the code matched a link."""

    outcome: ClaimOutcome
    item: VaultItem | None
    link: VaultLink | None
    reason_text: str  # for the person claiming

    @property
    def delivers(self) -> bool:
        """Send the file (first delivery or a free re-delivery)."""
        return self.outcome.delivers

    @property
    def spent_use(self) -> bool:
        return self.outcome is ClaimOutcome.delivered


@dataclass(frozen=True, slots=True)
class NewLink:
    """A freshly created link. `code` exists only here: show it once, it is not stored."""

    code: str
    link: VaultLink
    item: VaultItem


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    rows: list[T]
    total: int
    page: int
    pages: int


ItemPage = Page[VaultItem]
LinkPage = Page[VaultLink]
ClaimPage = Page[VaultClaim]


@dataclass(frozen=True, slots=True)
class KindStats:
    count: int
    bytes: int
    telegram_only: int


@dataclass(frozen=True, slots=True)
class VaultStats:
    by_kind: dict[str, KindStats]
    active_links: int

    @property
    def items(self) -> int:
        return sum(s.count for s in self.by_kind.values())

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.by_kind.values())
