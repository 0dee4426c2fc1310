"""Periodic housekeeping: prune finished jobs, old audit rows and ended rate-limit windows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.jobs.context import JobContext
from storage.repositories import audit as audit_repo
from storage.repositories import jobs as job_repo
from storage.repositories import ratelimit as ratelimit_repo

PRUNE_KIND = "maintenance.prune"


async def prune(ctx: JobContext) -> dict[str, Any]:
    """Delete finished jobs older than `job_days`, audit rows older than `audit_days` and
    rate-limit windows that have ended (`core.ratelimit`)."""
    job_days = int(ctx.payload.get("job_days", 30))
    audit_days = int(ctx.payload.get("audit_days", 365))
    now = ctx.clock.now()
    async with ctx.uow.write() as session:
        jobs = await job_repo.prune_finished(session, now - timedelta(days=job_days))
        audit = await audit_repo.prune(session, now - timedelta(days=audit_days))
        windows = await ratelimit_repo.prune_counters(session, now_ms=int(now.timestamp() * 1000))
    return {"jobs_deleted": jobs, "audit_deleted": audit, "rate_windows_deleted": windows}
