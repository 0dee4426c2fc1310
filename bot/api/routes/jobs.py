"""Jobs and the workspace queue over HTTP: the same JobService the chat's buttons call."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.api.models import MAX_ID, PageQuery, Strict
from bot.api.registry import Call, Registry
from core.errors import InvalidInput
from core.services.jobs import STATUS_FILTERS
from storage.models import Job, Role

StatusFilter = Literal[tuple(STATUS_FILTERS)]  # type: ignore[valid-type]


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    status: str
    priority: int
    payload: dict[str, Any]
    run_at: datetime
    attempts: int
    max_attempts: int
    requires_approval: bool
    cancel_requested: bool
    last_error: str | None
    result: dict[str, Any] | None
    created_by: int | None
    approved_by: int | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobList(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


class JobQuery(PageQuery):
    status: StatusFilter = Field("active", description="Like /jobs in chat.")  # type: ignore[valid-type]
    kind: str | None = Field(None, max_length=40, pattern=r"^[A-Za-z0-9._-]+$")


class JobPath(Strict):
    job_id: int = Field(ge=1, le=MAX_ID)


class RetryAllBody(Strict):
    confirm: Literal[True] = Field(description="Must be true: retry every failed and dead job.")


class RetryAllOut(BaseModel):
    retried: int


class QueueState(BaseModel):
    paused: bool
    jobs: dict[str, int]


def job_out(job: Job) -> JobOut:
    return JobOut.model_validate(job)


def register(reg: Registry) -> None:
    @reg.route(
        "GET",
        "/jobs",
        summary="List jobs",
        tag="jobs",
        role=Role.viewer,
        response=JobList,
        query=JobQuery,
    )
    async def list_jobs(call: Call[Any, JobQuery, Any]) -> JobList:
        q = call.query
        jobs, total = await call.services.jobs.slice(
            call.actor, q.status, q.kind, q.offset, q.limit
        )
        return JobList(
            items=[job_out(j) for j in jobs], total=total, limit=q.limit, offset=q.offset
        )

    @reg.route(
        "GET",
        "/jobs/{job_id:\\d+}",
        summary="Get a job",
        tag="jobs",
        role=Role.viewer,
        response=JobOut,
        path_params=JobPath,
    )
    async def get_job(call: Call[JobPath, Any, Any]) -> JobOut:
        return job_out(await call.services.jobs.get(call.actor, call.path.job_id))

    def steer(name: str, summary: str) -> None:
        async def handler(call: Call[JobPath, Any, Any]) -> JobOut:
            return job_out(await getattr(call.services.jobs, name)(call.actor, call.path.job_id))

        handler.__name__ = f"{name}_job"
        reg.route(
            "POST",
            f"/jobs/{{job_id:\\d+}}/{name}",
            summary=summary,
            tag="jobs",
            role=Role.operator,
            response=JobOut,
            path_params=JobPath,
        )(handler)

    steer("approve", "Approve a job waiting for approval")
    steer("reject", "Reject a job waiting for approval")
    steer("retry", "Retry a failed or dead job now")
    steer("cancel", "Cancel a job (a running one is asked to stop)")

    @reg.route(
        "POST",
        "/jobs/retry-all",
        summary="Retry every failed and dead job",
        tag="jobs",
        role=Role.operator,
        response=RetryAllOut,
        body=RetryAllBody,
    )
    async def retry_all_jobs(call: Call[Any, Any, RetryAllBody]) -> RetryAllOut:
        if call.body.confirm is not True:  # the model already insists; belt and braces
            raise InvalidInput("Set confirm to true to retry every failed and dead job.")
        return RetryAllOut(retried=await call.services.jobs.retry_all(call.actor))

    @reg.route(
        "GET",
        "/queue",
        summary="The queue's state",
        tag="jobs",
        role=Role.viewer,
        response=QueueState,
    )
    async def queue_state(call: Call[Any, Any, Any]) -> QueueState:
        return await _queue(call)

    @reg.route(
        "POST",
        "/queue/pause",
        summary="Pause the workspace's queue",
        tag="jobs",
        role=Role.operator,
        response=QueueState,
    )
    async def pause_queue(call: Call[Any, Any, Any]) -> QueueState:
        await call.services.jobs.set_paused(call.actor, True)
        return await _queue(call)

    @reg.route(
        "POST",
        "/queue/resume",
        summary="Resume the workspace's queue",
        tag="jobs",
        role=Role.operator,
        response=QueueState,
    )
    async def resume_queue(call: Call[Any, Any, Any]) -> QueueState:
        await call.services.jobs.set_paused(call.actor, False)
        return await _queue(call)


async def _queue(call: Call[Any, Any, Any]) -> QueueState:
    jobs = call.services.jobs
    return QueueState(paused=await jobs.is_paused(call.actor), jobs=await jobs.counts(call.actor))
