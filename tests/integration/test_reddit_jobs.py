"""The Reddit job kinds registered and run by the real JobEngine."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from core.jobs.engine import JobEngine
from core.jobs.kinds import build_registry
from core.jobs.registry import JobRegistry
from core.reddit_ops import (
    DEP_BLOBS,
    DEP_CLIENTS,
    DEP_UOW,
    REDDIT_PERIODIC,
    register_reddit_jobs,
)
from core.reddit_ops import common as kinds
from core.settings import JobSettings
from storage.models import JobStatus
from storage.reddit_models import PostStatus
from tests.integration import test_reddit_helpers as helpers
from tests.integration.test_reddit_helpers import RedditWorld

vt, fake, world = helpers.vt, helpers.fake, helpers.world  # fixtures


def test_every_kind_is_registered_and_every_periodic_kind_exists() -> None:
    registry = JobRegistry()
    register_reddit_jobs(registry)
    expected = {
        kinds.SUBMIT,
        kinds.HEALTH_CHECK,
        kinds.HEALTH_CHECK_ALL,
        kinds.BACKFILL_SUBMISSIONS,
        kinds.REFRESH_STATS,
        kinds.REFRESH_STATS_ALL,
        kinds.INBOX,
        kinds.INBOX_ALL,
    }
    assert set(registry.kinds) == expected
    assert {spec.kind for spec in REDDIT_PERIODIC} <= expected
    build_registry(register_reddit_jobs)  # fits the app's Registrar hook


def engine_for(world: RedditWorld, **deps: Any) -> JobEngine:
    settings = JobSettings(  # type: ignore[call-arg]
        _env_file=None, concurrency=4, poll_seconds=60.0, lease_seconds=30.0
    )
    engine = JobEngine(
        sessionmaker=world.sessionmaker,
        registry=build_registry(register_reddit_jobs),
        settings=settings,
        clock=world.vt.clock,
        notifier=world.notifier,
        deps={DEP_CLIENTS: world.clients, DEP_BLOBS: world.blobs, DEP_UOW: world.uow, **deps},
    )
    for spec in REDDIT_PERIODIC:
        engine.add_periodic(spec)
    return engine


async def wait_for(predicate: Any, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out waiting")


async def test_engine_publishes_a_queued_post_and_reschedules_on_ratelimit(
    world: RedditWorld,
) -> None:
    account_id = await world.add_account("alice")
    engine = engine_for(world)
    world.fake.queue_error("submit", ratelimit="Take a break for 14 minutes before trying again.")
    await engine.start()
    try:
        async with world.services() as (_, posts, jobs):
            jobs.engine = engine
            limited = await posts.create_draft(
                world.operator,
                account_id=account_id,
                subreddit="testsub",
                kind="self",
                title="Too soon",
            )
            result = await posts.queue(world.operator, limited.id)
        job_id = result.job_id
        assert job_id is not None

        async def rescheduled() -> bool:
            job = await world.job(job_id)
            return job.status == JobStatus.queued and job.last_error is not None

        await wait_for(rescheduled)
        job = await world.job(job_id)
        assert job.run_at == world.vt.now() + timedelta(minutes=14)
        assert job.attempts == 0  # RATELIMIT is not a failed attempt
        assert "rescheduled" in (job.last_error or "")
        assert (await world.post(limited.id)).status == PostStatus.queued

        # Reddit's wait is over: the same job publishes the post.
        world.vt.advance(14 * 60)
        engine.wake_at(world.vt.now())

        async def published() -> bool:
            return (await world.post(limited.id)).status == PostStatus.published

        async def job_succeeded() -> bool:  # the job's own commit follows the post's
            return (await world.job(job_id)).status == JobStatus.succeeded

        await wait_for(published)
        await wait_for(job_succeeded)
        assert world.fake.count_posts(title="Too soon") == 1
    finally:
        await engine.stop()
