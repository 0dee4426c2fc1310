"""What `/status` shows: one read of the workspace's state, free of any Telegram type.

`StatusService.gather()` runs a handful of grouped queries in one lock-free read. What only
the process knows (scheduler running, version, start time) arrives as plain values.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from core.actor import Actor, is_deployment_owner
from core.clock import Clock
from storage.backup_models import BackupRun
from storage.models import Job, JobStatus, Role, Tenant
from storage.reddit_models import PostStatus, RedditAccount, RedditPost
from storage.repositories import jobs as job_repo
from storage.repositories import vault as vault_repo
from storage.uow import UnitOfWork

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

NEXT_POSTS = 3


@dataclass(frozen=True, slots=True)
class BackupState:
    """The last backup as the backup module recorded it; `managed` = the database's business."""

    at: datetime | None = None
    ok: bool | None = None  # the copy was made and its check passed
    detail: str | None = None
    managed: str | None = None  # e.g. "PostgreSQL": backups are the database's business


@dataclass(frozen=True, slots=True)
class NextPost:
    scheduled_for: datetime | None
    subreddit: str
    title: str
    account: str
    status: str


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """What only the running process knows."""

    version: str
    started_at: datetime
    scheduler_running: bool
    database: str  # "SQLite" | "PostgreSQL" | …


@dataclass(frozen=True, slots=True)
class StatusReport:
    now: datetime
    process: ProcessInfo
    queue_paused: bool
    jobs: dict[str, int]
    oldest_due_at: datetime | None  # the oldest queued job that is due and has not started
    next_posts: list[NextPost]
    accounts: dict[str, int]
    vault_items: int
    vault_bytes: int
    active_links: int
    backup: BackupState | None
    # False for anyone but the deployment's owners (OPSDECK_OWNER_IDS): the report then holds
    # nothing that spans workspaces (backups, webhook, version and uptime stay out of view)
    deployment: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def uptime_seconds(self) -> float:
        return max(0.0, (self.now - self.process.started_at).total_seconds())

    @property
    def oldest_due_seconds(self) -> float | None:
        if self.oldest_due_at is None:
            return None
        return max(0.0, (self.now - self.oldest_due_at).total_seconds())


def database_kind(url: str) -> str:
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    return {"sqlite": "SQLite", "postgresql": "PostgreSQL", "postgres": "PostgreSQL"}.get(
        scheme, scheme
    )


class StatusService:
    """Gathers the `/status` report for the actor's workspace (any role may read it); the
    deployment-wide parts only for the owners in `owner_ids` (OPSDECK_OWNER_IDS)."""

    def __init__(self, uow: UnitOfWork, clock: Clock, owner_ids: Collection[int] = ()) -> None:
        self.uow = uow
        self.clock = clock
        self.owner_ids = frozenset(owner_ids)

    def shows_deployment(self, actor: Actor) -> bool:
        return is_deployment_owner(actor, self.owner_ids)

    async def gather(self, actor: Actor, process: ProcessInfo) -> StatusReport:
        actor.require(Role.viewer, "read the status")
        async with self.uow.read() as session:
            return await self._gather(session, actor, process)

    @staticmethod
    async def _last_backup(session: AsyncSession) -> BackupState | None:
        """The latest row `core.backup` wrote (the copy is the whole installation's)."""
        row = await session.scalar(
            select(BackupRun).order_by(BackupRun.started_at.desc(), BackupRun.id.desc()).limit(1)
        )
        if row is None:
            return None
        detail = row.error or (None if row.ok else row.integrity)
        return BackupState(at=row.finished_at, ok=row.ok, detail=detail)

    async def _gather(self, s: AsyncSession, actor: Actor, process: ProcessInfo) -> StatusReport:
        now = self.clock.now()
        tid = actor.tenant_id
        paused = bool(await s.scalar(select(Tenant.queue_paused).where(Tenant.id == tid)))
        jobs = await job_repo.count_by_status(s, tid)
        oldest = await s.scalar(
            select(func.min(Job.run_at)).where(
                Job.tenant_id == tid, Job.status == JobStatus.queued, Job.run_at <= now
            )
        )
        accounts = dict(
            (
                await s.execute(
                    select(RedditAccount.status, func.count())
                    .where(RedditAccount.tenant_id == tid)
                    .group_by(RedditAccount.status)
                )
            ).all()
        )
        posts = (
            await s.execute(
                select(RedditPost, RedditAccount.username)
                .join(RedditAccount, RedditAccount.id == RedditPost.account_id)
                .where(
                    RedditPost.tenant_id == tid,
                    RedditPost.status.in_([PostStatus.queued, PostStatus.pending_approval]),
                )
                .order_by(RedditPost.scheduled_for.is_(None), RedditPost.scheduled_for)
                .limit(NEXT_POSTS)
            )
        ).all()
        totals = await vault_repo.totals_by_kind(s, tid)
        links = await vault_repo.count_active_links(s, tid, now)
        deployment = self.shows_deployment(actor)
        if not deployment:
            backup = None  # a copy of every workspace: not a workspace's business
        elif process.database != "SQLite":
            backup: BackupState | None = BackupState(managed=process.database)
        else:
            backup = await self._last_backup(s)
        return StatusReport(
            now=now,
            process=process,
            queue_paused=paused,
            jobs=jobs,
            oldest_due_at=oldest,
            next_posts=[
                NextPost(p.scheduled_for, p.subreddit, p.title, username, p.status)
                for p, username in posts
            ],
            accounts={str(k): int(v) for k, v in accounts.items()},
            vault_items=sum(t.count for t in totals),
            vault_bytes=sum(t.bytes for t in totals),
            active_links=links,
            backup=backup,
            deployment=deployment,
        )
