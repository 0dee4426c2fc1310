"""The inbox: every Telegram update, durable before Telegram is told it arrived (DESIGN §10).

One row per distinct `update_id` (a replay inserts nothing). A row is handled under a lease,
like a job: `lease_owner` / `lease_expires_at` while a process handles it, `handled_at` once
it is done. Updates of one chat (`chat_key`) are handled one at a time in `update_id` order.
A handled row keeps only its id (the raw update is dropped: it may carry what an operator
typed into a guided flow) for as long as Telegram may still resend it, then it is pruned.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base
from storage.types import UTCDateTime

_UNHANDLED = "handled_at IS NULL"


class InboxUpdate(Base):
    __tablename__ = "inbox"
    __table_args__ = (
        # the claim walks unhandled rows in update_id order ...
        Index(
            "ix_inbox_unhandled",
            "update_id",
            sqlite_where=text(_UNHANDLED),
            postgresql_where=text(_UNHANDLED),
        ),
        # ... and asks "is an earlier update of this chat still unhandled?"
        Index(
            "ix_inbox_chat_unhandled",
            "chat_key",
            "update_id",
            sqlite_where=text(_UNHANDLED),
            postgresql_where=text(_UNHANDLED),
        ),
        Index("ix_inbox_handled_at", "handled_at"),  # pruning
    )

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # the chat (or, for chat-less updates, the user) whose updates run one at a time; None:
    # no order to keep
    chat_key: Mapped[int | None] = mapped_column(BigInteger)
    # the update's JSON, sealed by the runner (it may hold a secret typed into a flow); None
    # once handled
    raw: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
