"""What a job handler receives: ids from the payload plus explicit dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import Clock
from core.notifier import Notifier
from storage.uow import UnitOfWork


@dataclass(slots=True)
class JobContext:
    job_id: int
    tenant_id: int
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: Clock
    notifier: Notifier
    deps: dict[str, Any] = field(default_factory=dict)
    # short writes and lock-free reads (DESIGN §9); handlers move onto this from sessionmaker
    uow: UnitOfWork = None  # type: ignore[assignment]  # set below when not given

    def __post_init__(self) -> None:
        if self.uow is None:  # built by hand (tests): reads through the write engine
            bind = self.sessionmaker.kw["bind"]
            self.uow = UnitOfWork(bind, read_engine=bind)

    def dep(self, name: str) -> Any:
        """A named dependency registered with the engine (e.g. the Reddit service)."""
        try:
            return self.deps[name]
        except KeyError:
            raise LookupError(f"job dependency {name!r} is not registered") from None
