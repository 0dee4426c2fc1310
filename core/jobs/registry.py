"""Job kinds: a name mapped to a plain `async def handler(ctx) -> dict | None`, and what the
kind does when an operator steers one of its jobs.

Steering (one path per state change). Operators approve, reject and cancel jobs through
`JobService` only, whether they press the generic job card (/jobs) or a feature's own button
(a post's Approve). A kind whose jobs stand for rows of its own (a `reddit.submit` job for a
post) registers `Steering` hooks, and `JobService` calls the matching hook *inside the same
`uow.write()`* that moved the job row, right after that conditional UPDATE succeeded:

* the hook gets a `Steer`: the write `session`, the `job` as it is after the move, the
  `actor`, the `action` ("approve", "reject" or "cancel") and `now`;
* it moves its own rows on `steer.session` (conditional UPDATEs, never a commit), may add its
  own audit rows and `uow.after_commit` hooks, and never talks to a network peer (it runs
  inside the write transaction; `storage.txguard` fails that in the tests);
* raising (an `OpsdeckError` such as `Conflict` for the operator to read) rolls the whole
  operation back, the job row included: both move or neither does;
* a feature's own entry point calls `JobService.approve/reject/cancel(actor, job.id)` instead
  of moving the job row itself; inside a caller's `uow.write()` that call joins it.

"cancel" is called when a waiting job is cancelled; a running job only gets
`cancel_requested`, which its handler sees (no hook). A kind without steering needs none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from core.errors import OpsdeckError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from core.actor import Actor
    from core.jobs.context import JobContext
    from storage.models import Job

JobHandler = Callable[["JobContext"], Awaitable[dict[str, Any] | None]]
SteerAction = Literal["approve", "reject", "cancel"]


class RetryLater(OpsdeckError):
    """Raised by a handler: run again after `seconds`; not a failure, the attempt is not counted."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason, seconds=seconds)
        self.seconds = seconds


class PermanentFailure(OpsdeckError):
    """Raised by a handler: retrying cannot help; the job goes straight to dead."""


@dataclass(frozen=True, slots=True)
class Steer:
    """One operator's approve/reject/cancel of one job, as its kind's hook sees it."""

    session: AsyncSession  # the write transaction the job row moved in
    job: Job  # the row after the move
    actor: Actor
    action: SteerAction
    now: datetime


SteerHook = Callable[[Steer], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Steering:
    """A kind's own part of approve/reject/cancel (see the module doc)."""

    approve: SteerHook | None = None
    reject: SteerHook | None = None
    cancel: SteerHook | None = None

    def hook(self, action: SteerAction) -> SteerHook | None:
        return getattr(self, action)


NO_STEERING = Steering()


@dataclass(frozen=True, slots=True)
class JobKind:
    name: str
    handler: JobHandler
    description: str = ""
    max_attempts: int | None = None
    timeout_seconds: float | None = None
    steering: Steering = NO_STEERING


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
        steering: Steering | None = None,
    ) -> None:
        if name in self.kinds:
            raise ValueError(f"job kind {name!r} registered twice")
        self.kinds[name] = JobKind(
            name, handler, description, max_attempts, timeout_seconds, steering or NO_STEERING
        )

    def get(self, name: str) -> JobKind | None:
        return self.kinds.get(name)

    def steering(self, name: str) -> Steering:
        kind = self.kinds.get(name)
        return kind.steering if kind is not None else NO_STEERING

    def __contains__(self, name: object) -> bool:
        return name in self.kinds
