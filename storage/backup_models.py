"""One row per backup run: where the copy went and what its check found (core.backup).

Not tenant-scoped: the database file is the whole installation's. Only SQLite installations
write rows here; on PostgreSQL backups are the database's business.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId, JsonType
from storage.types import UTCDateTime


class BackupRun(Base):
    __tablename__ = "backups"
    __table_args__ = (Index("ix_backups_started_at", "started_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int | None] = mapped_column(BigInteger)  # no FK: jobs get pruned
    file_name: Mapped[str | None] = mapped_column(String(255))  # None when no copy was kept
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    integrity: Mapped[str | None] = mapped_column(Text)  # PRAGMA integrity_check's answer
    row_counts: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
