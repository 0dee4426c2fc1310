"""What /status and /backup show, over HTTP (the same services; the same deployment rule)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.api.registry import Call, Registry
from bot.api.server import DEPS
from storage.models import Role


class NextPostOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    scheduled_for: datetime | None
    subreddit: str
    title: str
    account: str
    status: str


class BackupStateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime | None
    ok: bool | None
    detail: str | None
    managed: str | None


class StatusOut(BaseModel):
    now: datetime
    queue_paused: bool
    jobs: dict[str, int]
    oldest_due_seconds: float | None
    next_posts: list[NextPostOut]
    accounts: dict[str, int]
    vault_items: int
    vault_bytes: int
    active_links: int
    # deployment-wide: null unless the token's maker is a deployment owner
    version: str | None
    uptime_seconds: float | None
    scheduler_running: bool | None
    database: str | None
    backup: BackupStateOut | None


class BackupRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    file_name: str | None
    size_bytes: int | None
    duration_ms: int
    ok: bool
    error: str | None
    started_at: datetime
    finished_at: datetime


class KeptFileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    size_bytes: int
    modified: datetime


class BackupOut(BaseModel):
    supported: bool
    message: str | None
    schedule: str
    keep: int
    last: BackupRunOut | None
    last_good: BackupRunOut | None
    kept: list[KeptFileOut]


def register(reg: Registry) -> None:
    @reg.route(
        "GET",
        "/status",
        summary="What /status shows",
        tag="status",
        role=Role.viewer,
        response=StatusOut,
    )
    async def get_status(call: Call[Any, Any, Any]) -> StatusOut:
        deps = call.request.config_dict[DEPS]
        r = await deps.status.gather(call.actor, deps.process())
        shown = r.deployment
        return StatusOut(
            now=r.now,
            queue_paused=r.queue_paused,
            jobs=r.jobs,
            oldest_due_seconds=r.oldest_due_seconds,
            next_posts=[NextPostOut.model_validate(p) for p in r.next_posts],
            accounts=r.accounts,
            vault_items=r.vault_items,
            vault_bytes=r.vault_bytes,
            active_links=r.active_links,
            version=r.process.version if shown else None,
            uptime_seconds=r.uptime_seconds if shown else None,
            scheduler_running=r.process.scheduler_running if shown else None,
            database=r.process.database if shown else None,
            backup=BackupStateOut.model_validate(r.backup) if shown and r.backup else None,
        )

    @reg.route(
        "GET",
        "/backup",
        summary="The last backups and the kept copies",
        tag="status",
        role=Role.owner,
        response=BackupOut,
        deployment_only=True,
    )
    async def get_backup(call: Call[Any, Any, Any]) -> BackupOut:
        o = await call.services.backup.overview(call.actor)
        return BackupOut(
            supported=o.supported,
            message=o.message,
            schedule=o.schedule,
            keep=o.keep,
            last=BackupRunOut.model_validate(o.last) if o.last else None,
            last_good=BackupRunOut.model_validate(o.last_good) if o.last_good else None,
            kept=[KeptFileOut.model_validate(k) for k in o.kept],
        )
