"""Vault housekeeping jobs: forget finished links and old access-log rows; sweep half-written
uploads out of the blob store. Register with `register_vault_jobs`, schedule with
`vault_periodic_specs` (the engine enqueues them with a dedupe key, once per slot)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.jobs.context import JobContext
from core.jobs.engine import PeriodicSpec
from core.jobs.registry import JobRegistry
from core.vault.config import VaultConfig
from storage.repositories import vault as repo

EXPIRE_LINKS = "vault.expire_links"
SWEEP_BLOBS = "vault.sweep_blobs"
_DEFAULTS = VaultConfig()


async def expire_links(ctx: JobContext) -> dict[str, Any]:
    """Expiry itself needs no job (a claim checks `expires_at`); this keeps the tables small.

    Links that stopped working (expired or revoked) more than `retention_days` ago are
    deleted, and access-log rows older than that are pruned. Reports how many links are
    expired but still kept, for the operators' view.
    """
    days = int(ctx.payload.get("retention_days", _DEFAULTS.claim_log_retention_days))
    now = ctx.clock.now()
    before = now - timedelta(days=days)
    async with ctx.sessionmaker() as session, session.begin():
        claims = await repo.prune_claims(session, before)
        await repo.prune_album_parts(session, before)
        links = await repo.delete_links_finished_before(session, before)
        expired = await repo.count_expired_unrevoked(session, now)
    return {"claims_deleted": claims, "links_deleted": links, "expired_kept": expired}


async def sweep_blobs(ctx: JobContext) -> dict[str, Any]:
    """Remove leftovers of uploads a crashed process never finished (`blobs` dependency)."""
    age = float(ctx.payload.get("older_than_seconds", _DEFAULTS.blob_sweep_age_seconds))
    removed = await ctx.dep("blobs").sweep_incomplete(older_than=age)
    return {"removed": removed}


def register_vault_jobs(registry: JobRegistry) -> None:
    registry.register(
        EXPIRE_LINKS, expire_links, description="Forget old links and access-log rows"
    )
    registry.register(
        SWEEP_BLOBS, sweep_blobs, description="Remove half-written uploads from the blob store"
    )


def vault_periodic_specs(config: VaultConfig | None = None) -> list[PeriodicSpec]:
    """Hourly schedules for both jobs, with `config`'s retention and sweep age."""
    config = config or VaultConfig()
    return [
        PeriodicSpec(
            name=EXPIRE_LINKS,
            kind=EXPIRE_LINKS,
            seconds=3600,
            payload={"retention_days": config.claim_log_retention_days},
        ),
        PeriodicSpec(
            name=SWEEP_BLOBS,
            kind=SWEEP_BLOBS,
            seconds=3600,
            payload={"older_than_seconds": config.blob_sweep_age_seconds},
        ),
    ]
