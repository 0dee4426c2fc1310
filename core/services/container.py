"""Builds the session-bound services for one unit of work (an update, a CLI command)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import Clock
from core.notifier import Notifier
from core.services.audit import AuditService
from core.services.jobs import JobService
from core.services.operators import OperatorService
from storage.uow import UnitOfWork

if TYPE_CHECKING:
    from core.jobs.engine import JobEngine


class _Built(dict[str, Any]):
    """Feature services, each built on first use: most updates need none of them."""

    def __init__(self, builders: dict[str, Any], session: AsyncSession, factory: Any) -> None:
        super().__init__()
        self._builders, self._session, self._factory = builders, session, factory

    def __missing__(self, name: str) -> Any:
        service = self[name] = self._builders[name](self._session, self._factory)
        return service


@dataclass
class Services:
    session: AsyncSession
    uow: UnitOfWork
    operators: OperatorService
    jobs: JobService
    audit: AuditService
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServiceFactory:
    """Long-lived dependencies; `bind(session)` makes the per-unit-of-work services."""

    sessionmaker: async_sessionmaker[AsyncSession]
    clock: Clock
    notifier: Notifier
    owner_ids: frozenset[int]
    uow: UnitOfWork  # services move onto this (DESIGN §9); the per-update session goes then
    engine: JobEngine | None = None
    # name -> callable(session, factory) for feature services added by later modules
    builders: dict[str, Any] = field(default_factory=dict)

    def bind(self, session: AsyncSession) -> Services:
        # converted services write through the update's session while it exists: a second
        # connection would queue behind its transaction (storage.uow.SessionBound)
        uow = self.uow.over(session)
        return Services(
            session=session,
            uow=uow,
            operators=OperatorService(uow, self.clock, self.owner_ids),
            jobs=JobService(uow, self.clock, self.notifier, self.engine),
            audit=AuditService(uow),
            extra=_Built(self.builders, session, self),
        )
