"""Charts in chat: /stats, /jobs chart and the vault's claims chart, each with period buttons.

Thin: read the series in core (a lock-free read, no transaction), draw it in a worker thread
so the event loop never waits on matplotlib, then answer with the picture; its caption is
the plain-text summary screen readers get.
"""

from __future__ import annotations

import asyncio

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, Filter
from aiogram.types import BufferedInputFile, CallbackQuery, InaccessibleMessage, Message

from bot.callbacks import STALE_BUTTON, ChartAct
from bot.render import charts as texts
from core.actor import Actor
from core.charts import render
from core.errors import InvalidInput
from core.services.container import Services

POST_SPANS = ("7d", "30d")
JOB_SPANS = ("24h", "7d")
SPAN_ALIASES = {"7": "7d", "30": "30d", "24": "24h", "1d": "24h"}


class FirstArgument(Filter):
    """The command's first word after the command is `word` (`/jobs chart …`)."""

    def __init__(self, word: str) -> None:
        self.word = word

    async def __call__(self, message: Message) -> bool:
        parts = (message.text or "").split()
        return len(parts) > 1 and parts[1].lower() == self.word


def _span(arg: str | None, allowed: tuple[str, ...], usage: str) -> str:
    span = SPAN_ALIASES.get(arg or "", arg or allowed[0]).lower()
    if span not in allowed:
        raise InvalidInput(usage)
    return span


async def _answer(message: Message, png: bytes, caption: str, act: str, spans, span) -> None:
    await message.answer_photo(
        BufferedInputFile(png, filename=f"{act}-{span}.png"),
        caption=caption,
        reply_markup=texts.period_buttons(act, spans, span),
    )


async def send_posts(message: Message, actor: Actor, services: Services, span: str) -> None:
    series = await services.charts.posts(actor, span)
    png = await asyncio.to_thread(render.posts_png, series)
    await _answer(message, png, texts.posts_caption(series, span), "posts", POST_SPANS, span)


async def send_jobs(message: Message, actor: Actor, services: Services, span: str) -> None:
    series = await services.charts.jobs(actor, span)
    png = await asyncio.to_thread(render.jobs_png, series)
    await _answer(message, png, texts.jobs_caption(series, span), "jobs", JOB_SPANS, span)


async def send_claims(message: Message, actor: Actor, services: Services, span: str) -> None:
    series = await services.charts.claims(actor, span)
    png = await asyncio.to_thread(render.claims_png, series)
    await _answer(message, png, texts.claims_caption(series, span), "claims", POST_SPANS, span)


async def stats_command(
    message: Message, command: CommandObject, actor: Actor, services: Services
) -> None:
    args = (command.args or "").split()
    usage = "Usage: /stats [7d|30d] — Reddit posts per day, score and comments."
    if len(args) > 1:
        raise InvalidInput(usage)
    await send_posts(message, actor, services, _span(args[0] if args else None, POST_SPANS, usage))


async def jobs_chart_command(
    message: Message, command: CommandObject, actor: Actor, services: Services
) -> None:
    args = (command.args or "").split()[1:]  # after "chart"
    usage = "Usage: /jobs chart [24h|7d] — queue depth and failures per hour."
    if len(args) > 1:
        raise InvalidInput(usage)
    await send_jobs(message, actor, services, _span(args[0] if args else None, JOB_SPANS, usage))


def _chat_of(query: CallbackQuery) -> Message | None:
    message = query.message
    return None if message is None or isinstance(message, InaccessibleMessage) else message


async def _press(query: CallbackQuery, span: str, spans: tuple[str, ...]) -> Message | None:
    """The message to answer under, or None once the press is answered as unusable."""
    message = _chat_of(query)
    if span not in spans:  # a forged period: no button of this chart carries it
        await query.answer(STALE_BUTTON, show_alert=True)
        return None
    if message is None:  # too old for Telegram to show us: nowhere to put the picture
        await query.answer("That message is too old; send the command again.", show_alert=True)
        return None
    return message


async def posts_period(
    query: CallbackQuery, callback_data: ChartAct, actor: Actor, services: Services
) -> None:
    if (message := await _press(query, callback_data.span, POST_SPANS)) is not None:
        await send_posts(message, actor, services, callback_data.span)
        await query.answer()


async def jobs_period(
    query: CallbackQuery, callback_data: ChartAct, actor: Actor, services: Services
) -> None:
    if (message := await _press(query, callback_data.span, JOB_SPANS)) is not None:
        await send_jobs(message, actor, services, callback_data.span)
        await query.answer()


async def claims_period(
    query: CallbackQuery, callback_data: ChartAct, actor: Actor, services: Services
) -> None:
    if (message := await _press(query, callback_data.span, POST_SPANS)) is not None:
        await send_claims(message, actor, services, callback_data.span)
        await query.answer()


def build_router() -> Router:
    """Include before the jobs router: it takes `/jobs chart`, the jobs router the rest."""
    router = Router(name="charts")
    router.message.register(stats_command, Command("stats"))
    router.message.register(jobs_chart_command, Command("jobs"), FirstArgument("chart"))
    steer = router.callback_query.register
    steer(posts_period, ChartAct.filter(F.act == "posts"))
    steer(jobs_period, ChartAct.filter(F.act == "jobs"))
    steer(claims_period, ChartAct.filter(F.act == "claims"))
    return router
