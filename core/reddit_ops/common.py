"""Names and small helpers shared by the Reddit services and jobs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from core.jobs.context import JobContext
from storage.uow import UnitOfWork

# Job dependencies (JobEngine(deps={...})) the Reddit jobs look up by name.
DEP_CLIENTS = "reddit_clients"  # RedditClients
DEP_BLOBS = "blobs"  # storage.blobs.BlobStore, for image posts
DEP_PROGRESS = "progress"  # optional: async (job_id, text) -> None, edits one chat message
DEP_UOW = "uow"  # storage.uow.UnitOfWork: the jobs' reads and short writes (DESIGN §9)

# Job kinds.
SUBMIT = "reddit.submit"
HEALTH_CHECK = "reddit.health_check"
HEALTH_CHECK_ALL = "reddit.health_check_all"
BACKFILL_SUBMISSIONS = "reddit.backfill_submissions"
REFRESH_STATS = "reddit.refresh_stats"
REFRESH_STATS_ALL = "reddit.refresh_stats_all"
INBOX = "reddit.inbox"
INBOX_ALL = "reddit.inbox_all"

Progress = Callable[[int, str], Awaitable[None]]


def short(text: str | None, limit: int = 80) -> str:
    """A title or message cut to fit a notification line."""
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def report_progress(ctx: JobContext, text: str) -> None:
    """Tell the optional progress dependency (the bot edits one message with it)."""
    progress: Any = ctx.deps.get(DEP_PROGRESS)
    if progress is not None:
        await progress(ctx.job_id, text)


def job_uow(ctx: JobContext) -> UnitOfWork:
    """The unit of work a Reddit job reads and writes through (never across a Reddit call)."""
    uow: UnitOfWork = ctx.dep(DEP_UOW)
    return uow
