"""/settings: the deployment's configuration, secrets masked (deployment owners only), and
the workspace's Reddit accounts with a login test (every workspace owner)."""

from __future__ import annotations

from typing import Literal

from aiogram import Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, Message

from bot.callbacks import Id
from bot.handlers.status import Runtime
from bot.render.common import keyboard, shorten
from bot.render.status import settings_pages, workspace_settings_text
from core.actor import Actor, is_deployment_owner
from core.services.container import Services
from core.settings import Settings
from core.settings_view import check_reddit_connection, effective_settings
from storage.models import Role
from storage.repositories import reddit as reddit_repo


class SettingsAct(CallbackData, prefix="se"):
    act: Literal["test"]
    id: Id  # a Reddit account


DEPLOYMENT_ONLY = (
    "The deployment's configuration (environment, addresses, owners) is shown only to the "
    "deployment's owners (OPSDECK_OWNER_IDS)."
)


async def settings_command(
    message: Message, actor: Actor, services: Services, settings: Settings, runtime: Runtime
) -> None:
    actor.require(Role.owner, "see the settings")
    if is_deployment_owner(actor, settings.opsdeck.owner_ids):
        sections = effective_settings(settings, actor)
    else:  # a workspace's owner: their workspace only
        sections = None
    async with services.uow.read() as session:
        accounts = await reddit_repo.list_accounts(session, actor.tenant_id)
    lines = [f"u/{a.username} · {a.status}" for a in accounts]
    buttons = (
        [
            [
                (
                    f"Test connection u/{shorten(a.username, 20)}",
                    SettingsAct(act="test", id=a.id).pack(),
                )
            ]
            for a in accounts
        ]
        if runtime.reddit_clients is not None
        else []
    )
    if sections is None:  # a workspace's owner: their workspace only
        pages = [workspace_settings_text(lines, DEPLOYMENT_ONLY)]
    else:
        pages = settings_pages(sections, lines)
    # the Test connection buttons go with the accounts, on the first message
    await message.answer(pages[0], reply_markup=keyboard(buttons))
    for page in pages[1:]:
        await message.answer(page)


async def test_connection(
    query: CallbackQuery,
    callback_data: SettingsAct,
    actor: Actor,
    services: Services,
    runtime: Runtime,
) -> None:
    actor.require(Role.owner, "test Reddit connections")
    if runtime.reddit_clients is None:
        await query.answer("Reddit is not set up in this process.", show_alert=True)
        return
    result = await check_reddit_connection(
        services.uow, actor, runtime.reddit_clients, callback_data.id
    )
    await query.answer(result, show_alert=True)


def build_router() -> Router:
    router = Router(name="settings")
    router.message.register(settings_command, Command("settings"))
    router.callback_query.register(test_connection, SettingsAct.filter())
    return router
