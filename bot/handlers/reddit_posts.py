"""/posts: upcoming posts (or `published`, `all`) and a post's card with Post now ·
Reschedule · Cancel · Approve · Reject; one handler per button."""

from __future__ import annotations

from datetime import datetime

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.callbacks import RedditPostAct
from bot.handlers.compose_states import Compose
from bot.handlers.jobs import edit
from bot.handlers.reddit_common import accounts_of, ask, posts_of
from bot.render.common import h
from bot.render.reddit import history_list, post_card, upcoming_list
from core.actor import Actor
from core.errors import InvalidInput
from core.reddit_ops import PostView, QueueResult, parse_when
from core.reddit_ops.listing import RedditListing
from core.services.container import Services
from core.timefmt import fmt
from storage.models import Role

POSTS_USAGE = "Usage: /posts — upcoming, /posts published, or /posts all."


async def posts_list(
    message: Message, command: CommandObject, actor: Actor, services: Services
) -> None:
    which = (command.args or "upcoming").strip().lower()
    if which not in ("upcoming", "published", "all"):
        raise InvalidInput(POSTS_USAGE)
    posts = posts_of(services)
    if which == "upcoming":
        text, markup = upcoming_list(await posts.upcoming(actor, limit=30), actor)
    else:
        text, markup = await _history(actor, services, which)
    await message.answer(text, reply_markup=markup)


async def _history(actor: Actor, services: Services, which: str):
    listing: RedditListing = services.reddit_listing
    return history_list(await listing.entries(actor, which, limit=30), which, actor)


async def _show(query: CallbackQuery, view: PostView, actor: Actor) -> None:
    text, markup = post_card(view, actor)
    await edit(query, text, markup)


async def card(
    query: CallbackQuery, callback_data: RedditPostAct, actor: Actor, services: Services
) -> None:
    view = await posts_of(services).get(actor, callback_data.id)
    await query.answer()
    await _show(query, view, actor)


async def queue(
    query: CallbackQuery,
    callback_data: RedditPostAct,
    actor: Actor,
    services: Services,
    state: FSMContext,
) -> None:
    """Queue (or Send for approval) on a preview."""
    post_id, for_approval = callback_data.id, callback_data.act == "approval"
    data = await state.get_data()
    when = None
    if data.get("post_id") == post_id and data.get("when"):
        when = datetime.fromisoformat(data["when"])
    result = await posts_of(services).queue(actor, post_id, when, requires_approval=for_approval)
    if data.get("post_id") == post_id:
        await state.clear()
    moved = f" Pacing moved it: {result.decision.reason}" if result.decision.moved else ""
    if for_approval:
        await query.answer(f"Post #{post_id} waits for an operator's approval.{moved}"[:200])
    else:
        at = fmt(result.decision.scheduled_for, actor.timezone)
        await query.answer(f"Post #{post_id} queued for {at}.{moved}"[:200])
    await _show(query, result.post, actor)


async def cancel(
    query: CallbackQuery,
    callback_data: RedditPostAct,
    actor: Actor,
    services: Services,
    state: FSMContext,
) -> None:
    view = await posts_of(services).cancel(actor, callback_data.id)
    if (await state.get_data()).get("post_id") == callback_data.id:
        await state.clear()
    await query.answer(f"Post #{callback_data.id} cancelled.")
    await _show(query, view, actor)


async def post_now(
    query: CallbackQuery, callback_data: RedditPostAct, actor: Actor, services: Services
) -> None:
    result = await posts_of(services).post_now(actor, callback_data.id)
    text, alert = await _post_now_answer(result, actor, services)
    await query.answer(text[:200], show_alert=alert)
    await _show(query, result.post, actor)


async def approve(
    query: CallbackQuery, callback_data: RedditPostAct, actor: Actor, services: Services
) -> None:
    view = await posts_of(services).approve(actor, callback_data.id)
    await query.answer(f"Post #{callback_data.id} approved.")
    await _show(query, view, actor)


async def reject(
    query: CallbackQuery, callback_data: RedditPostAct, actor: Actor, services: Services
) -> None:
    view = await posts_of(services).reject(actor, callback_data.id)
    await query.answer(f"Post #{callback_data.id} rejected.")
    await _show(query, view, actor)


async def reschedule_pressed(
    query: CallbackQuery,
    callback_data: RedditPostAct,
    actor: Actor,
    services: Services,
    state: FSMContext,
) -> None:
    actor.require(Role.operator, "reschedule posts")
    post_id = callback_data.id
    await posts_of(services).get(actor, post_id)  # it exists in this workspace
    await query.answer()
    await state.set_state(Compose.reschedule)
    await state.set_data({"post_id": post_id})
    await ask(
        query,
        f"New time for post #{post_id}, in your timezone ({h(actor.timezone)}): "
        "e.g. 18:30, tomorrow 09:00, +2h.",
    )


async def unknown_button(query: CallbackQuery) -> None:
    await query.answer("This button is no longer valid.", show_alert=True)


async def _post_now_answer(
    result: QueueResult, actor: Actor, services: Services
) -> tuple[str, bool]:
    """What Post now did: now, or not now after all and why (an alert, so it is read)."""
    view, decision = result.post, result.decision
    account = await accounts_of(services).get(actor, view.account_id)
    if not account.is_active:
        state_ = account.status.replace("_", " ")
        return (
            f"Post #{view.id} waits: u/{account.username} is {state_}; it goes out once the "
            "account is active again.",
            True,
        )
    at = fmt(decision.scheduled_for, actor.timezone)
    moved = f" Pacing moved it: {decision.reason}" if decision.moved else ""
    if view.status == "pending_approval":
        return f"Post #{view.id} goes out at {at} once an operator approves it.{moved}", True
    if decision.moved:
        return f"Post #{view.id} goes out at {at}.{moved}", True
    return f"Post #{view.id} goes out now.", False


async def reschedule_typed(
    message: Message, actor: Actor, services: Services, state: FSMContext
) -> None:
    posts = posts_of(services)
    when = parse_when(message.text or "", actor.timezone, posts.clock.now())
    post_id = int((await state.get_data())["post_id"])
    result = await posts.reschedule(actor, post_id, when)
    await state.clear()
    text, markup = post_card(result.post, actor)  # says when, and why pacing moved it
    await message.answer(text, reply_markup=markup)


def build_router() -> Router:
    router = Router(name="reddit_posts")
    router.message.register(posts_list, Command("posts"))
    buttons = (
        ("card", card),
        ("queue", queue),
        ("approval", queue),
        ("cancel", cancel),
        ("now", post_now),
        ("approve", approve),
        ("reject", reject),
        ("resched", reschedule_pressed),
    )
    for act, handler in buttons:
        router.callback_query.register(handler, RedditPostAct.filter(F.act == act))
    router.callback_query.register(unknown_button, RedditPostAct.filter())
    router.message.register(reschedule_typed, StateFilter(Compose.reschedule))
    return router
