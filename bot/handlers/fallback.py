"""Last router: anything no feature took gets a clear answer instead of silence."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.callbacks import STALE_BUTTON
from bot.render.common import h
from core.actor import Actor


async def cancel(message: Message, state: FSMContext, actor: Actor | None) -> None:
    """/cancel that no flow's own handler took: leave whatever state is left, or say so."""
    if actor is None:
        return
    if await state.get_state() is None:
        await message.answer("Nothing to cancel.")
        return
    await state.clear()
    await message.answer("Stopped. Nothing more will be asked.")


async def unknown_message(message: Message, actor: Actor | None) -> None:
    if actor is None:
        return
    text = message.text or ""
    if text.startswith("/"):
        command = text.split()[0][:40]
        await message.answer(f"I don't know {h(command)}. /help lists what you can do.")
    else:
        await message.answer("I didn't understand that. /menu shows what you can do.")


async def unknown_button(query: CallbackQuery) -> None:
    """Data no button class accepts: forged, or from a message older than this version."""
    await query.answer(STALE_BUTTON, show_alert=True)


def build_router() -> Router:
    router = Router(name="fallback")
    router.message.register(cancel, Command("cancel"))
    router.message.register(unknown_message)
    router.callback_query.register(unknown_button)
    return router
