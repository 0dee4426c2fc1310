"""Guided-flow state (aiogram FSM) rows: one per chat/user key, upserted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import upsert
from storage.models import FsmRecord


async def load(session: AsyncSession, key: str) -> FsmRecord | None:
    stmt = select(FsmRecord).where(FsmRecord.storage_key == key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def save(session: AsyncSession, key: str, now: datetime, **values: Any) -> None:
    """Set `state` and/or `data` for `key`, creating the row when needed (one statement)."""
    row = {"storage_key": key, "state": None, "data": {}, "updated_at": now, **values}
    stmt = upsert.insert(session, FsmRecord.__table__).values(**row)
    stmt = stmt.on_conflict_do_update(
        index_elements=["storage_key"], set_={**values, "updated_at": now}
    )
    await session.execute(stmt)


async def forget(session: AsyncSession, key: str) -> None:
    await session.execute(delete(FsmRecord).where(FsmRecord.storage_key == key))


async def forget_user(session: AsyncSession, user_id: int) -> int:
    """Delete every guided flow of one Telegram user, in any chat.

    aiogram's DefaultKeyBuilder ends each key with the user id (`fsm:<bot>:<chat>:<user>`)."""
    result = await session.execute(
        delete(FsmRecord).where(FsmRecord.storage_key.like(f"%:{int(user_id)}"))
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
