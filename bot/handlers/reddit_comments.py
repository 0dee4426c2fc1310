"""/reply <post or comment URL>: a guided flow — account → text → when → preview — whose
comment joins the post queue (Queue / Send for approval / Cancel are the post buttons)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from aiogram import Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot.callbacks import ReplyAccount, ReplyTo, ReplyWhen
from bot.commands import EXTRA_COMMANDS
from bot.render import reddit_comments as render
from core.actor import Actor
from core.errors import InvalidInput
from core.reddit_ops.comments import (
    CommentService,
    ReplyLink,
    ReplyTarget,
    check_body,
    parse_reply_link,
)
from core.reddit_ops.when import WHEN_PRESETS, parse_when
from core.services.container import Services
from storage.models import Role

EXTRA_COMMANDS.append(("reply", "comment on a post: /reply <post or comment URL>", Role.operator))

USAGE = (
    "Usage: /reply <address of a Reddit post or comment>, e.g. "
    "/reply https://www.reddit.com/r/python/comments/abc123/some_title/"
)


class Reply(StatesGroup):
    account = State()
    body = State()
    when = State()
    preview = State()


def comments_of(services: Services) -> CommentService:
    return services.reddit_comments


async def flow_data(state: FSMContext, services: Services) -> dict:
    """The flow's data (a lock-free read: nothing is held while we talk to Reddit)."""
    return await state.get_data()


async def reply_command(
    message: Message, command: CommandObject, actor: Actor, services: Services, state: FSMContext
) -> None:
    actor.require(Role.operator, "reply on Reddit")
    if not (command.args or "").strip():
        raise InvalidInput(USAGE)
    link = parse_reply_link(command.args or "")
    await _start(message, link, actor, services, state)


async def reply_button(
    query: CallbackQuery,
    callback_data: ReplyTo,
    actor: Actor,
    services: Services,
    state: FSMContext,
) -> None:
    """The Reply buttons of /browse."""
    actor.require(Role.operator, "reply on Reddit")
    link = parse_reply_link(callback_data.thing)
    link = ReplyLink(link.post_id, link.comment_id, callback_data.sr or None)
    await query.answer()
    if query.message is not None:
        await _start(query.message, link, actor, services, state)


async def _start(
    message: Message, link: ReplyLink, actor: Actor, services: Services, state: FSMContext
) -> None:
    accounts = await comments_of(services).repliers(actor)
    if not accounts:
        raise InvalidInput("No Reddit account is connected yet; add one with /accounts add.")
    await state.set_state(Reply.account)
    await state.set_data({"link": asdict(link)})
    if len(accounts) == 1:
        await _resolve(message, accounts[0].id, actor, services, state)
        return
    text, markup = render.pick_account(accounts)
    await message.answer(text, reply_markup=markup)


async def account_button(
    query: CallbackQuery,
    callback_data: ReplyAccount,
    actor: Actor,
    services: Services,
    state: FSMContext,
) -> None:
    if await state.get_state() != Reply.account.state:
        await query.answer("That question was already answered; start again with /reply.")
        return
    await query.answer()
    if query.message is not None:
        await _resolve(query.message, callback_data.id, actor, services, state)


async def _resolve(
    message: Message, account_id: int, actor: Actor, services: Services, state: FSMContext
) -> None:
    data = await flow_data(state, services)
    comments = comments_of(services)
    target = await comments.resolve(actor, account_id, ReplyLink(**data["link"]))
    account = next(a for a in await comments.repliers(actor) if a.id == account_id)
    await state.update_data(account_id=account_id, username=account.username, target=asdict(target))
    await state.set_state(Reply.body)
    await message.answer(render.target_text(target, account.username))


async def account_typed(message: Message) -> None:
    await message.answer("Pick the account with one of the buttons above." + render.CANCEL_HINT)


async def body_typed(message: Message, state: FSMContext, actor: Actor) -> None:
    text = message.text or ""
    if text.startswith("/"):
        await message.answer(
            "That looks like a command. Send the comment's text, or /cancel to stop."
        )
        return
    if message.text is None:
        await message.answer("A comment is text; send it as a message." + render.CANCEL_HINT)
        return
    try:
        body = check_body(text)
    except InvalidInput as exc:
        await message.answer(exc.message + render.CANCEL_HINT)
        return
    await state.update_data(body=body)
    await state.set_state(Reply.when)
    text, markup = render.ask_when(actor.timezone)
    await message.answer(text, reply_markup=markup)


async def when_button(
    query: CallbackQuery,
    callback_data: ReplyWhen,
    actor: Actor,
    services: Services,
    state: FSMContext,
) -> None:
    if await state.get_state() != Reply.when.state or not 0 <= callback_data.i < len(WHEN_PRESETS):
        await query.answer("That question was already answered; start again with /reply.")
        return
    posts = services.reddit_posts
    when = parse_when(WHEN_PRESETS[callback_data.i], actor.timezone, posts.clock.now())
    await query.answer()
    if query.message is not None:
        await _preview(query.message, when, actor, services, state)


async def when_typed(message: Message, actor: Actor, services: Services, state: FSMContext) -> None:
    posts = services.reddit_posts
    try:
        when = parse_when(message.text or "", actor.timezone, posts.clock.now())
    except InvalidInput as exc:
        await message.answer(exc.message + render.CANCEL_HINT)
        return
    await _preview(message, when, actor, services, state)


async def _preview(
    message: Message, when: datetime, actor: Actor, services: Services, state: FSMContext
) -> None:
    data = await flow_data(state, services)
    target = ReplyTarget(**data["target"])
    draft = await comments_of(services).draft(actor, int(data["account_id"]), target, data["body"])
    decision = await services.reddit_posts.plan(actor, draft.id, when)
    # the post buttons' Queue reads {"post_id", "when"} as it does for a /post preview
    await state.set_state(Reply.preview)
    await state.set_data({"post_id": draft.id, "when": when.isoformat()})
    text, markup = render.preview(
        draft.id, data["username"], target, data["body"], decision, actor.timezone
    )
    await message.answer(text, reply_markup=markup)


async def preview_typed(message: Message) -> None:
    await message.answer(
        "Queue it, send it for approval or cancel it with the buttons above." + render.CANCEL_HINT
    )


async def cancel(message: Message, actor: Actor, services: Services, state: FSMContext) -> None:
    data = await flow_data(state, services)
    await state.clear()
    if data.get("post_id"):
        await services.reddit_posts.cancel(actor, int(data["post_id"]))
    await message.answer("Stopped; nothing was queued.")


def build_router() -> Router:
    router = Router(name="reddit_comments")
    router.message.register(cancel, Command("cancel"), StateFilter(Reply))
    router.message.register(reply_command, Command("reply"))
    router.callback_query.register(reply_button, ReplyTo.filter())
    router.callback_query.register(account_button, ReplyAccount.filter())
    router.callback_query.register(when_button, ReplyWhen.filter())
    router.message.register(account_typed, StateFilter(Reply.account))
    router.message.register(body_typed, StateFilter(Reply.body))
    router.message.register(when_typed, StateFilter(Reply.when))
    router.message.register(preview_typed, StateFilter(Reply.preview))
    return router
