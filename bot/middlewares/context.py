"""One session per update, the acting operator resolved from it, deny by default."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import Message, TelegramObject, Update, User
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.fsm_storage import UPDATE_SESSION
from core.services.container import ServiceFactory

log = logging.getLogger(__name__)

STRANGER_TEXT = (
    "This is a private operations bot. If you were given a file link, open it again; "
    "otherwise ask an owner to add you. Your Telegram id is {user_id}."
)
STRANGER_REPLY_EVERY = 60.0  # seconds: a flood from one stranger gets one answer a minute


class ContextMiddleware(BaseMiddleware):
    """Outer middleware on `update`: opens the unit of work and injects `services` and `actor`.

    Strangers (no operator row) reach only `/start` (which also carries claim deep links);
    everything else gets a short refusal, rate-limited per user so a flood costs nothing.
    """

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], factory: ServiceFactory
    ) -> None:
        self.sessionmaker = sessionmaker
        self.factory = factory
        self._last_refusal: dict[int, float] = {}

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or user.is_bot:
            return None
        async with self.sessionmaker() as session:
            services = self.factory.bind(session)
            actor = await services.operators.resolve(user.id)
            if actor is not None:
                await services.operators.remember_name(actor, user.full_name)
            # End the transaction that resolved the operator before anything talks to Telegram.
            # On SQLite every transaction begins IMMEDIATE (storage/db.py), so leaving it open
            # across the refusal or the handler's Bot API calls held the database write lock
            # for whole HTTP round trips: updates, and the job engine, ran one at a time behind
            # it. The session stays this update's only one; its next query begins afresh.
            # One exception: a stranger's deep link (`/start <payload>`) is a claim, whose
            # handler ends the transaction itself before any direct Bot API call (it queues its
            # answers in the outbox). Resolving wrote nothing, so the claim continues this
            # transaction: one write-lock round per claim instead of two under a claim storm.
            if actor is not None or not _is_deep_link(event):
                await session.commit()
            if actor is None and not _open_to_strangers(event):
                await self._refuse(event, user)
                return None
            data["session"] = session
            data["services"] = services
            data["actor"] = actor
            # Guided-flow state written during this update joins this session (one unit of
            # work, one connection): a second connection would wait on this one's write lock.
            token = UPDATE_SESSION.set(session)
            try:
                result = await handler(event, data)
                await session.commit()
                return result
            finally:
                UPDATE_SESSION.reset(token)

    async def _refuse(self, event: TelegramObject, user: User) -> None:
        assert isinstance(event, Update)
        if event.callback_query is not None:
            await event.callback_query.answer(
                "You are not allowed to use this bot.", show_alert=True
            )
            return
        now = time.monotonic()
        if now - self._last_refusal.get(user.id, -1e9) < STRANGER_REPLY_EVERY:
            return
        self._last_refusal[user.id] = now
        if len(self._last_refusal) > 10_000:  # bound memory under a flood of distinct strangers
            cutoff = now - STRANGER_REPLY_EVERY
            self._last_refusal = {k: v for k, v in self._last_refusal.items() if v >= cutoff}
        message = event.message
        if isinstance(message, Message) and message.chat.type == "private":
            await message.answer(STRANGER_TEXT.format(user_id=user.id))


def _open_to_strangers(event: TelegramObject) -> bool:
    if not isinstance(event, Update) or event.message is None:
        return False
    text = event.message.text or ""
    return text == "/start" or text.startswith("/start ")


def _is_deep_link(event: TelegramObject) -> bool:
    if not isinstance(event, Update) or event.message is None:
        return False
    # what CommandStart(deep_link=True) takes: "/start" and a non-blank payload
    parts = (event.message.text or "").split(maxsplit=1)
    return len(parts) == 2 and parts[0] == "/start"
