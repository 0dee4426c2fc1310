"""Recording and reading the audit log."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.actor import Actor
from core.clock import Clock
from storage.models import AuditEntry, Role
from storage.repositories import audit as audit_repo
from storage.uow import UnitOfWork


async def record(
    session: AsyncSession,
    clock: Clock,
    *,
    tenant_id: int,
    actor: Actor | None,
    action: str,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit row in the caller's transaction (it lands with the change it describes).

    A change made through an API token names the token beside its creator (`actor_id`)."""
    if actor is not None and actor.token_id is not None:
        details = {**(details or {}), "via": "api", "token_id": actor.token_id}
    await audit_repo.add(
        session,
        tenant_id=tenant_id,
        actor_id=actor.user_id if actor else None,
        action=action,
        target=target,
        details=details,
        at=clock.now(),
    )


class AuditService:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def latest(self, actor: Actor, limit: int = 20, offset: int = 0) -> list[AuditEntry]:
        """The newest entries of the actor's workspace; owners only."""
        actor.require(Role.owner, "read the audit log")
        async with self.uow.read() as session:
            return await audit_repo.latest(session, actor.tenant_id, limit, offset)
