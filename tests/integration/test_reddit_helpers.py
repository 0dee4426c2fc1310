"""Shared set-up for the Reddit integration tests (imported by the test_reddit_* modules).

A `RedditWorld` is a migrated database (SQLite, and PostgreSQL when configured), a fake
Reddit over HTTP, and the services and job handlers wired to both. The fake, the clients and
the services share one `VirtualTime`: pacing and retry sleeps move the virtual clock.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.actor import Actor
from core.crypto import SecretBox
from core.jobs.context import JobContext
from core.jobs.registry import JobRegistry
from core.notifier import RecordingNotifier
from core.reddit import RateBudgetRegistry
from core.reddit_ops import (
    DEP_BLOBS,
    DEP_CLIENTS,
    DEP_PROGRESS,
    DEP_UOW,
    AccountService,
    PostService,
    RedditClients,
    register_reddit_jobs,
)
from core.services.jobs import JobService
from storage.blobs import LocalBlobStore
from storage.models import Job, Operator, Role
from storage.reddit_models import RedditAccount, RedditPost
from storage.repositories import tenants as tenant_repo
from storage.uow import UnitOfWork
from tests.fakes.reddit import FakeReddit, VirtualTime

APP = "app-one"
SECRET = "app-one-secret"
START = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 256
Handler = Callable[[JobContext], Awaitable[dict[str, Any] | None]]


@dataclass
class RedditWorld:
    sessionmaker: async_sessionmaker[AsyncSession]
    uow: UnitOfWork
    vt: VirtualTime
    fake: FakeReddit
    box: SecretBox
    clients: RedditClients
    notifier: RecordingNotifier
    blobs: LocalBlobStore
    tenant_id: int
    owner: Actor
    operator: Actor
    viewer: Actor
    stranger: Actor  # owner of another workspace
    progress: list[tuple[int, str]] = field(default_factory=list)
    on_progress: Callable[[int, str], None] | None = None

    # -- services -------------------------------------------------------------------------
    @asynccontextmanager
    async def services(self) -> AsyncIterator[tuple[AccountService, PostService, JobService]]:
        registry = JobRegistry()
        register_reddit_jobs(registry)  # approving a submit job moves its post
        jobs = JobService(self.uow, self.vt.clock, self.notifier, registry=registry)
        accounts = AccountService(
            self.uow, self.vt.clock, self.box, jobs=jobs, clients=self.clients
        )
        posts = PostService(self.uow, self.vt.clock, jobs, clients=self.clients)
        yield accounts, posts, jobs

    async def add_account(
        self, username: str = "alice", *, credentials: bool = True, **kw: Any
    ) -> int:
        """Connect `username`: a script login on APP (its fake password) unless told otherwise;
        `credentials=False` makes a dry-run-only account."""
        if credentials:
            kw.setdefault("client_id", APP)
            kw.setdefault("client_secret", SECRET)
            if "refresh_token" not in kw:
                kw.setdefault("password", f"{username}-pw")
        kw.setdefault("check", False)
        kw.setdefault("min_gap_minutes", 0)
        async with self.services() as (accounts, _, _):
            view = await accounts.add(self.operator, username=username, **kw)
        return view.id

    async def draft(self, account_id: int, **kw: Any) -> int:
        kw.setdefault("subreddit", "testsub")
        kw.setdefault("kind", "self")
        kw.setdefault("title", "Hello from Opsdeck")
        if kw["kind"] == "self":
            kw.setdefault("body", "Some text.")
        async with self.services() as (_, posts, _):
            view = await posts.create_draft(self.operator, account_id=account_id, **kw)
        return view.id

    async def queue(self, post_id: int, when: datetime | None = None, **kw: Any) -> Any:
        async with self.services() as (_, posts, _):
            return await posts.queue(self.operator, post_id, when, **kw)

    async def queued_post(self, account_id: int, **kw: Any) -> tuple[int, int]:
        """A draft queued for now; returns (post id, job id)."""
        post_id = await self.draft(account_id, **kw)
        result = await self.queue(post_id)
        assert result.job_id is not None
        return post_id, result.job_id

    # -- rows -----------------------------------------------------------------------------
    async def post(self, post_id: int) -> RedditPost:
        async with self.sessionmaker() as session:
            post = await session.get(RedditPost, post_id)
            assert post is not None
            return post

    async def account(self, account_id: int) -> RedditAccount:
        async with self.sessionmaker() as session:
            account = await session.get(RedditAccount, account_id)
            assert account is not None
            return account

    async def job(self, job_id: int) -> Job:
        async with self.sessionmaker() as session:
            job = await session.get(Job, job_id)
            assert job is not None
            return job

    async def jobs_of_kind(self, kind: str) -> list[Job]:
        async with self.sessionmaker() as session:
            stmt = select(Job).where(Job.kind == kind).order_by(Job.id)
            return list((await session.execute(stmt)).scalars().all())

    # -- running jobs ---------------------------------------------------------------------
    def ctx(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        job_id: int = 0,
        attempt: int = 1,
        max_attempts: int = 6,
        tenant_id: int | None = None,
    ) -> JobContext:
        async def progress(job: int, text: str) -> None:
            self.progress.append((job, text))
            if self.on_progress is not None:
                self.on_progress(job, text)

        return JobContext(
            job_id=job_id,
            tenant_id=tenant_id or self.tenant_id,
            kind=kind,
            payload=payload,
            attempt=attempt,
            max_attempts=max_attempts,
            sessionmaker=self.sessionmaker,
            clock=self.vt.clock,
            notifier=self.notifier,
            deps={
                DEP_CLIENTS: self.clients,
                DEP_BLOBS: self.blobs,
                DEP_PROGRESS: progress,
                DEP_UOW: self.uow,
            },
        )

    async def run_job(self, handler: Handler, job_id: int, *, attempt: int = 1) -> Any:
        """Run a queued job's handler the way the engine would (payload from its row)."""
        job = await self.job(job_id)
        ctx = self.ctx(
            job.kind,
            dict(job.payload),
            job_id=job.id,
            attempt=attempt,
            max_attempts=job.max_attempts,
            tenant_id=job.tenant_id,
        )
        return await handler(ctx)

    # -- what operators were told ---------------------------------------------------------
    @property
    def texts(self) -> list[str]:
        return [str(text) for kind, _, text in self.notifier.events if kind == "text"]


