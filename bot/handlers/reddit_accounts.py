"""/accounts: the team's Reddit accounts — list, card, check, pause, resume, remove — and
`/accounts add`, a guided flow whose secret-carrying messages are deleted as soon as read."""

from __future__ import annotations

import logging

from aiogram import F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot.callbacks import RedditAccountAct, RedditAddKind
from bot.handlers.jobs import edit
from bot.handlers.reddit_common import CANCEL_HINT, accounts_of
from bot.progress import progress_payload
from bot.render.common import h, keyboard
from bot.render.reddit import account_card, account_list, remove_confirm
from bot.render.reddit_connect import add_intro
from core.actor import Actor
from core.errors import InvalidInput, OpsdeckError
from core.reddit_ops import BACKFILL_SUBMISSIONS, INBOX, REFRESH_STATS, AccountView
from core.reddit_ops.accounts import parse_client_id, parse_username
from core.reddit_ops.oauth import ConnectService
from core.services.container import Services
from storage.models import Role

log = logging.getLogger(__name__)

KINDS = {
    "script": "Script app (app id, secret, password)",
    "refresh_token": "Refresh token (app id, secret, token)",
    "none": "Dry run only (no credentials)",
}


class AddAccount(StatesGroup):
    username = State()
    kind = State()
    client_id = State()
    client_secret = State()
    secret = State()  # password or refresh token


async def forget_secret(message: Message) -> str:
    """Read the text, delete the message from the chat, say so; returns the text."""
    text = (message.text or "").strip()
    try:
        await message.delete()
        note = "🔒 I deleted your message with the secret from this chat."
    except TelegramAPIError as exc:
        log.info("could not delete a secret message: %s", exc)
        note = "⚠️ I could not delete your message with the secret; please delete it yourself."
    await message.answer(note)
    return text


# -- /accounts -----------------------------------------------------------------------------------


async def accounts(
    message: Message,
    command: CommandObject,
    actor: Actor,
    services: Services,
    state: FSMContext,
) -> None:
    args = (command.args or "").split()
    if args and args[0].lower() == "add":
        actor.require(Role.operator, "connect Reddit accounts")
        await state.set_state(AddAccount.username)
        await state.set_data({})
        connect: ConnectService = services.reddit_connect
        url = await connect.start(actor, message.chat.id) if connect.configured else None
        text, markup = add_intro(url, connect.public_base_url)
        await message.answer(text, reply_markup=markup)
        return
    if args:
        raise InvalidInput("Usage: /accounts — list, or /accounts add — connect one.")
    text, markup = account_list(await accounts_of(services).list(actor))
    await message.answer(text, reply_markup=markup)


async def _show(query: CallbackQuery, view: AccountView, actor: Actor) -> None:
    text, markup = account_card(view, actor)
    await edit(query, text, markup)


async def show_list(query: CallbackQuery, actor: Actor, services: Services) -> None:
    await query.answer()
    text, markup = account_list(await accounts_of(services).list(actor))
    await edit(query, text, markup)


async def show_card(
    query: CallbackQuery, callback_data: RedditAccountAct, actor: Actor, services: Services
) -> None:
    view = await accounts_of(services).get(actor, callback_data.id)
    await query.answer()
    await _show(query, view, actor)


async def check(
    query: CallbackQuery, callback_data: RedditAccountAct, actor: Actor, services: Services
) -> None:
    svc = accounts_of(services)
    await svc.check_now(actor, callback_data.id)
    view = await svc.get(actor, callback_data.id)
    await query.answer(f"Checking u/{view.username} with Reddit now.")
    await _show(query, view, actor)


async def pause(
    query: CallbackQuery, callback_data: RedditAccountAct, actor: Actor, services: Services
) -> None:
    view = await accounts_of(services).pause(actor, callback_data.id)
    await query.answer(f"u/{view.username} paused; its queued posts wait.")
    await _show(query, view, actor)


