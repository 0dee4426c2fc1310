"""The outbox: every message the bot sends on its own initiative, durable before it is sent.

One row per Bot API call (sendMessage, sendDocument, deleteMessage, …). `bot.outbox.Sender`
claims due rows with a lease, sends them paced under Telegram's flood limits and records the
outcome, so a restart neither loses nor (for rows already marked sent) repeats a message.

The send budget belongs to the bot token, not to a process (DESIGN.md §10): every sender on
one database takes its sending times from `outbox_budget` (one row per bot: the next free
moment of the global pace, handed out a few slots at a time) and spaces a chat's messages by
`outbox_chat_pace` (one row per chat: when it may be sent to next). Times are integer
milliseconds since the epoch, compared and added in SQL the same way on SQLite and PostgreSQL.

Rows never hold file bytes: a file is a Telegram file_id in `params`, or a reference under
`params["_upload"]` (`bot.outbox.FileRef`: e.g. a vault item id) that the sender resolves at
send time — to a file_id, or to the item's bytes streamed from the blob store and uploaded.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId, JsonType
from storage.types import UTCDateTime


class OutboxStatus(enum.StrEnum):
    pending = "pending"  # waiting for its not_before (new, or retrying after 429/5xx)
    sending = "sending"  # claimed by a sender; resent if its lease expires first
    sent = "sent"
    failed = "failed"  # permanent error (blocked, chat not found, bad request) or out of tries


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        # The claim scans due pending rows and expired leases; both by time.
        Index("ix_outbox_status_not_before", "status", "not_before"),
        Index("ix_outbox_status_lease", "status", "lease_expires_at"),
        # Per-chat ordering: "is there an earlier unsent row for this chat?"
        Index("ix_outbox_chat_status_id", "chat_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(BigInteger)  # for reporting only; no FK
    chat_id: Mapped[int] = mapped_column(BigInteger)
    method: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    # False: if a send's outcome is unknown (timeout, crash mid-send) mark it failed instead of
    # sending again — at most once instead of at least once.
    retry_ambiguous: Mapped[bool] = mapped_column(Boolean, default=True)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    hook: Mapped[str | None] = mapped_column(String(64))  # on_sent hook name (Sender.add_hook)
    hook_data: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    result_message_id: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OutboxBudget(Base):
    """The global pace of one bot (`key` = `bot:<bot id>`): the next moment a send may start.
    A sender claiming k slots moves it on by k intervals in one statement (see
    `storage.repositories.outbox.grant_slots`); a 429 across chats moves it past the pause."""

    __tablename__ = "outbox_budget"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_slot_ms: Mapped[int] = mapped_column(BigInteger)


class OutboxChatPace(Base):
    """When a chat may be sent to next (one gap after its last send was answered). A row in
    the past means the same as no row, so pruning them never changes a decision."""

    __tablename__ = "outbox_chat_pace"
    __table_args__ = (Index("ix_outbox_chat_pace_next_ms", "next_ms"),)

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    next_ms: Mapped[int] = mapped_column(BigInteger)
