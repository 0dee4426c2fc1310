"""API tokens and idempotency records. Callers own the transaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.api_models import ApiToken, IdempotencyRecord

# how long an Idempotency-Key answers its first result (older ones are pruned by maintenance)
KEY_RETENTION = timedelta(hours=24)


async def add(session: AsyncSession, token: ApiToken) -> ApiToken:
    session.add(token)
    await session.flush()
    return token


async def by_hash(session: AsyncSession, token_hash: str) -> ApiToken | None:
    return await session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))


async def get(session: AsyncSession, token_id: int, tenant_id: int) -> ApiToken | None:
    return await session.scalar(
        select(ApiToken).where(ApiToken.id == token_id, ApiToken.tenant_id == tenant_id)
    )


async def in_tenant(session: AsyncSession, tenant_id: int) -> list[ApiToken]:
    rows = await session.scalars(
        select(ApiToken).where(ApiToken.tenant_id == tenant_id).order_by(ApiToken.id)
    )
    return list(rows)


async def name_taken(session: AsyncSession, tenant_id: int, name: str) -> bool:
    found = await session.scalar(
        select(ApiToken.id).where(
            ApiToken.tenant_id == tenant_id,
            ApiToken.name == name,
            ApiToken.revoked_at.is_(None),
        )
    )
    return found is not None


async def revoke(
    session: AsyncSession, token_id: int, tenant_id: int, by: int, at: datetime
) -> bool:
    """Revoke once: False when it was already revoked (or is not in this workspace)."""
    result = await session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            ApiToken.tenant_id == tenant_id,
            ApiToken.revoked_at.is_(None),
        )
        .values(revoked_at=at, revoked_by=by)
    )
    return result.rowcount == 1


async def touch(session: AsyncSession, token_id: int, at: datetime) -> None:
    await session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=at))


async def reserve_key(
    session: AsyncSession, token_id: int, key: str, fingerprint: str, at: datetime
) -> IdempotencyRecord | None:
    """Claim `key` for a first request; None when this insert won, else the existing record."""
    try:
        async with session.begin_nested():
            session.add(
                IdempotencyRecord(
                    token_id=token_id, key=key, fingerprint=fingerprint, created_at=at
                )
            )
        return None
    except IntegrityError:
        return await session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.token_id == token_id, IdempotencyRecord.key == key
            )
        )


async def complete_key(
    session: AsyncSession, token_id: int, key: str, status: int, body: Any
) -> None:
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.token_id == token_id, IdempotencyRecord.key == key)
        .values(status=status, body=body)
    )


async def release_key(session: AsyncSession, token_id: int, key: str) -> None:
    """Forget a key whose first request failed before it changed anything."""
    await session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.token_id == token_id, IdempotencyRecord.key == key
        )
    )


async def prune_keys(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < before)
    )
    return result.rowcount or 0
