"""Outbox rows: insert with dedupe, atomic claim with a lease (per-chat order kept), outcomes;
and the send budget every process shares (global slots, per-chat pace)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage import upsert
from storage.outbox_models import OutboxBudget, OutboxChatPace, OutboxMessage, OutboxStatus

UNSENT = (OutboxStatus.pending, OutboxStatus.sending)


@dataclass(frozen=True)
class ClaimedMessage:
    id: int
    chat_id: int
    method: str
    params: dict[str, Any]
    attempts: int
    max_attempts: int
    retry_ambiguous: bool
    was_sending: bool  # the lease of an earlier claim expired: the outcome of that send unknown
    hook: str | None
    hook_data: dict[str, Any] | None
    lease_expires_at: datetime
    # when the chat may be sent to next (ms since the epoch), as every process agreed; 0: now
    chat_ready_ms: int = 0


async def insert(
    session: AsyncSession,
    *,
    now: datetime,
    chat_id: int,
    method: str,
    params: dict[str, Any],
    dedupe_key: str | None = None,
    not_before: datetime | None = None,
    tenant_id: int | None = None,
    max_attempts: int = 8,
    retry_ambiguous: bool = True,
    hook: str | None = None,
    hook_data: dict[str, Any] | None = None,
) -> tuple[int, bool]:
    """Add a row; with a `dedupe_key` already present, add nothing. Returns (id, created)."""
    values = dict(
        tenant_id=tenant_id,
        chat_id=chat_id,
        method=method,
        params=params,
        dedupe_key=dedupe_key,
        status=OutboxStatus.pending,
        attempts=0,
        max_attempts=max_attempts,
        retry_ambiguous=retry_ambiguous,
        not_before=not_before or now,
        hook=hook,
        hook_data=hook_data,
        created_at=now,
        updated_at=now,
    )
    stmt = upsert.insert(session, OutboxMessage).values(**values)
    if dedupe_key is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["dedupe_key"])
    new_id = (await session.execute(stmt.returning(OutboxMessage.id))).scalar_one_or_none()
    if new_id is not None:
        return new_id, True
    existing = await session.scalar(
        select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)
    )
    assert existing is not None
    return existing, False


def _claimable(now: datetime):
    return or_(
        and_(OutboxMessage.status == OutboxStatus.pending, OutboxMessage.not_before <= now),
        and_(OutboxMessage.status == OutboxStatus.sending, OutboxMessage.lease_expires_at < now),
    )


async def claim(
    session: AsyncSession, *, owner: str, now: datetime, lease: timedelta, limit: int
) -> list[ClaimedMessage]:
    """Atomically take up to `limit` due rows for `owner`, at most the oldest unsent one per chat.

    A row is only taken when no earlier row of its chat is still unsent, so a chat's messages
    go out in order even across processes. PostgreSQL: FOR UPDATE SKIP LOCKED keeps concurrent
    claimers disjoint; SQLite runs the UPDATE under its single write lock.
    """
    earlier = aliased(OutboxMessage)
    blocked = exists().where(
        earlier.chat_id == OutboxMessage.chat_id,
        earlier.status.in_(UNSENT),
        earlier.id < OutboxMessage.id,
    )
    expires = now + lease
    chosen = (
        select(OutboxMessage.id, OutboxMessage.status)
        .where(_claimable(now), ~blocked)
        .order_by(OutboxMessage.not_before, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=OutboxMessage)
    )
    before = (await session.execute(chosen)).all()
    if not before:
        return []
    was = {row_id: status == OutboxStatus.sending for row_id, status in before}
    stmt = (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(list(was)), _claimable(now))
        .values(
            status=OutboxStatus.sending,
            lease_owner=owner,
            lease_expires_at=expires,
            attempts=OutboxMessage.attempts + 1,
            updated_at=now,
        )
        .returning(
            OutboxMessage.id,
            OutboxMessage.chat_id,
            OutboxMessage.method,
            OutboxMessage.params,
            OutboxMessage.attempts,
            OutboxMessage.max_attempts,
            OutboxMessage.retry_ambiguous,
            OutboxMessage.hook,
            OutboxMessage.hook_data,
        )
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(stmt)).all()
    paced = await chat_pace(session, {r.chat_id for r in rows}, after_ms=_ms(now))
    out = [
        ClaimedMessage(
            id=r.id,
            chat_id=r.chat_id,
            method=r.method,
            params=r.params,
            attempts=r.attempts,
            max_attempts=r.max_attempts,
            retry_ambiguous=r.retry_ambiguous,
            was_sending=was.get(r.id, False),
            hook=r.hook,
            hook_data=r.hook_data,
            lease_expires_at=expires,
            chat_ready_ms=paced.get(r.chat_id, 0),
        )
        for r in rows
    ]
    out.sort(key=lambda m: m.id)
    return out


async def _finish(session: AsyncSession, row_id: int, owner: str, values: dict[str, Any]) -> bool:
    """Apply an outcome if `owner` still holds the lease; False when it was lost meanwhile."""
    stmt = (
        update(OutboxMessage)
        .where(
            OutboxMessage.id == row_id,
            OutboxMessage.lease_owner == owner,
            OutboxMessage.status == OutboxStatus.sending,
        )
        .values(lease_owner=None, lease_expires_at=None, **values)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).rowcount == 1


async def mark_sent(
    session: AsyncSession, row_id: int, owner: str, *, now: datetime, message_id: int | None
) -> bool:
    return await _finish(
        session,
        row_id,
        owner,
        dict(
            status=OutboxStatus.sent,
            result_message_id=message_id,
            sent_at=now,
            updated_at=now,
            last_error=None,
        ),
    )


async def mark_failed(
    session: AsyncSession, row_id: int, owner: str, *, now: datetime, error: str
) -> bool:
    return await _finish(
        session,
        row_id,
        owner,
        dict(status=OutboxStatus.failed, last_error=error[:2000], updated_at=now),
    )


async def reschedule(
    session: AsyncSession,
    row_id: int,
    owner: str,
    *,
    now: datetime,
    not_before: datetime,
    error: str | None,
    count_attempt: bool = True,
    chat_id: int | None = None,
    params: dict[str, Any] | None = None,
) -> bool:
    """Back to pending until `not_before` (429, 5xx, timeout, or handed back on shutdown).
    `params` replaces the call's params (a refused file_id dropped for an upload)."""
    values: dict[str, Any] = dict(
        status=OutboxStatus.pending, not_before=not_before, updated_at=now
    )
    if params is not None:
        values["params"] = params
    if error is not None:
        values["last_error"] = error[:2000]
    if not count_attempt:
        values["attempts"] = OutboxMessage.attempts - 1
    if chat_id is not None:
        values["chat_id"] = chat_id
    return await _finish(session, row_id, owner, values)


