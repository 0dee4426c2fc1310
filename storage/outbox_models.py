"""The outbox: every message the bot sends on its own initiative, durable before it is sent.

One row per Bot API call (sendMessage, sendDocument, deleteMessage, …). `bot.outbox.Sender`
claims due rows with a lease, sends them paced under Telegram's flood limits and records the
outcome, so a restart neither loses nor (for rows already marked sent) repeats a message.

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
