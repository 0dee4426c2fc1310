"""Which update or job a log line belongs to: contextvars copied onto every log record.

`bind(update_id=…)` / `bind(job_id=…, job_kind=…)` set the context for the current task (and
the tasks it starts); `ContextFilter`, installed on the log handler by `setup_logging`, copies
it onto each record so the plain and JSON formats can show it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

FIELDS = ("update_id", "job_id", "job_kind")

_context: ContextVar[dict[str, Any] | None] = ContextVar("opsdeck_log_context", default=None)


@contextlib.contextmanager
def bind(*, fresh: bool = False, **values: Any) -> Iterator[None]:
    """Add `values` to the log context for the duration of the block; `fresh` drops what was
    bound before (a job started while an update was handled is not part of that update)."""
    current = {} if fresh else _context.get() or {}
    token = _context.set({**current, **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current() -> dict[str, Any]:
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    """Puts the bound context on the record (`record.update_id`, `record.job_id`, …)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def context_suffix(record: logging.LogRecord) -> str:
    """` [update_id=5]` for the plain format; empty outside updates and jobs."""
    parts = [f"{k}={getattr(record, k)}" for k in FIELDS if getattr(record, k, None) is not None]
    return f" [{' '.join(parts)}]" if parts else ""
