"""Tenants (workspaces)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Tenant

DEFAULT_SLUG = "owner"


async def get_by_slug(session: AsyncSession, slug: str) -> Tenant | None:
    return (await session.execute(select(Tenant).where(Tenant.slug == slug))).scalar_one_or_none()


async def get(session: AsyncSession, tenant_id: int) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


async def create(session: AsyncSession, slug: str, name: str, now: datetime) -> Tenant:
    tenant = Tenant(slug=slug, name=name, queue_paused=False, created_at=now)
    session.add(tenant)
    await session.flush()
    return tenant


async def list_all(session: AsyncSession) -> list[Tenant]:
    return list((await session.execute(select(Tenant).order_by(Tenant.id))).scalars().all())


async def set_paused(session: AsyncSession, tenant_id: int, paused: bool) -> bool:
    """Set the pause flag; returns False when it already had that value."""
    stmt = (
        update(Tenant)
        .where(Tenant.id == tenant_id, Tenant.queue_paused.is_not(paused))
        .values(queue_paused=paused)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).rowcount == 1
