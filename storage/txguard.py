"""The guard behind DESIGN.md §9: no database transaction is open while a task talks to a peer.

`watch(engine)` tracks, per asyncio task, the transactions open on that engine (autocommit
connections hold none and are not counted). Every client that talks to the network (the
aiogram session, the httpx clients, the S3 store) calls `check(peer)` before it sends.
With `OPSDECK_TX_GUARD=strict` (the test suite sets it, for every process it starts) a
violation raises `TransactionSpansNetworkCall`; otherwise it is logged once per call site.
"""

from __future__ import annotations

import asyncio
import logging
import os
import traceback
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

_open: weakref.WeakKeyDictionary[asyncio.Task, int] = weakref.WeakKeyDictionary()
# which task began each connection's transaction; kept beside the connection, not in its
# `info`, which an invalidated connection (the server went away) refuses to hand out
_began_by: weakref.WeakKeyDictionary[Connection, asyncio.Task] = weakref.WeakKeyDictionary()
_warned: set[str] = set()


class TransactionSpansNetworkCall(RuntimeError):
    """A task talked to a network peer while it held a database transaction open."""


def strict() -> bool:
    return os.environ.get("OPSDECK_TX_GUARD", "").lower() == "strict"


def _task() -> asyncio.Task | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _autocommit(conn: Connection) -> bool:
    return conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


def watch(engine: AsyncEngine) -> None:
    """Count this engine's open transactions per task (idempotent)."""
    sync = engine.sync_engine
    if getattr(sync, "_opsdeck_txguard", False):
        return
    sync._opsdeck_txguard = True  # type: ignore[attr-defined]

    @event.listens_for(sync, "begin")
    def _begin(conn: Connection) -> None:
        task = _task()
        if task is not None and not _autocommit(conn):
            _began_by[conn] = task
            _open[task] = _open.get(task, 0) + 1

    def _end(conn: Connection) -> None:
        task = _began_by.pop(conn, None)
        if task is not None and _open.get(task, 0) > 0:
            _open[task] -= 1

    event.listen(sync, "commit", _end)
    event.listen(sync, "rollback", _end)


def open_transactions() -> int:
    """Transactions the current task holds open on watched engines."""
    task = _task()
    return _open.get(task, 0) if task is not None else 0


async def httpx_hook(request: Any) -> None:
    """An httpx request event hook: `event_hooks={"request": [txguard.httpx_hook]}`."""
    check(f"{request.url.host} (HTTP {request.method})")


def s3_hook(**_: Any) -> None:
    """An aiobotocore `before-send` handler: returning None lets the request go."""
    check("S3")


def check(peer: str) -> None:
    """Call before talking to `peer`; see the module doc."""
    if not open_transactions():
        return
    message = f"a database transaction is open while talking to {peer} (DESIGN.md §9)"
    if strict():
        raise TransactionSpansNetworkCall(message)
    site = "".join(traceback.format_stack(limit=6)[:-1])
    if site not in _warned:
        _warned.add(site)
        log.warning("%s\n%s", message, site)
