"""/start, /help, /menu and menu navigation."""

from __future__ import annotations

import functools

from aiogram import Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import CallbackQuery, Message

from bot.callbacks import JobList, Nav
from bot.commands import commands_for
from bot.flood import StrangerReplies
from bot.render.common import h, keyboard
from core.actor import Actor
from core.services.container import Services
from storage.models import Role

STRANGER_START = (
    "Hello! This is a private operations bot. If someone sent you a file link, open that link "
    "to receive the file. Your Telegram id is <code>{user_id}</code>."
)


def menu_markup(actor: Actor):
    rows = [
        [("🧾 Jobs", JobList(status="active").pack()), ("⏯ Queue", Nav(to="queue").pack())],
        [("🌍 Timezone", Nav(to="tz").pack()), ("❓ Help", Nav(to="help").pack())],
    ]
    if actor.at_least(Role.owner):
        rows.insert(
            1, [("👥 Operators", Nav(to="operators").pack()), ("📜 Audit", Nav(to="audit").pack())]
        )
    return keyboard(rows)


def menu_text(actor: Actor) -> str:
    return (
        f"<b>Opsdeck</b> · you are <b>{h(actor.role)}</b> · times in {h(actor.timezone)}\n"
        "Choose a section:"
    )


def help_text(actor: Actor) -> str:
    return _help_for(Role(actor.role))


@functools.cache
def _help_for(role: Role) -> str:
    lines = ["<b>What you can do</b>"]
    lines += [f"/{c.command} — {h(c.description)}" for c in commands_for(role)]
    lines.append("\nButtons re-check your role on every press.")
    return "\n".join(lines)


async def start(
    message: Message,
    command: CommandObject,
    actor: Actor | None,
    stranger_replies: StrangerReplies | None = None,
) -> None:
    if actor is None:
        # the flood rule: a stranger repeating /start is greeted once a minute
        if stranger_replies is None or stranger_replies.allow(message.from_user.id):
            await message.answer(STRANGER_START.format(user_id=message.from_user.id))
        return
    await message.answer(menu_text(actor), reply_markup=menu_markup(actor))


async def menu(message: Message, actor: Actor) -> None:
    await message.answer(menu_text(actor), reply_markup=menu_markup(actor))


async def help_(message: Message, actor: Actor) -> None:
    await message.answer(help_text(actor))


async def navigate(
    query: CallbackQuery, callback_data: Nav, actor: Actor, services: Services
) -> None:
    texts = {
        "menu": menu_text(actor),
        "help": help_text(actor),
        "tz": f"Your timezone is <b>{h(actor.timezone)}</b>. Change it with /tz Europe/Berlin.",
        "queue": "Queue: /queue shows its state; /queue pause and /queue resume steer it.",
        "operators": "Operators: /operators lists them; /operators add &lt;user id&gt; [role].",
        "audit": "Audit: /audit shows the latest changes.",
    }
    text = texts.get(callback_data.to)
    if text is None:
        await query.answer("This button is no longer valid.")
        return
    if callback_data.to in ("operators", "audit"):
        actor.require(Role.owner, f"open {callback_data.to}")
    back = (
        keyboard([[("☰ Menu", Nav(to="menu").pack())]])
        if callback_data.to != "menu"
        else menu_markup(actor)
    )
    await query.answer()
    if query.message is not None:
        await query.message.edit_text(text, reply_markup=back)


def build_router() -> Router:
    router = Router(name="common")
    router.message.register(start, CommandStart())
    router.message.register(menu, Command("menu"))
    router.message.register(help_, Command("help"))
    router.callback_query.register(navigate, Nav.filter())
    return router
