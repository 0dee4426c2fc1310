"""The Bot API side of storage.txguard: every call to Telegram is checked before it is sent."""

from __future__ import annotations

from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response

from storage import txguard


class TransactionGuard(BaseRequestMiddleware):
    """A Bot session middleware: no Telegram call while the task holds a transaction."""

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[Any],
        bot: Bot,
        method: TelegramMethod[Any],
    ) -> Response[Any]:
        txguard.check(f"Telegram ({type(method).__name__})")
        return await make_request(bot, method)
