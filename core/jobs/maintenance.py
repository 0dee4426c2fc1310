"""Periodic housekeeping: prune finished jobs and old audit rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.jobs.context import JobContext
from storage.repositories import audit as audit_repo
from storage.repositories import jobs as job_repo

PRUNE_KIND = "maintenance.prune"


async def prune(ctx: JobContext) -> dict[str, Any]:
    """Delete finished jobs older than `job_days` and audit rows older than `audit_days`."""
    job_days = int(ctx.payload.get("job_days", 30))
    audit_days = int(ctx.payload.get("audit_days", 365))
    now = ctx.clock.now()
    async with ctx.sessionmaker() as session, session.begin():
        jobs = await job_repo.prune_finished(session, now - timedelta(days=job_days))
        audit = await audit_repo.prune(session, now - timedelta(days=audit_days))
    return {"jobs_deleted": jobs, "audit_deleted": audit}
