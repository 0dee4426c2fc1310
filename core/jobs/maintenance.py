"""Periodic housekeeping: prune finished jobs, old audit rows, ended rate-limit windows and
API idempotency keys past their retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.jobs.context import JobContext
from storage.repositories import api_tokens as token_repo
from storage.repositories import audit as audit_repo
from storage.repositories import jobs as job_repo
from storage.repositories import ratelimit as ratelimit_repo

PRUNE_KIND = "maintenance.prune"


async def prune(ctx: JobContext) -> dict[str, Any]:
    """Delete finished jobs older than `job_days`, audit rows older than `audit_days`,
    rate-limit windows that have ended (`core.ratelimit`) and idempotency keys that no longer
    answer (`token_repo.KEY_RETENTION`)."""
    job_days = int(ctx.payload.get("job_days", 30))
    audit_days = int(ctx.payload.get("audit_days", 365))
    now = ctx.clock.now()
    async with ctx.uow.write() as session:
        jobs = await job_repo.prune_finished(session, now - timedelta(days=job_days))
        audit = await audit_repo.prune(session, now - timedelta(days=audit_days))
        windows = await ratelimit_repo.prune_counters(session, now_ms=int(now.timestamp() * 1000))
        keys = await token_repo.prune_keys(session, now - token_repo.KEY_RETENTION)
    return {
        "jobs_deleted": jobs,
        "audit_deleted": audit,
        "rate_windows_deleted": windows,
        "idempotency_keys_deleted": keys,
    }
