"""Inbox rows: store a batch of updates (replays ignored), claim under a lease with one chat
at a time in `update_id` order, heartbeat, finish, prune. Callers own the transaction.

The statements the runner issues on every round are built once with bound parameters (as in
`storage.repositories.jobs`): building and cache-keying them per call costs as much CPU as
running them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, and_, bindparam, case, exists, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.inbox_models import InboxUpdate
from storage.types import UTCDateTime

_t = InboxUpdate.__table__
_NOW = bindparam("now", type_=UTCDateTime())
_OWNER = bindparam("owner", type_=String())
_IDS = bindparam("ids", expanding=True)


@dataclass(frozen=True, slots=True)
class NewUpdate:
    update_id: int
    chat_key: int | None
    raw: str


@dataclass(frozen=True, slots=True)
class ClaimedUpdate:
    update_id: int
    attempts: int
    raw: str | None


@dataclass(frozen=True, slots=True)
class Backlog:
    unhandled: int  # rows not handled yet (in handling or waiting)
    oldest: datetime | None  # received_at of the oldest of them
    free: int  # of those, rows no live lease holds (claimable unless their chat is busy)


def _insert_for(dialect: Any) -> Any:
    return (
        dialect.insert(_t)
        .values(
            update_id=bindparam("update_id"),
            chat_key=bindparam("chat_key"),
            raw=bindparam("raw"),
            received_at=_NOW,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["update_id"])
    )


_INSERT = {"sqlite": _insert_for(sqlite), "postgresql": _insert_for(postgresql)}

_FREE = or_(_t.c.lease_expires_at.is_(None), _t.c.lease_expires_at < _NOW)
_earlier = _t.alias("earlier")
# an earlier update of the same chat is not handled yet (in handling, or waiting for it)
_CHAT_BUSY = exists().where(
    _earlier.c.chat_key == _t.c.chat_key,
    _earlier.c.handled_at.is_(None),
    _earlier.c.update_id < _t.c.update_id,
)

_CLAIM = (
    _t.update()
    .where(
        _t.c.update_id.in_(
            select(_t.c.update_id)
            .where(_t.c.handled_at.is_(None), _FREE, ~_CHAT_BUSY)
            .order_by(_t.c.update_id)
            .limit(bindparam("limit", type_=Integer()))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
    .values(
        lease_owner=_OWNER,
        lease_expires_at=bindparam("lease_expires_at", type_=UTCDateTime()),
        attempts=_t.c.attempts + 1,
    )
    .returning(_t.c.update_id, _t.c.attempts, _t.c.raw)
)

_MINE = and_(_t.c.update_id.in_(_IDS), _t.c.lease_owner == _OWNER, _t.c.handled_at.is_(None))

_HEARTBEAT = (
    _t.update()
    .where(_MINE)
    .values(lease_expires_at=bindparam("lease_expires_at", type_=UTCDateTime()))
    .returning(_t.c.update_id)
)

_FINISH = (
    _t.update()
    .where(_MINE)
    .values(handled_at=_NOW, raw=None, lease_owner=None, lease_expires_at=None)
)

_RELEASE = (
    _t.update()
    .where(_MINE)
    .values(lease_owner=None, lease_expires_at=None, attempts=_t.c.attempts - 1)
)

_BACKLOG = select(
    func.count(),
    func.min(_t.c.received_at),
    func.coalesce(func.sum(case((_FREE, 1), else_=0)), 0),
).where(_t.c.handled_at.is_(None))


async def insert_many(session: AsyncSession, rows: Sequence[NewUpdate], now: datetime) -> None:
    """Store `rows`; an `update_id` already stored (a replay) is left as it is."""
    if not rows:
        return
    assert session.bind is not None
    stmt = _INSERT[session.bind.dialect.name]
    params = [
        {"update_id": r.update_id, "chat_key": r.chat_key, "raw": r.raw, "now": now} for r in rows
    ]
    await session.execute(stmt, params)


async def claim(
    session: AsyncSession, *, owner: str, now: datetime, lease: timedelta, limit: int
) -> list[ClaimedUpdate]:
    """Atomically lease up to `limit` updates to `owner`, oldest first: unhandled, no live
    lease, and no earlier unhandled update of the same chat (so a chat's updates run one at a
    time, in order, across every process). PostgreSQL: FOR UPDATE SKIP LOCKED keeps concurrent
    claimers disjoint; SQLite runs the whole UPDATE under its one write lock."""
    if limit <= 0:
        return []
    params = {"now": now, "owner": owner, "lease_expires_at": now + lease, "limit": limit}
    rows = (await session.execute(_CLAIM, params)).all()
    return sorted((ClaimedUpdate(*row) for row in rows), key=lambda c: c.update_id)


async def heartbeat(
    session: AsyncSession, *, owner: str, ids: Sequence[int], now: datetime, lease: timedelta
) -> set[int]:
    """Extend `owner`'s leases on `ids`; returns the ids it still holds."""
    if not ids:
        return set()
    params = {"ids": list(ids), "owner": owner, "lease_expires_at": now + lease}
    return set((await session.execute(_HEARTBEAT, params)).scalars().all())


async def finish(session: AsyncSession, *, owner: str, ids: Sequence[int], now: datetime) -> int:
    """Mark `owner`'s updates handled and drop their raw JSON (only the id stays, for dedupe)."""
    if not ids:
        return 0
    params = {"ids": list(ids), "owner": owner, "now": now}
    return (await session.execute(_FINISH, params)).rowcount


async def release(session: AsyncSession, *, owner: str, ids: Sequence[int]) -> int:
    """Hand leases back unhandled (a graceful stop): claimable at once, the try not counted."""
    if not ids:
        return 0
    return (await session.execute(_RELEASE, {"ids": list(ids), "owner": owner})).rowcount


async def backlog(session: AsyncSession, now: datetime) -> Backlog:
    unhandled, oldest, free = (await session.execute(_BACKLOG, {"now": now})).one()
    return Backlog(int(unhandled), UTCDateTime().process_result_value(oldest, None), int(free))


async def prune_handled(session: AsyncSession, before: datetime) -> int:
    """Forget updates handled before `before` (Telegram resends nothing that old)."""
    stmt = _t.delete().where(_t.c.handled_at < before)
    return (await session.execute(stmt)).rowcount


async def get(session: AsyncSession, update_id: int) -> InboxUpdate | None:
    return await session.get(InboxUpdate, update_id)
