"""Rate-limit state shared by every process on one database.

`rate_counters`: one fixed window per key (`claim:http:<address>`, `claim:tg:<user id>`, …),
anchored at the key's first hit after its previous window ended. A row whose window has
ended means the same as no row, so pruning them never changes a decision.

`reddit_rate_budgets` / `reddit_rate_slots`: the Reddit request budget of one OAuth client id
(see `core.reddit_ops.budget`). A slot is busy from when a request is admitted until
`per_seconds` after its answer; the budget row holds the header pacing and the 429 pause.

Times are integer milliseconds since the epoch: compared and added in SQL the same way on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class RateCounter(Base):
    __tablename__ = "rate_counters"
    __table_args__ = (Index("ix_rate_counters_resets_at_ms", "resets_at_ms"),)

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer)
    resets_at_ms: Mapped[int] = mapped_column(BigInteger)


class RedditRateBudget(Base):
    __tablename__ = "reddit_rate_budgets"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_slot_ms: Mapped[int | None] = mapped_column(BigInteger)
    interval_ms: Mapped[float | None] = mapped_column(Float)
    paused_until_ms: Mapped[int | None] = mapped_column(BigInteger)
    # What Reddit last reported to any process (for metrics).
    used: Mapped[int | None] = mapped_column(Integer)
    remaining: Mapped[float | None] = mapped_column(Float)
    reset_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class RedditRateSlot(Base):
    __tablename__ = "reddit_rate_slots"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    busy_until_ms: Mapped[int] = mapped_column(BigInteger)
