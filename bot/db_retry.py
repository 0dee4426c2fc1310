"""An update whose database connection was lost mid-statement is handled again.

A PostgreSQL connection can go away under a running update (a server restart or failover,
`pg_terminate_backend`, a network cut). The pool's pre-ping replaces dead idle connections
before they are used, but a statement already in flight fails, and the operator would get
"Something went wrong". `ConnectionLossRetry` (an outer middleware on `update`, outside the
unit-of-work middleware, so every try gets a fresh session) handles such an update again — but
only while nothing of it reached Telegram yet (`SentTracker` on the Bot session counts the
update's calls), so a retry never answers twice. What the failed try wrote was rolled back with
its connection, or committed and then found again by the retry (the handlers' writes are
idempotent for the same update: the same tz, the same file, the same claim).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from aiogram import BaseMiddleware
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response
from aiogram.types import TelegramObject, Update

from storage.db import is_connection_lost

log = logging.getLogger(__name__)

# Bot API calls made while handling the current update (None outside an update).
_CALLS: ContextVar[list[int] | None] = ContextVar("opsdeck_update_calls", default=None)


class ConnectionLossRetry(BaseMiddleware):
    def __init__(self, tries: int = 3) -> None:
        self.tries = tries
        self.retried = 0  # for tests and metrics

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        for attempt in range(1, self.tries + 1):
            calls = [0]
            token = _CALLS.set(calls)
            try:
                return await handler(event, data)
            except Exception as exc:
                if attempt == self.tries or calls[0] or not is_connection_lost(exc):
                    raise
                self.retried += 1
                log.warning(
                    "update %s: database connection lost before anything was answered; "
                    "handling it again (try %d of %d)",
                    event.update_id if isinstance(event, Update) else "?",
                    attempt + 1,
                    self.tries,
                )
                await asyncio.sleep(0.05 * attempt)
            finally:
                _CALLS.reset(token)
        return None  # pragma: no cover - the loop returns or raises


class SentTracker(BaseRequestMiddleware):
    """Bot session middleware: counts the current update's calls that may change a chat."""

    async def __call__(
        self, make_request: NextRequestMiddlewareType[Any], bot: Any, method: TelegramMethod[Any]
    ) -> Response[Any]:
        calls = _CALLS.get()
        if calls is not None and not method.__api_method__.startswith("get"):
            calls[0] += 1
        return await make_request(bot, method)
