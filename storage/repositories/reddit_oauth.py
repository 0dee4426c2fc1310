"""Pending "Connect with Reddit" states. Callers own the transaction; nothing here commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.reddit_oauth_models import RedditOAuthState


async def add_state(session: AsyncSession, state: RedditOAuthState) -> RedditOAuthState:
    session.add(state)
    await session.flush()
    return state


async def state_by_hash(session: AsyncSession, state_hash: str) -> RedditOAuthState | None:
    return await session.scalar(
        select(RedditOAuthState).where(RedditOAuthState.state_hash == state_hash)
    )


async def use_state(session: AsyncSession, state_id: int, now: datetime) -> bool:
    """Spend the state once: False when it was used already or has expired meanwhile."""
    result = await session.execute(
        update(RedditOAuthState)
        .where(
            RedditOAuthState.id == state_id,
            RedditOAuthState.used_at.is_(None),
            RedditOAuthState.expires_at > now,
        )
        .values(used_at=now)
    )
    return result.rowcount == 1


async def purge(session: AsyncSession, *, expired_before: datetime) -> int:
    """Forget states that expired (or were used) before `expired_before`."""
    result = await session.execute(
        delete(RedditOAuthState).where(
            or_(
                RedditOAuthState.expires_at < expired_before,
                RedditOAuthState.used_at < expired_before,
            )
        )
    )
    return result.rowcount or 0
