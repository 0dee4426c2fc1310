"""/browse r/<sub> [hot|new|top]: read a subreddit and open a post with its top comments.
Read-only; every page is one request in the team's shared Reddit budget."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from bot.callbacks import BrowseOpen, BrowsePage
from bot.commands import EXTRA_COMMANDS
from bot.handlers.jobs import edit
from bot.render import reddit_browse as render
from core.actor import Actor
from core.reddit_ops.browse import BrowseService, parse_browse_args
from core.services.container import Services
from storage.models import Role

EXTRA_COMMANDS.append(("browse", "read a subreddit: /browse r/<sub> [hot|new|top]", Role.viewer))


def browse_of(services: Services) -> BrowseService:
    return services.reddit_browse


async def browse(
    message: Message, command: CommandObject, actor: Actor, services: Services
) -> None:
    sr, sort = parse_browse_args(command.args or "")
    page = await browse_of(services).listing(actor, sr, sort)
    text, markup = render.listing(page)
    await message.answer(text, reply_markup=markup)


async def page_button(
    query: CallbackQuery, callback_data: BrowsePage, actor: Actor, services: Services
) -> None:
    page = await browse_of(services).listing(
        actor,
        callback_data.sr,
        callback_data.sort,
        after=callback_data.after or None,
        page=callback_data.page,
    )
    await query.answer()
    await edit(query, *render.listing(page))


async def open_button(
    query: CallbackQuery, callback_data: BrowseOpen, actor: Actor, services: Services
) -> None:
    view = await browse_of(services).thread(actor, callback_data.id)
    await query.answer()
    replies = render.reply_rows(view, callback_data.sr) if actor.at_least(Role.operator) else []
    await edit(query, *render.thread(view, callback_data.sr, callback_data.sort, replies))


def build_router() -> Router:
    router = Router(name="reddit_browse")
    router.message.register(browse, Command("browse"))
    router.callback_query.register(page_button, BrowsePage.filter())
    router.callback_query.register(open_button, BrowseOpen.filter())
    return router
