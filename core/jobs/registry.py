"""Job kinds: a name mapped to a plain `async def handler(ctx) -> dict | None`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import OpsdeckError

if TYPE_CHECKING:
    from core.jobs.context import JobContext

JobHandler = Callable[["JobContext"], Awaitable[dict[str, Any] | None]]


class RetryLater(OpsdeckError):
    """Raised by a handler: run again after `seconds`; not a failure, the attempt is not counted."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason, seconds=seconds)
        self.seconds = seconds


class PermanentFailure(OpsdeckError):
    """Raised by a handler: retrying cannot help; the job goes straight to dead."""


@dataclass(frozen=True, slots=True)
class JobKind:
    name: str
    handler: JobHandler
    description: str = ""
    max_attempts: int | None = None
    timeout_seconds: float | None = None


@dataclass
class JobRegistry:
    kinds: dict[str, JobKind] = field(default_factory=dict)

    def register(
        self,
        name: str,
        handler: JobHandler,
        *,
        description: str = "",
        max_attempts: int | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        if name in self.kinds:
            raise ValueError(f"job kind {name!r} registered twice")
        self.kinds[name] = JobKind(name, handler, description, max_attempts, timeout_seconds)

    def get(self, name: str) -> JobKind | None:
        return self.kinds.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.kinds
