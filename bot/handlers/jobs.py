"""/jobs and the job card buttons: approve, reject, retry, cancel, refresh, details, retry all."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.callbacks import JobAct, JobList, RetryAll
from bot.render.common import keyboard
from bot.render.jobs import job_buttons, job_card, job_list, job_list_buttons
from core.actor import Actor
from core.errors import Conflict, InvalidInput
from core.services.container import Services
from core.services.jobs import parse_status_filter

KIND_MAX = 40


async def edit(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> None:
    """Edit the pressed message in place; an identical re-render is not an error."""
    if query.message is None:
        return
    try:
        await query.message.edit_text(text, reply_markup=markup)
    except TelegramBadRequest as exc:
        if "not modified" not in exc.message:
            raise


async def render_list(actor: Actor, services: Services, status: str, kind: str, page: int):
    result = await services.jobs.page(actor, status, kind or None, page)
    retryable = await services.jobs.count_retryable(actor) if status == "failed" else 0
    now = services.jobs.clock.now()
    return (
        job_list(result, actor, now, status, kind, retryable),
        job_list_buttons(result, actor, status, kind, retryable),
    )


async def jobs_command(
    message: Message, command: CommandObject, actor: Actor, services: Services
) -> None:
    args = (command.args or "").split()
    if len(args) > 2:
        raise InvalidInput(
            "Usage: /jobs [status] [kind], e.g. /jobs failed or /jobs queued reddit.submit"
        )
    status = parse_status_filter(args[0] if args else None)
    kind = args[1] if len(args) > 1 else ""
    if len(kind) > KIND_MAX or (kind and not all(c.isalnum() or c in "._-" for c in kind)):
        raise InvalidInput("A job kind looks like reddit.submit (letters, digits, dot, dash).")
    text, markup = await render_list(actor, services, status, kind, 0)
    await message.answer(text, reply_markup=markup)


async def jobs_page(
    query: CallbackQuery, callback_data: JobList, actor: Actor, services: Services
) -> None:
    status = parse_status_filter(callback_data.status)
    text, markup = await render_list(
        actor, services, status, callback_data.kind, callback_data.page
    )
    await query.answer()
    await edit(query, text, markup)


async def _show(
    query: CallbackQuery,
    actor: Actor,
    services: Services,
    job_id: int,
    notice: str | None = None,
    *,
    details: bool = False,
) -> None:
    """Answer the press, then re-render the card from a fresh, lock-free read."""
    jobs = services.jobs
    job = await jobs.get(actor, job_id)
    await query.answer(notice or None, show_alert=bool(notice and "already" in notice))
    await edit(
        query,
        job_card(job, actor, jobs.clock.now(), details=details),
        job_buttons(job, actor, details=details),
    )


async def approve_job(
    query: CallbackQuery, callback_data: JobAct, actor: Actor, services: Services
) -> None:
    job_id = callback_data.id
    try:
        await services.jobs.approve(actor, job_id)
        notice = f"Job #{job_id} approved."
    except Conflict as exc:
        notice = exc.message  # stale or repeated press: say why, show the current state
    await _show(query, actor, services, job_id, notice)


async def reject_job(
    query: CallbackQuery, callback_data: JobAct, actor: Actor, services: Services
) -> None:
    job_id = callback_data.id
    try:
        await services.jobs.reject(actor, job_id)
        notice = f"Job #{job_id} rejected."
    except Conflict as exc:
        notice = exc.message
    await _show(query, actor, services, job_id, notice)


async def retry_job(
    query: CallbackQuery, callback_data: JobAct, actor: Actor, services: Services
) -> None:
    job_id = callback_data.id
    try:
        await services.jobs.retry(actor, job_id)
        notice = f"Job #{job_id} queued to run now."
    except Conflict as exc:
        notice = exc.message
    await _show(query, actor, services, job_id, notice)


async def cancel_job(
    query: CallbackQuery, callback_data: JobAct, actor: Actor, services: Services
) -> None:
    job_id = callback_data.id
    try:
        job = await services.jobs.cancel(actor, job_id)
        notice = (
            f"Job #{job_id} is being stopped."
            if job.status == "running"
            else f"Job #{job_id} cancelled."
        )
    except Conflict as exc:
        notice = exc.message
    await _show(query, actor, services, job_id, notice)


async def refresh_job(
    query: CallbackQuery, callback_data: JobAct, actor: Actor, services: Services
) -> None:
    await _show(query, actor, services, callback_data.id)


async def job_details(
    query: CallbackQuery, callback_data: JobAct, actor: Actor, services: Services
) -> None:
    await _show(query, actor, services, callback_data.id, details=True)


async def unknown_job_button(query: CallbackQuery) -> None:
    await query.answer("This button is no longer valid.")


async def retry_all(
    query: CallbackQuery, callback_data: RetryAll, actor: Actor, services: Services
) -> None:
    if callback_data.step == "ask":
        n = await services.jobs.count_retryable(actor)
        if not n:
            await query.answer("There are no failed or dead jobs now.", show_alert=True)
            return
        await query.answer()
        await edit(
            query,
            f"Retry all <b>{n}</b> failed and dead jobs now?",
            keyboard(
                [
                    [
                        (f"Yes, retry {n}", RetryAll(step="yes", n=n).pack()),
                        ("No", RetryAll(step="no", n=n).pack()),
                    ]
                ]
            ),
        )
        return
    if callback_data.step == "yes":
        done = await services.jobs.retry_all(actor)
        await query.answer(
            f"Retried {done} job(s)." if done else "Nothing left to retry.", show_alert=not done
        )
    else:
        await query.answer("Nothing retried.")
    text, markup = await render_list(actor, services, "failed", "", 0)
    await edit(query, text, markup)


def build_router() -> Router:
    router = Router(name="jobs")
    router.message.register(jobs_command, Command("jobs"))
    router.callback_query.register(jobs_page, JobList.filter())
    steer = router.callback_query.register
    steer(approve_job, JobAct.filter(F.act == "approve"))
    steer(reject_job, JobAct.filter(F.act == "reject"))
    steer(retry_job, JobAct.filter(F.act == "retry"))
    steer(cancel_job, JobAct.filter(F.act == "cancel"))
    steer(refresh_job, JobAct.filter(F.act == "refresh"))
    steer(job_details, JobAct.filter(F.act == "details"))
    steer(unknown_job_button, JobAct.filter())
    router.callback_query.register(retry_all, RetryAll.filter())
    return router
