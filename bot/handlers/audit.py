"""/audit (owners): the latest audited changes, newest first, in the operator's timezone."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from bot.callbacks import AuditPage
from bot.handlers.jobs import edit
from bot.render.common import clip, h, keyboard, shorten
from core.actor import Actor
from core.services.container import Services
from core.timefmt import fmt

PAGE = 15


async def render(actor: Actor, services: Services, page: int):
    entries = await services.audit.latest(actor, PAGE + 1, page * PAGE)
    more = len(entries) > PAGE
    lines = [f"<b>Audit log</b> · page {page + 1} · times in {h(actor.timezone)}"]
    for e in entries[:PAGE]:
        who = await services.operators.name_of(actor.tenant_id, e.actor_id)
        details = (
            f" ({shorten(', '.join(f'{k}={v}' for k, v in e.details.items()), 80)})"
            if e.details
            else ""
        )
        lines.append(
            f"{fmt(e.at, actor.timezone, with_zone=False)} · {h(who)} · <b>{h(e.action)}</b> "
            f"{h(e.target or '')}{h(details)}"
        )
    if not entries:
        lines.append("Nothing audited yet.")
    nav = []
    if page > 0:
        nav.append(("◀️ Newer", AuditPage(page=page - 1).pack()))
    if more:
        nav.append(("Older ▶️", AuditPage(page=page + 1).pack()))
    return clip("\n".join(lines)), keyboard([nav])


async def audit(message: Message, actor: Actor, services: Services) -> None:
    text, markup = await render(actor, services, 0)
    await message.answer(text, reply_markup=markup)


async def audit_page(
    query: CallbackQuery, callback_data: AuditPage, actor: Actor, services: Services
) -> None:
    text, markup = await render(actor, services, max(0, callback_data.page))
    await query.answer()
    await edit(query, text, markup)


def build_router() -> Router:
    router = Router(name="audit")
    router.message.register(audit, Command("audit"))
    router.callback_query.register(audit_page, AuditPage.filter())
    return router
