"""Reddit operations: accounts, the post queue with pre-flight and pacing, the submit job,
dry run and backfills. The client itself lives in `core.reddit`."""

from core.reddit_ops.accounts import AccountService, AccountView, RemovedAccount
from core.reddit_ops.clients import RedditClients, config_from_settings
from core.reddit_ops.common import (
    BACKFILL_SUBMISSIONS,
    DEP_BLOBS,
    DEP_CLIENTS,
    DEP_PROGRESS,
    DEP_UOW,
    HEALTH_CHECK,
    INBOX,
    REFRESH_STATS,
    SUBMIT,
)
from core.reddit_ops.jobs import REDDIT_PERIODIC, register_reddit_jobs
from core.reddit_ops.pacing import PacingDecision, PacingRules, earliest_allowed
from core.reddit_ops.post_views import PostView, QueueResult
from core.reddit_ops.posts import PostService
from core.reddit_ops.preflight import (
    Draft,
    Finding,
    Level,
    PreflightReport,
    SubredditFacts,
    check_post,
    fetch_subreddit,
    preflight,
)
from core.reddit_ops.when import WHEN_PRESETS, parse_when

__all__ = [
    "BACKFILL_SUBMISSIONS",
    "DEP_BLOBS",
    "DEP_CLIENTS",
    "DEP_PROGRESS",
    "DEP_UOW",
    "HEALTH_CHECK",
    "INBOX",
    "REDDIT_PERIODIC",
    "REFRESH_STATS",
    "SUBMIT",
    "WHEN_PRESETS",
    "AccountService",
    "AccountView",
    "Draft",
    "Finding",
    "Level",
    "PacingDecision",
    "PacingRules",
    "PostService",
    "PostView",
    "PreflightReport",
    "QueueResult",
    "RedditClients",
    "RemovedAccount",
    "SubredditFacts",
    "check_post",
    "config_from_settings",
    "earliest_allowed",
    "fetch_subreddit",
    "parse_when",
    "preflight",
    "register_reddit_jobs",
]
