"""Putting work on the queue. Used by services and by the engine's periodic schedules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import JobStatus
from storage.repositories import jobs as job_repo


async def enqueue(
    session: AsyncSession,
    *,
    tenant_id: int,
    kind: str,
    now: datetime,
    payload: dict[str, Any] | None = None,
    run_at: datetime | None = None,
    priority: int = 0,
    max_attempts: int = 5,
    dedupe_key: str | None = None,
    requires_approval: bool = False,
    created_by: int | None = None,
) -> int | None:
    """Insert a job (in the caller's transaction). None when `dedupe_key` was already taken."""
    return await job_repo.insert(
        session,
        {
            "tenant_id": tenant_id,
            "kind": kind,
            "payload": payload or {},
            "status": JobStatus.pending_approval if requires_approval else JobStatus.queued,
            "priority": priority,
            "run_at": run_at or now,
            "attempts": 0,
            "max_attempts": max_attempts,
            "cancel_requested": False,
            "dedupe_key": dedupe_key,
            "requires_approval": requires_approval,
            "created_by": created_by,
            "created_at": now,
            "updated_at": now,
        },
    )