async def extend_lease(session: AsyncSession, row_id: int, owner: str, *, until: datetime) -> bool:
    """Keep a long send (an upload) leased to `owner`; False when the lease was lost."""
    stmt = (
        update(OutboxMessage)
        .where(
            OutboxMessage.id == row_id,
            OutboxMessage.lease_owner == owner,
            OutboxMessage.status == OutboxStatus.sending,
        )
        .values(lease_expires_at=until)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).rowcount == 1


async def release(session: AsyncSession, owner: str, ids: Sequence[int], *, now: datetime) -> int:
    """Hand unsent claimed rows back (graceful stop): pending, due now, the try not counted."""
    if not ids:
        return 0
    stmt = (
        update(OutboxMessage)
        .where(
            OutboxMessage.id.in_(list(ids)),
            OutboxMessage.lease_owner == owner,
            OutboxMessage.status == OutboxStatus.sending,
        )
        .values(
            status=OutboxStatus.pending,
            lease_owner=None,
            lease_expires_at=None,
            attempts=OutboxMessage.attempts - 1,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).rowcount


async def get(session: AsyncSession, row_id: int) -> OutboxMessage | None:
    return await session.get(OutboxMessage, row_id)


async def counts(session: AsyncSession) -> dict[str, int]:
    from sqlalchemy import func

    rows = await session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    )
    return {status: n for status, n in rows.all()}


# -- the shared send budget -------------------------------------------------------------------


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


async def grant_slots(
    session: AsyncSession, key: str, *, now_ms: int, count: int, interval_ms: float
) -> int:
    """Take `count` consecutive send slots of the global pace `key`; the first slot's time
    (ms since the epoch; slot i is `interval_ms * i` later). One statement: concurrent
    senders get disjoint slots (the row lock or SQLite's write lock orders them)."""
    step = math.ceil(count * interval_ms)
    current = OutboxBudget.__table__.c.next_slot_ms
    stmt = upsert.insert(session, OutboxBudget).values(key=key, next_slot_ms=now_ms + step)
    stmt = stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={"next_slot_ms": case((current > now_ms, current), else_=now_ms) + step},
    ).returning(OutboxBudget.next_slot_ms)
    end = (await session.execute(stmt)).scalar_one()
    return int(end) - step


async def pause_slots(session: AsyncSession, key: str, *, until_ms: int) -> None:
    """No slot of `key` before `until_ms` (Telegram told several chats to wait)."""
    current = OutboxBudget.__table__.c.next_slot_ms
    stmt = upsert.insert(session, OutboxBudget).values(key=key, next_slot_ms=until_ms)
    stmt = stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={"next_slot_ms": case((current > until_ms, current), else_=until_ms)},
    )
    await session.execute(stmt)


async def set_chat_pace(session: AsyncSession, next_ms: dict[int, int]) -> None:
    """Each chat may be sent to again no sooner than its time (a later time already set wins)."""
    current = OutboxChatPace.__table__.c.next_ms
    for chat_id, at in sorted(next_ms.items()):  # one order: no deadlock between senders
        stmt = upsert.insert(session, OutboxChatPace).values(chat_id=chat_id, next_ms=at)
        stmt = stmt.on_conflict_do_update(
            index_elements=["chat_id"],
            set_={"next_ms": case((current > at, current), else_=at)},
        )
        await session.execute(stmt)


async def chat_pace(session: AsyncSession, chat_ids: set[int], *, after_ms: int) -> dict[int, int]:
    """The chats among `chat_ids` that may not be sent to before a time later than `after_ms`."""
    if not chat_ids:
        return {}
    rows = await session.execute(
        select(OutboxChatPace.chat_id, OutboxChatPace.next_ms).where(
            OutboxChatPace.chat_id.in_(list(chat_ids)), OutboxChatPace.next_ms > after_ms
        )
    )
    return {chat: int(at) for chat, at in rows.all()}


async def prune_chat_pace(session: AsyncSession, *, before_ms: int) -> int:
    """Forget paces that have passed (they decide nothing any more)."""
    stmt = delete(OutboxChatPace).where(OutboxChatPace.next_ms < before_ms)
    return (await session.execute(stmt.execution_options(synchronize_session=False))).rowcount
