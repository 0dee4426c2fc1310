"""Outgoing Bot API calls: wait out 429 `retry_after` and retry transient server errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramRetryAfter, TelegramServerError
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response

log = logging.getLogger(__name__)

# Methods that change nothing or are safe to repeat after a 5xx (a 5xx send may have landed).
_IDEMPOTENT_PREFIXES = ("get", "set", "delete", "answer", "edit")


class RetryMiddleware(BaseRequestMiddleware):
    def __init__(self, max_retries: int = 5, max_wait: float = 120.0) -> None:
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.retry_after_count = 0  # for metrics

    async def __call__(
        self, make_request: NextRequestMiddlewareType[Any], bot: Any, method: TelegramMethod[Any]
    ) -> Response[Any]:
        attempt = 0
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                attempt += 1
                self.retry_after_count += 1
                if attempt > self.max_retries or exc.retry_after > self.max_wait:
                    raise
                log.warning(
                    "Telegram 429 on %s: waiting %ss", method.__api_method__, exc.retry_after
                )
                await asyncio.sleep(exc.retry_after)
            except TelegramServerError:
                attempt += 1
                name = method.__api_method__.lower()
                if attempt > 3 or not name.startswith(_IDEMPOTENT_PREFIXES):
                    raise
                await asyncio.sleep(0.5 * 2**attempt)
