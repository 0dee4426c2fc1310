"""Prometheus metrics for one app instance, served at `GET /metrics`.

Every `Metrics` owns its own `CollectorRegistry` (never the process-global default), so
several apps in one process — the test suite — don't clash. What is cheap to count as it
happens is counted (updates, handler latency, job runs); what lives in the database (jobs by
status, claims by outcome) is read with one grouped query per scrape, so every process behind
a load balancer reports the same, true numbers.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import TelegramObject, Update
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from bot import log_context
from core.jobs.registry import JobRegistry
from storage.models import Job
from storage.uow import UnitOfWork
from storage.vault_models import VaultClaim

if TYPE_CHECKING:
    from core.reddit import RateBudgetRegistry

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)


class Metrics:
    """The registry and the instruments of one app; `refresh()` before each exposition."""

    def __init__(
        self,
        uow: UnitOfWork,
        *,
        version: str,
        retry_after_sources: Iterable[object] = (),
        budgets: RateBudgetRegistry | None = None,
    ) -> None:
        self.uow = uow
        self.registry = CollectorRegistry(auto_describe=True)
        self.updates = Counter(
            "opsdeck_updates",
            "Telegram updates handled, by update type and outcome",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.update_seconds = Histogram(
            "opsdeck_update_handling_seconds",
            "Time from receiving an update to the end of its handler",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.job_seconds = Histogram(
            "opsdeck_job_duration_seconds",
            "Job run time, by kind and the status the run ended in",
            ["kind", "status"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.info = Gauge(
            "opsdeck_build_info",
            "Always 1; the running version",
            ["version"],
            registry=self.registry,
        )
        self.info.labels(version=version).set(1)
        self.started = Gauge(
            "opsdeck_start_time_seconds", "Unix time the app started", registry=self.registry
        )
        self.started.set(time.time())
        self._db = _DatabaseCollector()
        self.registry.register(self._db)
        self.registry.register(_LiveCollector(list(retry_after_sources), budgets))

    # -- hooks -----------------------------------------------------------------------------
    def observe_job(self, kind: str, status: str, seconds: float) -> None:
        """A `JobEngine` listener."""
        self.job_seconds.labels(kind=kind, status=status).observe(seconds)

    def middleware(self) -> UpdateObserver:
        return UpdateObserver(self)

    # -- exposition ----------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Read the numbers that live in the database: one grouped query each."""
        async with self.uow.read() as session:
            jobs = await session.execute(select(Job.status, func.count()).group_by(Job.status))
            self._db.jobs = {status: n for status, n in jobs.all()}
            claims = await session.execute(
                select(VaultClaim.outcome, func.count()).group_by(VaultClaim.outcome)
            )
            self._db.claims = {outcome: n for outcome, n in claims.all()}

    async def render(self) -> bytes:
        try:
            await self.refresh()
        except Exception:  # a scrape still shows the in-process numbers
            log.exception("metrics: could not read the database")
        return generate_latest(self.registry)

    async def handle(self, _: web.Request) -> web.Response:
        body = await self.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class _DatabaseCollector(Collector):
    JOB_STATUSES = ("pending_approval", "queued", "running", "succeeded", "failed", "dead")

    def __init__(self) -> None:
        self.jobs: dict[str, int] = {}
        self.claims: dict[str, int] = {}

    def collect(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily(
            "opsdeck_jobs", "Jobs in the database, by status", labels=["status"]
        )
        for status in sorted({*self.JOB_STATUSES, "cancelled", *self.jobs}):
            jobs.add_metric([status], self.jobs.get(status, 0))
        yield jobs
        claims = CounterMetricFamily(
            "opsdeck_vault_claims",
            "Access log rows by outcome (delivered, redelivered, denied:…, undelivered:…)",
            labels=["outcome"],
        )
        for outcome, n in sorted(self.claims.items()):
            claims.add_metric([outcome], n)
        yield claims


class _LiveCollector(Collector):
    def __init__(
        self, retry_after_sources: list[object], budgets: RateBudgetRegistry | None
    ) -> None:
        # anything with a `retry_after_count`: the RetryMiddleware, the outbox sender
        self.retry_after_sources = retry_after_sources
        self.budgets = budgets

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "opsdeck_telegram_retry_after",
            "HTTP 429 (retry_after) answers from the Telegram Bot API",
            value=sum(getattr(s, "retry_after_count", 0) for s in self.retry_after_sources),
        )
        remaining = GaugeMetricFamily(
            "opsdeck_reddit_rate_remaining",
            "Reddit requests left in the current window, per OAuth client id (as Reddit said)",
            labels=["client_id"],
        )
        throttled = CounterMetricFamily(
            "opsdeck_reddit_throttled",
            "Reddit 429 answers, per OAuth client id",
            labels=["client_id"],
        )
        for budget in self.budgets.all() if self.budgets is not None else []:
            snap = budget.snapshot()
            if snap["remaining"] is not None:
                remaining.add_metric([str(snap["client_id"])], float(snap["remaining"]))
            throttled.add_metric([str(snap["client_id"])], float(snap["throttled"] or 0))
        yield remaining
        yield throttled


class UpdateObserver(BaseMiddleware):
    """Outer `update` middleware, first in line: log context, outcome counter and latency."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        kind = (event.event_type if isinstance(event, Update) else None) or "unknown"
        update_id = event.update_id if isinstance(event, Update) else None
        outcome = "error"
        started = time.perf_counter()
        with log_context.bind(update_id=update_id):
            try:
                result = await handler(event, data)
                outcome = "unhandled" if result is UNHANDLED else "handled"
                return result
            finally:
                self.metrics.updates.labels(type=kind, outcome=outcome).inc()
                self.metrics.update_seconds.labels(type=kind).observe(time.perf_counter() - started)


def bind_job_context(registry: JobRegistry) -> None:
    """Wrap every job handler so what it logs carries `job_id` and `job_kind`."""
    for name, kind in list(registry.kinds.items()):
        registry.kinds[name] = dataclasses.replace(kind, handler=_with_context(kind.handler))


def _with_context(handler: Any) -> Any:
    async def run(ctx: Any) -> Any:
        with log_context.bind(fresh=True, job_id=ctx.job_id, job_kind=ctx.kind):
            return await handler(ctx)

    return run
