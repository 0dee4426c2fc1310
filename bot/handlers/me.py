"""The operator's own preferences: /tz and /notify."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.render.common import h
from core.actor import Actor
from core.errors import InvalidInput
from core.services.container import Services
from core.timefmt import fmt


async def timezone(
    message: Message, command: CommandObject, actor: Actor, services: Services
) -> None:
    if not command.args:
        now = fmt(services.jobs.clock.now(), actor.timezone)
        await message.answer(
            f"Your timezone is <b>{h(actor.timezone)}</b> (now {now}).\n"
            "Change it with /tz Europe/Berlin."
        )
        return
    tz = await services.operators.set_timezone(actor, command.args)
    now = fmt(services.jobs.clock.now(), tz)
    await message.answer(
        f"Timezone set to <b>{h(tz)}</b>. It is {now} there; every time I show is in it."
    )


async def notify(
    message: Message, command: CommandObject, actor: Actor, services: Services
) -> None:
    arg = (command.args or "").strip().lower()
    if not arg:
        state = "on" if actor.notify else "off"
        await message.answer(f"Job alerts are <b>{state}</b>. Use /notify on or /notify off.")
        return
    if arg not in ("on", "off"):
        raise InvalidInput("Usage: /notify on or /notify off")
    await services.operators.set_notify(actor, arg == "on")
    await message.answer(f"Job alerts turned {arg}.")


def build_router() -> Router:
    router = Router(name="me")
    router.message.register(timezone, Command("tz"))
    router.message.register(notify, Command("notify"))
    return router
