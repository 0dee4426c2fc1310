"""Core's Notifier, spoken in Telegram: job cards and plain messages to a workspace's operators.

With an `Outbox` the messages are queued durably and sent paced by the outbox Sender (429s,
retries and blocked chats are handled there); without one they are sent directly.
"""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import InlineKeyboardMarkup
from sqlalchemy.ext.asyncio import AsyncSession

from bot.outbox import Outbox
from bot.render.jobs import job_buttons, job_card
from core.clock import Clock
from core.services.operators import to_actor
from storage.repositories import jobs as job_repo
from storage.repositories import operators as op_repo
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

HEADLINES = {
    "dead": "💀 A job died and needs a look:",
    "approval": "✋ A job waits for approval:",
}


class TelegramNotifier:
    def __init__(
        self,
        bot: Bot,
        uow: UnitOfWork,
        clock: Clock,
        outbox: Outbox | None = None,
    ) -> None:
        self.bot = bot
        self.uow = uow
        self.clock = clock
        self.outbox = outbox

    async def job_needs_attention(self, tenant_id: int, job_id: int, reason: str) -> None:
        async with self.uow.read() as session:
            job = await job_repo.get(session, job_id, tenant_id)
            operators = await op_repo.to_notify(session, tenant_id)
        if job is None:
            return
        now = self.clock.now()
        for op in operators:
            actor = to_actor(op)
            text = f"{HEADLINES.get(reason, 'Job update:')}\n\n{job_card(job, actor, now)}"
            await self._send(op.telegram_user_id, text, job_buttons(job, actor), tenant_id)

    async def tell_operators(self, tenant_id: int, text: str) -> None:
        async with self.uow.read() as session:
            operators = await op_repo.to_notify(session, tenant_id)
        for op in operators:
            # Core speaks plain text (post titles, Reddit messages): no parse mode, so a "<" or
            # "&" in them is shown as written instead of failing the send.
            await self._send(op.telegram_user_id, text, None, tenant_id, plain=True)

    async def tell_operators_once(
        self, session: AsyncSession, tenant_id: int, text: str, dedupe_key: str
    ) -> None:
        """`tell_operators` in `session`'s transaction, at most once per `dedupe_key` and
        operator (a repeated cause — a thousand claims of one broken file — is one message)."""
        if self.outbox is None:
            raise RuntimeError("tell_operators_once needs the outbox")
        for op in await op_repo.to_notify(session, tenant_id):
            await self.outbox.send_message(
                op.telegram_user_id,
                text,
                parse_mode=None,
                tenant_id=tenant_id,
                session=session,
                dedupe_key=f"{dedupe_key}:{op.telegram_user_id}",
            )

    async def _send(
        self,
        chat_id: int,
        text: str,
        markup: InlineKeyboardMarkup | None,
        tenant_id: int,
        *,
        plain: bool = False,
    ) -> None:
        extra = {"parse_mode": None} if plain else {}
        if self.outbox is not None:
            await self.outbox.send_message(
                chat_id, text, reply_markup=markup, tenant_id=tenant_id, **extra
            )
            return
        try:
            await self.bot.send_message(chat_id, text, reply_markup=markup, **extra)
        except TelegramAPIError as exc:  # blocked the bot, never started it, …
            log.warning("notification to %s not delivered: %s", chat_id, exc)
