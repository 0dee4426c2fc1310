"""Shared rate-limit state: fixed-window counters and the Reddit request budget.

Callers own the transaction; nothing here commits. Times are integer epoch milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import upsert
from storage.ratelimit_models import RateCounter, RedditRateBudget, RedditRateSlot


# -- fixed-window counters ---------------------------------------------------------------------
async def hit(session: AsyncSession, key: str, *, now_ms: int, window_ms: int) -> tuple[int, int]:
    """Count one hit on `key`; returns (hits in the current window, when it resets).

    One statement: an upsert that starts a new window when the stored one has ended."""
    table = RateCounter.__table__
    ended = table.c.resets_at_ms <= now_ms
    stmt = (
        upsert.insert(session, table)
        .values(key=key, hits=1, resets_at_ms=now_ms + window_ms)
        .on_conflict_do_update(
            index_elements=["key"],
            set_={
                "hits": case((ended, 1), else_=table.c.hits + 1),
                "resets_at_ms": case((ended, now_ms + window_ms), else_=table.c.resets_at_ms),
            },
        )
        .returning(table.c.hits, table.c.resets_at_ms)
    )
    hits, resets_at_ms = (await session.execute(stmt)).one()
    return int(hits), int(resets_at_ms)


async def unhit(session: AsyncSession, key: str, *, now_ms: int) -> None:
    """Give back one hit of `key`'s current window (a reserved attempt that did not fail)."""
    await session.execute(
        update(RateCounter)
        .where(RateCounter.key == key, RateCounter.resets_at_ms > now_ms, RateCounter.hits > 0)
        .values(hits=RateCounter.hits - 1)
    )


async def peek(session: AsyncSession, key: str, *, now_ms: int) -> tuple[int, int] | None:
    """(hits, resets_at_ms) of `key`'s current window without counting; None if it has none."""
    stmt = select(RateCounter.hits, RateCounter.resets_at_ms).where(
        RateCounter.key == key, RateCounter.resets_at_ms > now_ms
    )
    row = (await session.execute(stmt)).one_or_none()
    return None if row is None else (int(row[0]), int(row[1]))


async def prune_counters(session: AsyncSession, *, now_ms: int) -> int:
    """Delete windows that have ended (an ended window decides the same as no row)."""
    result = await session.execute(delete(RateCounter).where(RateCounter.resets_at_ms <= now_ms))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# -- the Reddit request budget -----------------------------------------------------------------
async def ensure_budget(session: AsyncSession, client_id: str, slots: int, *, now_ms: int) -> None:
    """Create the budget row and `slots` free slots for `client_id` if they are missing."""
    await session.execute(
        upsert.insert(session, RedditRateBudget.__table__)
        .values(client_id=client_id, updated_ms=now_ms)
        .on_conflict_do_nothing(index_elements=["client_id"])
    )
    await session.execute(
        upsert.insert(session, RedditRateSlot.__table__)
        .values([{"client_id": client_id, "slot": n, "busy_until_ms": 0} for n in range(slots)])
        .on_conflict_do_nothing(index_elements=["client_id", "slot"])
    )


async def lock_budget(session: AsyncSession, client_id: str) -> RedditRateBudget | None:
    """The budget row, locked until the transaction ends (PostgreSQL; SQLite's immediate
    transactions already hold the database's write lock)."""
    stmt = (
        select(RedditRateBudget)
        .where(RedditRateBudget.client_id == client_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def free_slot(
    session: AsyncSession, client_id: str, slots: int, *, now_ms: int
) -> int | None:
    stmt = (
        select(RedditRateSlot.slot)
        .where(
            RedditRateSlot.client_id == client_id,
            RedditRateSlot.slot < slots,
            RedditRateSlot.busy_until_ms <= now_ms,
        )
        .order_by(RedditRateSlot.busy_until_ms, RedditRateSlot.slot)
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def earliest_free(session: AsyncSession, client_id: str, slots: int) -> int | None:
    """When the first busy slot of `client_id` frees up (its `busy_until_ms`)."""
    stmt = select(func.min(RedditRateSlot.busy_until_ms)).where(
        RedditRateSlot.client_id == client_id, RedditRateSlot.slot < slots
    )
    value = (await session.execute(stmt)).scalar_one_or_none()
    return None if value is None else int(value)


async def busy_slots(session: AsyncSession, client_id: str, slots: int, *, now_ms: int) -> int:
    stmt = select(func.count()).where(
        RedditRateSlot.client_id == client_id,
        RedditRateSlot.slot < slots,
        RedditRateSlot.busy_until_ms > now_ms,
    )
    return int((await session.execute(stmt)).scalar_one())


async def set_slot(
    session: AsyncSession,
    client_id: str,
    slot: int,
    busy_until_ms: int,
    *,
    only_if: int | None = None,
) -> bool:
    """Mark `slot` busy until `busy_until_ms`; with `only_if`, only while it still holds that
    value (a release does not touch a slot somebody else took after its lease ran out)."""
    conditions = [RedditRateSlot.client_id == client_id, RedditRateSlot.slot == slot]
    if only_if is not None:
        conditions.append(RedditRateSlot.busy_until_ms == only_if)
    result = await session.execute(
        update(RedditRateSlot).where(and_(*conditions)).values(busy_until_ms=busy_until_ms)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def update_budget(session: AsyncSession, client_id: str, values: dict[str, Any]) -> None:
    await session.execute(
        update(RedditRateBudget).where(RedditRateBudget.client_id == client_id).values(**values)
    )


def at_least(column: Any, value: int) -> Any:
    """`max(column, value)` with NULL as nothing, on both backends."""
    return case((column.is_(None), value), (column < value, value), else_=column)


async def budgets(session: AsyncSession, client_ids: Sequence[str]) -> list[RedditRateBudget]:
    stmt = select(RedditRateBudget).where(RedditRateBudget.client_id.in_(list(client_ids)))
    return list((await session.execute(stmt)).scalars().all())
