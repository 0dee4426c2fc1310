"""/tokens (owners): API tokens for scripts — create (shown once), list, revoke."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.callbacks import TokenAct
from bot.render.common import keyboard
from bot.render.tokens import USAGE, created_text, token_list
from core.actor import Actor
from core.errors import Conflict, InvalidInput
from core.services.api_tokens import ApiTokenService, parse_lifetime, parse_role
from core.settings import Settings
from storage.models import Role


async def _edit(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> None:
    if query.message is None:
        return
    try:
        await query.message.edit_text(text, reply_markup=markup)
    except TelegramBadRequest as exc:
        if "not modified" not in exc.message:
            raise


async def tokens_command(
    message: Message,
    command: CommandObject,
    actor: Actor,
    api_tokens: ApiTokenService,
    settings: Settings,
) -> None:
    actor.require(Role.owner, "manage API tokens")
    args = (command.args or "").split()
    if not args:
        text, markup = token_list(
            await api_tokens.list(actor), api_tokens.clock.now(), actor.timezone
        )
        await message.answer(text, reply_markup=markup)
        return
    if args[0].lower() != "new" or not 3 <= len(args) <= 4:
        raise InvalidInput(USAGE)
    lifetime = parse_lifetime(args[3]) if len(args) == 4 else None
    created = await api_tokens.create(actor, args[1], parse_role(args[2]), lifetime)
    await message.answer(
        created_text(created.token, created.secret, settings.public_base_url, actor.timezone),
        protect_content=True,
    )


async def ask_revoke(
    query: CallbackQuery, callback_data: TokenAct, actor: Actor, api_tokens: ApiTokenService
) -> None:
    actor.require(Role.owner, "revoke API tokens")
    token = next((t for t in await api_tokens.list(actor) if t.id == callback_data.id), None)
    if token is None or token.revoked_at is not None:
        await query.answer("This token is already revoked or gone.", show_alert=True)
        return
    await query.answer()
    await _edit(
        query,
        f"Revoke API token <b>{token.name}</b>? Scripts using it stop at once.",
        keyboard(
            [
                [
                    ("Yes, revoke", TokenAct(act="revoke", id=token.id).pack()),
                    ("No", TokenAct(act="keep", id=token.id).pack()),
                ]
            ]
        ),
    )


async def revoke(
    query: CallbackQuery, callback_data: TokenAct, actor: Actor, api_tokens: ApiTokenService
) -> None:
    try:
        token = await api_tokens.revoke(actor, callback_data.id)
        await query.answer(f"Token {token.name} revoked.")
    except Conflict as exc:
        await query.answer(exc.message, show_alert=True)
    await _show_list(query, actor, api_tokens)


async def keep(
    query: CallbackQuery, callback_data: TokenAct, actor: Actor, api_tokens: ApiTokenService
) -> None:
    await query.answer("Nothing revoked.")
    await _show_list(query, actor, api_tokens)


async def _show_list(query: CallbackQuery, actor: Actor, api_tokens: ApiTokenService) -> None:
    text, markup = token_list(await api_tokens.list(actor), api_tokens.clock.now(), actor.timezone)
    await _edit(query, text, markup)


def build_router() -> Router:
    router = Router(name="tokens")
    router.message.register(tokens_command, Command("tokens"))
    router.callback_query.register(ask_revoke, TokenAct.filter(F.act == "ask"))
    router.callback_query.register(revoke, TokenAct.filter(F.act == "revoke"))
    router.callback_query.register(keep, TokenAct.filter(F.act == "keep"))
    return router
