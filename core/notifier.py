"""How core tells people things. `bot` implements it with Telegram; tests and the CLI use Null."""

from __future__ import annotations

from typing import Protocol


class Notifier(Protocol):
    async def job_needs_attention(self, tenant_id: int, job_id: int, reason: str) -> None:
        """A job died or waits for approval; `reason` is "dead" or "approval"."""

    async def tell_operators(self, tenant_id: int, text: str) -> None:
        """A plain message to every operator of the workspace who wants notifications."""


class NullNotifier:
    async def job_needs_attention(self, tenant_id: int, job_id: int, reason: str) -> None:
        return None

    async def tell_operators(self, tenant_id: int, text: str) -> None:
        return None


class RecordingNotifier:
    """Keeps what it was told; for unit tests of core."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, object]] = []

    async def job_needs_attention(self, tenant_id: int, job_id: int, reason: str) -> None:
        self.events.append((reason, tenant_id, job_id))

    async def tell_operators(self, tenant_id: int, text: str) -> None:
        self.events.append(("text", tenant_id, text))
