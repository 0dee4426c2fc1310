"""What a row's hooks receive once it is sent (`SentMessage`) or failed for good
(`FailedMessage`, with its `FailCause`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


class FailCause(StrEnum):
    """Why a row failed, for on_failed hooks."""

    source = "source"  # the file's bytes could not be had (missing, unreadable)
    unreachable = "unreachable"  # blocked by the user, chat not found
    rejected = "rejected"  # Telegram refused the call itself (bad request, too large, …)
    gave_up = "gave_up"  # transient errors until max_attempts
    unknown = "unknown"  # the outcome of a send is unknown and the row may not be resent


@dataclass(frozen=True)
class FailedMessage:
    """What an on_failed hook receives."""

    row_id: int
    chat_id: int
    method: str
    error: str
    cause: FailCause
    hook_data: dict[str, Any] | None


@dataclass(frozen=True)
class SentMessage:
    """What an on_sent hook receives."""

    row_id: int
    chat_id: int
    method: str
    result: Any  # the Bot API result (a Message for send*, True for deleteMessage, …)
    hook_data: dict[str, Any] | None

    @property
    def message_id(self) -> int | None:
        return getattr(self.result, "message_id", None)


OnSent = Callable[[SentMessage], Awaitable[None]]
# runs in the transaction that marks the row failed: what it queues (through the session) is
# committed with that outcome, or not at all
OnFailed = Callable[[FailedMessage, AsyncSession], Awaitable[None]]