async def resume(
    query: CallbackQuery, callback_data: RedditAccountAct, actor: Actor, services: Services
) -> None:
    view = await accounts_of(services).resume(actor, callback_data.id)
    await query.answer(f"u/{view.username} is active again.")
    await _show(query, view, actor)


async def remove_asked(
    query: CallbackQuery, callback_data: RedditAccountAct, actor: Actor, services: Services
) -> None:
    actor.require(Role.owner, "remove Reddit accounts")
    view = await accounts_of(services).get(actor, callback_data.id)
    await query.answer()
    text, markup = remove_confirm(view)
    await edit(query, text, markup)


async def remove_confirmed(
    query: CallbackQuery, callback_data: RedditAccountAct, actor: Actor, services: Services
) -> None:
    svc = accounts_of(services)
    removed = await svc.remove(actor, callback_data.id)
    if removed.revoke_problem is not None:
        # the owner must know the tokens may still work on Reddit until they expire
        await query.answer(
            f"u/{removed.username} removed, but Reddit did not confirm revoking its tokens "
            f"({removed.revoke_problem[:80]}). Revoke the app's access on reddit.com/prefs/apps.",
            show_alert=True,
        )
    elif removed.had_credentials:
        await query.answer(f"u/{removed.username} removed; its tokens were revoked on Reddit.")
    else:
        await query.answer(f"u/{removed.username} removed.")
    text, markup = account_list(await svc.list(actor))
    await edit(query, text, markup)


async def start_backfill(
    query: CallbackQuery, callback_data: RedditAccountAct, actor: Actor, services: Services
) -> None:
    await _start_backfill(query, callback_data.act, callback_data.id, actor, services)


async def unknown_button(query: CallbackQuery) -> None:
    await query.answer("This button is no longer valid.", show_alert=True)


# The card's backfill buttons: job kind and what the progress message says first.
BACKFILLS = {
    "backfill": (BACKFILL_SUBMISSIONS, "history"),
    "stats": (REFRESH_STATS, "stats"),
    "inbox": (INBOX, "inbox"),
}


async def _start_backfill(
    query: CallbackQuery, act: str, account_id: int, actor: Actor, services: Services
) -> None:
    """Queue the backfill job; its progress edits one message sent here first."""
    actor.require(Role.operator, "run Reddit backfills")
    view = await accounts_of(services).get(actor, account_id)
    kind, what = BACKFILLS[act]
    if query.message is None:
        await query.answer("Open the account card again with /accounts.", show_alert=True)
        return
    note = await query.message.answer(f"u/{h(view.username)} {what}: queued…")
    payload = {"account_id": view.id, **progress_payload(note.chat.id, note.message_id)}
    job_id = await services.jobs.submit(actor.tenant_id, kind, payload, actor=actor, max_attempts=3)
    await query.answer(f"u/{view.username} {what}: job #{job_id} queued.")


# -- /accounts add ------------------------------------------------------------------------------


async def add_username(message: Message, actor: Actor, state: FSMContext) -> None:
    name = parse_username(message.text or "")
    await state.update_data(username=name)
    await state.set_state(AddAccount.kind)
    rows = [[(label, RedditAddKind(kind=kind).pack())] for kind, label in KINDS.items()]
    await message.answer(
        f"u/{h(name)}: how does Opsdeck log in?" + CANCEL_HINT, reply_markup=keyboard(rows)
    )


async def add_kind_button(
    query: CallbackQuery,
    callback_data: RedditAddKind,
    actor: Actor,
    services: Services,
    state: FSMContext,
) -> None:
    if await state.get_state() != AddAccount.kind.state:
        await query.answer("That question was already answered; start again with /accounts add.")
        return
    kind = callback_data.kind
    if kind not in KINDS:
        await query.answer("This button is no longer valid.", show_alert=True)
        return
    await query.answer()
    if kind == "none":
        data = await state.get_data()
        await state.clear()
        view = await accounts_of(services).add(
            actor, username=data["username"], auth_kind="none", dry_run=True
        )
        await _done(query.message, view, actor)
        return
    await state.update_data(kind=kind)
    await state.set_state(AddAccount.client_id)
    if query.message is not None:
        await query.message.answer(
            "The app id (the string under the app's name on reddit.com/prefs/apps):" + CANCEL_HINT
        )


