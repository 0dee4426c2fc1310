"""The data behind the charts: typed series from one workspace's rows, read lock-free.

Every call re-checks the actor (viewer or better) and reads only the actor's workspace.
Days are the actor's calendar days (their timezone); hours are UTC hours.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import accumulate
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select

from core.actor import Actor
from core.clock import Clock
from core.errors import InvalidInput
from storage.models import Job, JobStatus, Role
from storage.reddit_models import RedditAccount, RedditPost
from storage.uow import UnitOfWork
from storage.vault_models import ClaimOutcome, VaultClaim

PostSpan = Literal["7d", "30d"]
JobSpan = Literal["24h", "7d"]
POST_SPANS: dict[str, int] = {"7d": 7, "30d": 30}  # days
JOB_SPANS: dict[str, int] = {"24h": 24, "7d": 24 * 7}  # hours
FAILED = (JobStatus.failed.value, JobStatus.dead.value)


@dataclass(frozen=True, slots=True)
class PostSeries:
    """Published posts per day, by account and by subreddit, and their score and comments."""

    days: list[date]
    by_account: dict[str, list[int]]  # account name → posts per day
    by_subreddit: dict[str, list[int]]  # subreddit → posts per day
    score: list[int]  # sum of the latest known scores of the day's posts
    comments: list[int]

    @property
    def total(self) -> int:
        return sum(sum(v) for v in self.by_account.values())


@dataclass(frozen=True, slots=True)
class JobSeries:
    """Per UTC hour: jobs waiting or running at the hour's end, and jobs that failed in it."""

    hours: list[datetime]  # the start of each hour
    depth: list[int]
    failures: list[int]


def _tz(actor: Actor) -> ZoneInfo:
    try:
        return ZoneInfo(actor.timezone)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


class ChartData:
    """Reads the series the charts draw (DESIGN §9: reads outside any transaction)."""

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self.uow = uow
        self.clock = clock

    async def posts(self, actor: Actor, span: str) -> PostSeries:
        """Posts published in the last 7 or 30 of the actor's days (today included)."""
        actor.require(Role.viewer, "see charts")
        if span not in POST_SPANS:
            raise InvalidInput("Post charts cover 7d or 30d.")
        tz = _tz(actor)
        today = self.clock.now().astimezone(tz).date()
        days = [today - timedelta(days=n) for n in range(POST_SPANS[span] - 1, -1, -1)]
        since = datetime.combine(days[0], datetime.min.time(), tz)
        query = (
            select(
                RedditPost.published_at,
                RedditPost.score,
                RedditPost.num_comments,
                RedditAccount.username,
                RedditPost.subreddit,
            )
            .join(RedditAccount, RedditAccount.id == RedditPost.account_id)
            .where(
                RedditPost.tenant_id == actor.tenant_id,
                RedditPost.published_at.is_not(None),
                RedditPost.published_at >= since,
            )
        )
        async with self.uow.read() as session:
            rows = (await session.execute(query)).all()
        index = {d: i for i, d in enumerate(days)}
        by_account: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
        by_sub: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
        score, comments = [0] * len(days), [0] * len(days)
        for published_at, post_score, num_comments, username, subreddit in rows:
            i = index.get(published_at.astimezone(tz).date())
            if i is None:  # published "in the future" of a clock that moved back
                continue
            by_account[username][i] += 1
            by_sub[subreddit][i] += 1
            score[i] += post_score or 0
            comments[i] += num_comments or 0
        return PostSeries(
            days, dict(sorted(by_account.items())), dict(sorted(by_sub.items())), score, comments
        )

    async def jobs(self, actor: Actor, span: str) -> JobSeries:
        """Queue depth and failures per hour over the last 24 hours or 7 days."""
        actor.require(Role.viewer, "see charts")
        if span not in JOB_SPANS:
            raise InvalidInput("Job charts cover 24h or 7d.")
        now = self.clock.now()
        end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        hours = [end - timedelta(hours=n) for n in range(JOB_SPANS[span], 0, -1)]
        since = hours[0]
        ended = func.coalesce(Job.finished_at, Job.updated_at)
        done = (JobStatus.succeeded.value, JobStatus.dead.value, JobStatus.cancelled.value)
        query = select(Job.status, Job.created_at, ended).where(
            Job.tenant_id == actor.tenant_id,
            Job.created_at < end,
            # still open, or ended inside the window
            or_(Job.status.not_in(done), ended >= since),
        )
        async with self.uow.read() as session:
            rows = (await session.execute(query)).all()
        # edges[i]: the instant hour i's depth is read (its end, or now for the current hour)
        edges = [min(start + timedelta(hours=1), now) for start in hours]
        steps, failures = [0] * (len(hours) + 1), [0] * len(hours)
        for status, created_at, ended_at in rows:
            first = bisect_left(edges, created_at)
            last = bisect_left(edges, ended_at) if status in done else len(hours)
            if first < last:  # waiting or running at the edges first … last-1
                steps[first] += 1
                steps[last] -= 1
            if status in FAILED and ended_at is not None and ended_at >= since:
                failures[min(bisect_left(edges, ended_at), len(hours) - 1)] += 1
        depth = list(accumulate(steps[:-1]))
        return JobSeries(hours, depth, failures)

    async def claims(self, actor: Actor, span: str) -> ClaimSeries:
        """Deliveries (a use spent, or the same person again) per day per claim link."""
        actor.require(Role.viewer, "see charts")
        if span not in POST_SPANS:
            raise InvalidInput("Claim charts cover 7d or 30d.")
        tz = _tz(actor)
        today = self.clock.now().astimezone(tz).date()
        days = [today - timedelta(days=n) for n in range(POST_SPANS[span] - 1, -1, -1)]
        since = datetime.combine(days[0], datetime.min.time(), tz)
        delivered = (ClaimOutcome.delivered.value, ClaimOutcome.redelivered.value)
        query = select(VaultClaim.link_id, VaultClaim.at).where(
            VaultClaim.tenant_id == actor.tenant_id,
            VaultClaim.link_id.is_not(None),
            VaultClaim.outcome.in_(delivered),
            VaultClaim.at >= since,
        )
        async with self.uow.read() as session:
            rows = (await session.execute(query)).all()
        index = {d: i for i, d in enumerate(days)}
        by_link: dict[int, list[int]] = defaultdict(lambda: [0] * len(days))
        for link_id, at in rows:
            i = index.get(at.astimezone(tz).date())
            if i is not None:
                by_link[link_id][i] += 1
        return ClaimSeries(days, {f"link #{k}": v for k, v in sorted(by_link.items())})


@dataclass(frozen=True, slots=True)
class ClaimSeries:
    """Claims that delivered the file, per day, by claim link."""

    days: list[date]
    by_link: dict[str, list[int]]

    @property
    def total(self) -> int:
        return sum(sum(v) for v in self.by_link.values())
