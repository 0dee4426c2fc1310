"""The acting operator of each update, resolved in one lock-free read; deny by default."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.fsm.middleware import FSMContextMiddleware
from aiogram.types import Message, TelegramObject, Update, User

from bot.flood import StrangerReplies
from bot.fsm_storage import UPDATE_STATES, DatabaseStorage
from core.services.container import Services
from core.services.operators import to_actor
from storage.identity import IdentityReader
from storage.repositories import fsm as fsm_repo

log = logging.getLogger(__name__)

STRANGER_TEXT = (
    "This is a private operations bot. If you were given a file link, open it again; "
    "otherwise ask an owner to add you. Your Telegram id is {user_id}."
)
REMOVED_TEXT = (
    "You are no longer an operator of this bot: an owner removed you, so the step you were "
    "in was dropped. Ask an owner if that is a mistake."
)


class ContextMiddleware(BaseMiddleware):
    """Outer middleware on `update`: injects `services` and `actor`. It opens no session:
    the services read and write through the unit of work, one short transaction each.

    Strangers (no operator row) reach only `/start` (which also carries claim deep links);
    everything else gets a short refusal, rate-limited per user so a flood costs nothing.
    """

    def __init__(
        self,
        services: Services,
        identities: IdentityReader,
    ) -> None:
        self.services = services
        self.identities = identities
        self.fsm: FSMContextMiddleware | None = None  # set by build_dispatcher
        self.stranger_replies = StrangerReplies()

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or user.is_bot:
            return None
        # Operator and guided-flow state in one lock-free read (storage/identity.py); aiogram's
        # FSM middleware runs after this one and takes the state from UPDATE_STATES.
        fsm_key = self._fsm_key(data)
        identity = await self.identities.read(user.id, fsm_key)
        actor = to_actor(identity.operator) if identity.operator is not None else None
        state = identity.state
        if actor is None and state is not None:
            # an operator removed mid-flow (their flow outlived the removal): drop it; say why,
            # unless this is a /start (a claim goes ahead as any stranger's would)
            await self._forget_flow(fsm_key)
            state = None
            if not _open_to_strangers(event):
                await self._refuse(event, user, REMOVED_TEXT)
                return None
        if actor is None and not _open_to_strangers(event):
            await self._refuse(event, user)
            return None
        data["stranger_replies"] = self.stranger_replies
        if actor is not None:
            await self.services.operators.remember_name(actor, user.full_name)
        data["services"] = self.services
        data["actor"] = actor
        states = UPDATE_STATES.set({fsm_key: state} if fsm_key else {})
        try:
            return await handler(event, data)
        finally:
            UPDATE_STATES.reset(states)

    def _fsm_key(self, data: dict[str, Any]) -> str | None:
        if self.fsm is None:
            return None
        context = self.fsm.resolve_event_context(data["bot"], data)
        if context is None:
            return None
        storage = context.storage
        if not isinstance(storage, DatabaseStorage):
            return None
        return storage.key_builder.build(context.key)

    async def _refuse(self, event: TelegramObject, user: User, text: str = STRANGER_TEXT) -> None:
        assert isinstance(event, Update)
        if event.callback_query is not None:
            await event.callback_query.answer(
                "You are not allowed to use this bot.", show_alert=True
            )
            return
        if not self.stranger_replies.allow(user.id):
            return
        message = event.message
        if isinstance(message, Message) and message.chat.type == "private":
            await message.answer(text.format(user_id=user.id), parse_mode=None)

    async def _forget_flow(self, fsm_key: str | None) -> None:
        if fsm_key is not None:
            async with self.services.uow.write() as session:
                await fsm_repo.forget(session, fsm_key)


def _open_to_strangers(event: TelegramObject) -> bool:
    if not isinstance(event, Update) or event.message is None:
        return False
    text = event.message.text or ""
    return text == "/start" or text.startswith("/start ")