async def add_kind_typed(message: Message) -> None:
    await message.answer("Pick how Opsdeck logs in with one of the buttons above." + CANCEL_HINT)


async def add_client_id(message: Message, state: FSMContext) -> None:
    client_id = parse_client_id(message.text or "")
    await state.update_data(client_id=client_id)
    await state.set_state(AddAccount.client_secret)
    await message.answer(
        "The app secret (I delete your message as soon as I read it; send - for an installed "
        "app without a secret):" + CANCEL_HINT
    )


async def add_client_secret(message: Message, services: Services, state: FSMContext) -> None:
    secret = await forget_secret(message)
    if not secret or len(secret) > 200 or " " in secret:
        await message.answer("That is not an app secret. Send it again." + CANCEL_HINT)
        return
    # Flow state lives in the database: keep only the sealed secret there, like the account row.
    sealed = "" if secret == "-" else accounts_of(services).box.seal(secret)
    await state.update_data(client_secret_sealed=sealed)
    await state.set_state(AddAccount.secret)
    data = await state.get_data()
    what = "account's password" if data.get("kind") == "script" else "refresh token"
    await message.answer(f"The {what} (deleted as soon as I read it):" + CANCEL_HINT)


async def add_secret(message: Message, actor: Actor, services: Services, state: FSMContext) -> None:
    secret = await forget_secret(message)
    data = await state.get_data()
    if not secret or len(secret) > 500:
        await message.answer("That is empty or too long. Send it again." + CANCEL_HINT)
        return
    script = data.get("kind") == "script"
    try:
        view = await accounts_of(services).add(
            actor,
            username=data["username"],
            auth_kind=data["kind"],
            client_id=data["client_id"],
            client_secret=_unseal(services, data.get("client_secret_sealed")),
            password=secret if script else None,
            refresh_token=None if script else secret,
        )
    except InvalidInput as exc:
        await message.answer(f"{h(exc.message)}\nSend it again." + CANCEL_HINT)
        return
    except OpsdeckError:
        await state.clear()
        raise
    await state.clear()
    await _done(message, view, actor)


def _unseal(services: Services, sealed: str | None) -> str | None:
    return accounts_of(services).box.reveal(sealed) if sealed else None


async def _done(message: Message | None, view, actor: Actor) -> None:
    if message is None:
        return
    text, markup = account_card(view, actor)
    tail = (
        "\n\nConnected. A health check with Reddit is queued; I'll tell you if it fails."
        if view.has_credentials
        else "\n\nConnected in dry-run mode: posts are validated, nothing is sent."
    )
    await message.answer(text + tail, reply_markup=markup)


async def cancel(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer("Stopped; nothing was connected.")


def build_router() -> Router:
    router = Router(name="reddit_accounts")
    router.message.register(cancel, Command("cancel"), StateFilter(AddAccount))
    router.message.register(accounts, Command("accounts"))
    buttons = (
        ("list", show_list),
        ("card", show_card),
        ("check", check),
        ("pause", pause),
        ("resume", resume),
        ("remove", remove_asked),
        ("remove_yes", remove_confirmed),
        *((act, start_backfill) for act in BACKFILLS),
    )
    for act, handler in buttons:
        router.callback_query.register(handler, RedditAccountAct.filter(F.act == act))
    router.callback_query.register(unknown_button, RedditAccountAct.filter())
    router.callback_query.register(add_kind_button, RedditAddKind.filter())
    router.message.register(add_username, StateFilter(AddAccount.username))
    router.message.register(add_kind_typed, StateFilter(AddAccount.kind))
    router.message.register(add_client_id, StateFilter(AddAccount.client_id))
    router.message.register(add_client_secret, StateFilter(AddAccount.client_secret))
    router.message.register(add_secret, StateFilter(AddAccount.secret))
    return router
