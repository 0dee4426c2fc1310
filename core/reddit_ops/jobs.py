"""Registering the Reddit job kinds, and the periodic schedules that enqueue them."""

from __future__ import annotations

from core.jobs.engine import PeriodicSpec
from core.jobs.registry import JobRegistry
from core.reddit_ops import common
from core.reddit_ops.backfill import (
    backfill_submissions,
    inbox,
    inbox_all,
    refresh_stats,
    refresh_stats_all,
)
from core.reddit_ops.health import health_check, health_check_all
from core.reddit_ops.steering import SUBMIT_STEERING
from core.reddit_ops.submit import submit_post

# Enqueued by JobEngine.add_periodic: each fans out one job per account (every workspace).
REDDIT_PERIODIC: tuple[PeriodicSpec, ...] = (
    PeriodicSpec(name="reddit.health", kind=common.HEALTH_CHECK_ALL, seconds=6 * 3600),
    PeriodicSpec(
        name="reddit.stats", kind=common.REFRESH_STATS_ALL, seconds=3600, payload={"days": 7}
    ),
    PeriodicSpec(name="reddit.inbox", kind=common.INBOX_ALL, seconds=600),
)


def register_reddit_jobs(registry: JobRegistry) -> None:
    """Every Reddit job kind. The engine must carry the deps `reddit_clients` (RedditClients),
    `uow` (the UnitOfWork) and, for image posts, `blobs` (a BlobStore); `progress` is
    optional. Approving, rejecting or cancelling a submit job moves its post too."""
    registry.register(
        common.SUBMIT,
        submit_post,
        description="publish one queued Reddit post (exactly once)",
        timeout_seconds=600,
        steering=SUBMIT_STEERING,
    )
    registry.register(
        common.HEALTH_CHECK,
        health_check,
        description="check a Reddit account (/api/v1/me): suspended, login refused",
        max_attempts=3,
        timeout_seconds=120,
    )
    registry.register(
        common.HEALTH_CHECK_ALL,
        health_check_all,
        description="queue a health check for every active Reddit account",
    )
    registry.register(
        common.BACKFILL_SUBMISSIONS,
        backfill_submissions,
        description="import a Reddit account's post history (resumable)",
    )
    registry.register(
        common.REFRESH_STATS,
        refresh_stats,
        description="refresh score, comments and removals of recent Reddit posts",
    )
    registry.register(
        common.REFRESH_STATS_ALL,
        refresh_stats_all,
        description="queue a stats refresh for every Reddit account",
    )
    registry.register(
        common.INBOX,
        inbox,
        description="read a Reddit account's inbox and announce new messages",
    )
    registry.register(
        common.INBOX_ALL, inbox_all, description="queue an inbox read for every Reddit account"
    )
