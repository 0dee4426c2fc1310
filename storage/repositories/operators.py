"""Operators: Telegram users who may use the bot, one workspace each."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Operator


async def by_telegram_id(session: AsyncSession, user_id: int) -> Operator | None:
    stmt = select(Operator).where(Operator.telegram_user_id == user_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def in_tenant(session: AsyncSession, tenant_id: int) -> list[Operator]:
    stmt = select(Operator).where(Operator.tenant_id == tenant_id).order_by(Operator.id)
    return list((await session.execute(stmt)).scalars().all())


async def to_notify(session: AsyncSession, tenant_id: int) -> list[Operator]:
    stmt = select(Operator).where(Operator.tenant_id == tenant_id, Operator.notify.is_(True))
    return list((await session.execute(stmt.order_by(Operator.id))).scalars().all())


async def remove(session: AsyncSession, operator_id: int) -> None:
    await session.execute(delete(Operator).where(Operator.id == operator_id))
