"""Charts in chat: /stats, /jobs chart and the vault's claims chart, each with period buttons.

Thin: read the series in core (a lock-free read, no transaction), draw it in a worker thread
so the event loop never waits on matplotlib, then answer with the picture; its caption is
the plain-text summary screen readers get. A period button redraws the picture in place.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject, Filter
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InaccessibleMessage,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
)

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


@dataclass(frozen=True, slots=True)
class Chart:
    png: bytes
    caption: str
    markup: InlineKeyboardMarkup | None
    name: str

    def file(self) -> BufferedInputFile:
        return BufferedInputFile(self.png, filename=self.name)


async def posts_chart(actor: Actor, services: Services, span: str) -> Chart:
    series = await services.charts.posts(actor, span)
    png = await asyncio.to_thread(render.posts_png, series)
    markup = texts.period_buttons("posts", POST_SPANS, span)
    return Chart(png, texts.posts_caption(series, span), markup, f"posts-{span}.png")


async def jobs_chart(actor: Actor, services: Services, span: str) -> Chart:
    series = await services.charts.jobs(actor, span)
    png = await asyncio.to_thread(render.jobs_png, series)
    markup = texts.period_buttons("jobs", JOB_SPANS, span)
    return Chart(png, texts.jobs_caption(series, span), markup, f"jobs-{span}.png")


async def claims_chart(actor: Actor, services: Services, span: str) -> Chart:
    series = await services.charts.claims(actor, span)
    png = await asyncio.to_thread(render.claims_png, series)
    markup = texts.period_buttons("claims", POST_SPANS, span)
    return Chart(png, texts.claims_caption(series, span), markup, f"claims-{span}.png")


async def send(message: Message, chart: Chart) -> None:
    await message.answer_photo(chart.file(), caption=chart.caption, reply_markup=chart.markup)


async def stats_command(
    message: Message, command: CommandObject, actor: Actor, services: Services
) -> None:
    args = (command.args or "").split()
    usage = "Usage: /stats [7d|30d] — Reddit posts per day, score and comments."
    if len(args) > 1:
        raise InvalidInput(usage)
    span = _span(args[0] if args else None, POST_SPANS, usage)
    await send(message, await posts_chart(actor, services, span))


async def jobs_chart_command(
    message: Message, command: CommandObject, actor: Actor, services: Services
) -> None:
    args = (command.args or "").split()[1:]  # after "chart"
    usage = "Usage: /jobs chart [24h|7d] — queue depth and failures per hour."
    if len(args) > 1:
        raise InvalidInput(usage)
    span = _span(args[0] if args else None, JOB_SPANS, usage)
    await send(message, await jobs_chart(actor, services, span))


async def redraw(query: CallbackQuery, span: str, spans: tuple[str, ...], draw) -> None:
    """Draw the chart for the pressed period and put it in place of the pressed one; a
    chart too old to edit gets a new message, a period this chart lacks is a forgery."""
    if span not in spans:  # no button of this chart carries it
        await query.answer(STALE_BUTTON, show_alert=True)
        return
    chart = await draw(span)
    message = query.message
    if isinstance(message, Message) and message.photo:
        try:
            await message.edit_media(
                InputMediaPhoto(media=chart.file(), caption=chart.caption),
                reply_markup=chart.markup,
            )
        except TelegramBadRequest as exc:
            if "not modified" not in exc.message:
                raise
    elif message is not None and not isinstance(message, InaccessibleMessage):
        await send(message, chart)  # e.g. the vault's stats text: the chart comes under it
    else:  # too old for Telegram to show us: nowhere to put the picture
        await query.answer("That message is too old; send the command again.", show_alert=True)
        return
    await query.answer()


async def posts_period(
    query: CallbackQuery, callback_data: ChartAct, actor: Actor, services: Services
) -> None:
    await redraw(query, callback_data.span, POST_SPANS, lambda s: posts_chart(actor, services, s))


async def jobs_period(
    query: CallbackQuery, callback_data: ChartAct, actor: Actor, services: Services
) -> None:
    await redraw(query, callback_data.span, JOB_SPANS, lambda s: jobs_chart(actor, services, s))


async def claims_period(
    query: CallbackQuery, callback_data: ChartAct, actor: Actor, services: Services
) -> None:
    await redraw(query, callback_data.span, POST_SPANS, lambda s: claims_chart(actor, services, s))


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