async def _operator(
    session: AsyncSession, tenant_id: int, user_id: int, role: Role, name: str
) -> Actor:
    op = Operator(
        tenant_id=tenant_id,
        telegram_user_id=user_id,
        role=role,
        display_name=name,
        timezone="UTC",
        notify=True,
        created_at=START,
    )
    session.add(op)
    await session.flush()
    return Actor(op.id, user_id, tenant_id, role, "UTC", name)


@pytest.fixture
def vt() -> VirtualTime:
    return VirtualTime(START)


@pytest.fixture
async def fake(vt: VirtualTime) -> AsyncIterator[FakeReddit]:
    async with FakeReddit(clock=vt) as fake:
        fake.add_account("alice", "alice-pw", APP, SECRET, link_karma=42, comment_karma=7)
        fake.add_account("bob", "bob-pw", APP, SECRET)
        fake.add_subreddit("testsub", flairs=["News", "Meta"])
        yield fake


@pytest.fixture
async def world(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    vt: VirtualTime,
    fake: FakeReddit,
    tmp_path: Any,
) -> AsyncIterator[RedditWorld]:
    box = SecretBox(b"reddit-tests-master-key")
    budgets = RateBudgetRegistry(clock=vt, sleep=vt.sleep)
    clients = RedditClients(
        fake.client_config(timeout=1.0, image_lookup_attempts=2, image_lookup_delay=1.0),
        budgets,
        box,
        clock=vt,
        sleep=vt.sleep,
        rng=random.Random(7),
    )
    async with sessionmaker() as session:
        tenant = await tenant_repo.create(session, "owner", "Owner workspace", START)
        other = await tenant_repo.create(session, "other", "Another workspace", START)
        owner = await _operator(session, tenant.id, 1001, Role.owner, "Olga")
        operator = await _operator(session, tenant.id, 1002, Role.operator, "Oscar")
        viewer = await _operator(session, tenant.id, 1003, Role.viewer, "Vera")
        stranger = await _operator(session, other.id, 2001, Role.owner, "Sam")
        await session.commit()
    uow = UnitOfWork(engine)
    world = RedditWorld(
        sessionmaker=sessionmaker,
        uow=uow,
        vt=vt,
        fake=fake,
        box=box,
        clients=clients,
        notifier=RecordingNotifier(),
        blobs=LocalBlobStore(tmp_path / "blobs", fsync=False),
        tenant_id=tenant.id,
        owner=owner,
        operator=operator,
        viewer=viewer,
        stranger=stranger,
    )
    try:
        yield world
    finally:
        await clients.aclose()
        await uow.dispose()
