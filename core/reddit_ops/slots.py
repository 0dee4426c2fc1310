"""Where pacing lets a post go: the account's and the subreddit's rules against the posts
already sent (the submit job) or also planned (queueing)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from core.reddit_ops.pacing import DAY, PacingDecision, PacingRules, earliest_allowed
from storage.reddit_models import RedditAccount
from storage.repositories import reddit as repo

# How far ahead pacing looks for planned posts that could clash.
PLAN_HORIZON = timedelta(days=400)


async def plan_slot(
    session: AsyncSession,
    account: RedditAccount,
    *,
    subreddit: str,
    desired: datetime,
    include_planned: bool,
    exclude_post_id: int | None,
    tz: str = "UTC",
    lock: bool = False,
) -> PacingDecision:
    """Where a post of `account` to `subreddit` asked for `desired` may go.

    Planning (`include_planned`) counts queued and pending posts at their scheduled times;
    the submit job counts only what went out or is going out. `lock` takes the subreddit's
    pacing row FOR UPDATE (PostgreSQL) so two submits to one subreddit decide one at a time.
    """
    key = subreddit.lower()
    pacing = await repo.subreddit_pacing(session, account.tenant_id, key, for_update=lock)
    sub_gap = timedelta(minutes=pacing.min_gap_minutes) if pacing else timedelta(0)
    rules = PacingRules(
        posts_per_day=account.posts_per_day,
        min_gap=timedelta(minutes=account.min_gap_minutes),
        subreddit_gap=sub_gap,
        cooldown_until=account.cooldown_until,
    )
    start = desired - max(DAY, rules.min_gap, sub_gap)
    end = desired + PLAN_HORIZON
    account_times = await repo.pacing_times(
        session,
        start=start,
        end=end,
        account_id=account.id,
        include_planned=include_planned,
        exclude_post_id=exclude_post_id,
    )
    subreddit_times: list[datetime] = []
    if sub_gap > timedelta(0):
        subreddit_times = await repo.pacing_times(
            session,
            start=start,
            end=end,
            tenant_id=account.tenant_id,
            subreddit_key=key,
            include_planned=include_planned,
            exclude_post_id=exclude_post_id,
        )
    return earliest_allowed(
        desired,
        rules,
        account_times=account_times,
        subreddit_times=subreddit_times,
        username=account.username,
        subreddit=subreddit,
        tz=tz,
    )
