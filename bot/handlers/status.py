"""/status: one phone-sized message about how Opsdeck is doing, with a Refresh button."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.render.common import keyboard
from bot.render.status import WebhookHealth, status_text
from core.actor import Actor
from core.services.container import Services
from core.settings import Settings
from core.status import ProcessInfo, StatusService

log = logging.getLogger(__name__)


class StatusAct(CallbackData, prefix="st"):
    act: Literal["refresh"]


@dataclass
class Runtime:
    """What only the running process knows; the factory puts one in the dispatcher."""

    version: str
    started_at: datetime
    scheduler_running: Callable[[], bool]
    database: str
    reddit_clients: object | None = None

    def process(self) -> ProcessInfo:
        return ProcessInfo(self.version, self.started_at, self.scheduler_running(), self.database)


async def webhook_health(bot: Bot) -> WebhookHealth:
    try:
        info = await bot.get_webhook_info()
    except TelegramAPIError as exc:
        return WebhookHealth(error=exc.message)
    return WebhookHealth(
        url=info.url or "",
        pending=info.pending_update_count or 0,
        last_error=info.last_error_message,
        last_error_at=info.last_error_date,
    )


async def render(bot: Bot, actor: Actor, services: Services, runtime: Runtime, settings: Settings):
    service = StatusService(services.uow, services.jobs.clock, settings.opsdeck.owner_ids)
    report = await service.gather(actor, runtime.process())
    # the webhook is the deployment's: asked only for those who may see it
    webhook = await webhook_health(bot) if report.deployment else None
    text = status_text(report, webhook, actor.timezone)
    markup: InlineKeyboardMarkup | None = keyboard(
        [[("🔄 Refresh", StatusAct(act="refresh").pack())]]
    )
    return text, markup


async def status(
    message: Message,
    bot: Bot,
    actor: Actor,
    services: Services,
    runtime: Runtime,
    settings: Settings,
) -> None:
    text, markup = await render(bot, actor, services, runtime, settings)
    await message.answer(text, reply_markup=markup)


async def refresh(
    query: CallbackQuery,
    bot: Bot,
    actor: Actor,
    services: Services,
    runtime: Runtime,
    settings: Settings,
) -> None:
    text, markup = await render(bot, actor, services, runtime, settings)
    if query.message is not None:
        try:
            await query.message.edit_text(text, reply_markup=markup)
        except TelegramBadRequest as exc:
            if "not modified" not in exc.message:
                raise
    await query.answer("Refreshed.")


def build_router() -> Router:
    router = Router(name="status")
    router.message.register(status, Command("status"))
    router.callback_query.register(refresh, StatusAct.filter())
    return router
