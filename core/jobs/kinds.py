"""Every job kind the process can run, and the periodic schedules that enqueue them."""

from __future__ import annotations

from collections.abc import Callable

from core.jobs.engine import PeriodicSpec
from core.jobs.maintenance import PRUNE_KIND, prune
from core.jobs.registry import JobRegistry
from core.settings import Settings

Registrar = Callable[[JobRegistry], None]


def build_registry(*registrars: Registrar) -> JobRegistry:
    registry = JobRegistry()
    registry.register(PRUNE_KIND, prune, description="prune finished jobs and old audit rows")
    for register in registrars:
        register(registry)
    return registry


def periodic_specs(settings: Settings) -> list[PeriodicSpec]:
    jobs = settings.jobs
    return [
        PeriodicSpec(
            name="prune",
            kind=PRUNE_KIND,
            seconds=jobs.maintenance_interval_seconds,
            payload={"job_days": jobs.retention_days, "audit_days": jobs.audit_retention_days},
        )
    ]
