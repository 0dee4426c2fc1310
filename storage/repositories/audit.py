"""The audit log: one row per mutation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditEntry


async def add(
    session: AsyncSession,
    *,
    tenant_id: int,
    actor_id: int | None,
    action: str,
    target: str | None,
    details: dict[str, Any] | None,
    at: datetime,
) -> None:
    session.add(
        AuditEntry(
            tenant_id=tenant_id,
            actor_id=actor_id,
            action=action,
            target=target,
            details=details,
            at=at,
        )
    )


async def latest(
    session: AsyncSession, tenant_id: int, limit: int, offset: int = 0
) -> list[AuditEntry]:
    stmt = (
        select(AuditEntry)
        .where(AuditEntry.tenant_id == tenant_id)
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars().all())


async def last_for_target(session: AsyncSession, tenant_id: int, target: str) -> AuditEntry | None:
    stmt = (
        select(AuditEntry)
        .where(AuditEntry.tenant_id == tenant_id, AuditEntry.target == target)
        .order_by(AuditEntry.id.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def prune(session: AsyncSession, before: datetime) -> int:
    stmt = delete(AuditEntry).where(AuditEntry.at < before)
    return (await session.execute(stmt.execution_options(synchronize_session=False))).rowcount
