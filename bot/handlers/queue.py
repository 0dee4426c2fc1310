"""/queue: the workspace queue's state, /queue pause, /queue resume."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.render.common import h
from core.actor import Actor
from core.errors import InvalidInput
from core.services.container import Services
from storage.models import JobStatus

USAGE = "Usage: /queue, /queue pause or /queue resume"


async def queue_text(actor: Actor, services: Services) -> str:
    paused = await services.jobs.is_paused(actor)
    counts = await services.jobs.counts(actor)
    state = "⏸ <b>paused</b> — no job of this workspace starts" if paused else "▶️ <b>running</b>"
    parts = [
        f"{h(s.replace('_', ' '))}: {counts.get(s, 0)}"
        for s in (
            JobStatus.pending_approval,
            JobStatus.queued,
            JobStatus.running,
            JobStatus.failed,
            JobStatus.dead,
        )
    ]
    return f"Queue {state}\n" + " · ".join(parts)


async def queue(message: Message, command: CommandObject, actor: Actor, services: Services) -> None:
    arg = (command.args or "").strip().lower()
    if arg in ("pause", "resume"):
        changed = await services.jobs.set_paused(actor, arg == "pause")
        if not changed:
            await message.answer(
                f"The queue was already {'paused' if arg == 'pause' else 'running'}."
            )
        else:
            await message.answer(
                "Queue paused. Running jobs finish; nothing new starts."
                if arg == "pause"
                else "Queue resumed."
            )
        return
    if arg:
        raise InvalidInput(USAGE)
    await message.answer(await queue_text(actor, services))


def build_router() -> Router:
    router = Router(name="queue")
    router.message.register(queue, Command("queue"))
    return router
