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

if TYPE_CHECKING:
    from core.jobs.engine import JobEngine


@dataclass
class Services:
    session: AsyncSession
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
    engine: JobEngine | None = None
    # name -> callable(session, factory) for feature services added by later modules
    builders: dict[str, Any] = field(default_factory=dict)

    def bind(self, session: AsyncSession) -> Services:
        services = Services(
            session=session,
            operators=OperatorService(session, self.clock, self.owner_ids),
            jobs=JobService(session, self.clock, self.notifier, self.engine),
            audit=AuditService(session),
        )
        for name, build in self.builders.items():
            services.extra[name] = build(session, self)
        return services
