"""Job cards and job lists."""

from __future__ import annotations

from datetime import datetime

from aiogram.types import InlineKeyboardMarkup

from bot.callbacks import JobAct, JobList, Nav, RetryAll
from bot.render.common import clip, h, keyboard, shorten
from core.actor import Actor
from core.services.jobs import JobPage
from core.timefmt import fmt, fmt_relative
from storage.models import Job, JobStatus, Role

ICONS = {
    JobStatus.pending_approval: "✋",
    JobStatus.queued: "⏳",
    JobStatus.running: "⚙️",
    JobStatus.succeeded: "✅",
    JobStatus.failed: "⚠️",
    JobStatus.dead: "💀",
    JobStatus.cancelled: "🚫",
}
ERROR_PREVIEW = 200


def payload_summary(payload: dict | None, limit: int = 120) -> str:
    if not payload:
        return "—"
    return shorten(", ".join(f"{k}={v}" for k, v in payload.items()), limit)


def job_card(job: Job, actor: Actor, now: datetime, *, details: bool = False) -> str:
    status = job.status.replace("_", " ")
    lines = [
        f"<b>Job #{job.id}</b> · <code>{h(job.kind)}</code>",
        f"{ICONS.get(job.status, '•')} <b>{h(status)}</b>"
        f" · attempt {job.attempts}/{job.max_attempts}",
    ]
    if job.status in (JobStatus.queued, JobStatus.failed, JobStatus.pending_approval):
        lines.append(f"Next run: {fmt_relative(job.run_at, now, actor.timezone)}")
    if job.status == JobStatus.running:
        lines.append(f"Started: {fmt(job.started_at, actor.timezone)}")
        if job.cancel_requested:
            lines.append("Cancellation requested; stopping…")
    if job.finished_at:
        lines.append(f"Finished: {fmt(job.finished_at, actor.timezone)}")
    lines.append(f"Created: {fmt(job.created_at, actor.timezone)}")
    lines.append(f"Payload: {h(payload_summary(job.payload))}")
    if job.last_error:
        if details:
            lines.append(f"Last error:\n<pre>{h(job.last_error[:3000])}</pre>")
        else:
            lines.append(f"Last error: {h(shorten(job.last_error, ERROR_PREVIEW))}")
    if job.result and job.status == JobStatus.succeeded:
        lines.append(f"Result: {h(payload_summary(job.result))}")
    return clip("\n".join(lines))


def job_buttons(job: Job, actor: Actor, *, details: bool = False) -> InlineKeyboardMarkup | None:
    act = JobAct
    rows: list[list[tuple[str, str]]] = []
    if actor.at_least(Role.operator):
        if job.status == JobStatus.pending_approval:
            rows.append(
                [
                    ("✅ Approve", act(act="approve", id=job.id).pack()),
                    ("✖️ Reject", act(act="reject", id=job.id).pack()),
                ]
            )
        if job.status in (JobStatus.failed, JobStatus.dead):
            rows.append([("🔁 Retry now", act(act="retry", id=job.id).pack())])
        if job.status in (JobStatus.pending_approval, JobStatus.queued, JobStatus.failed) or (
            job.status == JobStatus.running and not job.cancel_requested
        ):
            rows.append([("🛑 Cancel", act(act="cancel", id=job.id).pack())])
    last = [("🔄 Refresh", act(act="refresh", id=job.id).pack())]
    if job.last_error and len(job.last_error) > ERROR_PREVIEW and not details:
        last.insert(0, ("📄 Details", act(act="details", id=job.id).pack()))
    rows.append(last)
    return keyboard(rows)


def job_list(
    page: JobPage, actor: Actor, now: datetime, status: str, kind: str, retryable: int
) -> str:
    title = f"<b>Jobs</b> · {h(status)}" + (f" · <code>{h(kind)}</code>" if kind else "")
    if not page.total:
        return f"{title}\nNo jobs match. Try /jobs all, or /jobs failed."
    lines = [f"{title} · {page.total} total · page {page.page + 1}/{page.pages}", ""]
    for job in page.jobs:
        when = fmt(
            job.run_at
            if job.status in ("queued", "failed", "pending_approval")
            else job.updated_at,
            actor.timezone,
            with_zone=False,
        )
        lines.append(
            f"{ICONS.get(job.status, '•')} #{job.id} <code>{h(job.kind)}</code> · "
            f"{h(job.status.replace('_', ' '))} · {when}"
        )
    if status == "failed" and retryable and actor.at_least(Role.operator):
        lines.append(f"\n{retryable} failed or dead job(s) can be retried.")
    lines.append(f"\nTimes in {h(actor.timezone)}. Tap a job to open it.")
    return clip("\n".join(lines))


def job_list_buttons(
    page: JobPage, actor: Actor, status: str, kind: str, retryable: int
) -> InlineKeyboardMarkup | None:
    rows: list[list[tuple[str, str]]] = []
    row: list[tuple[str, str]] = []
    for job in page.jobs:
        row.append((f"#{job.id}", JobAct(act="refresh", id=job.id).pack()))
        if len(row) == 4:
            rows.append(row)
            row = []
    rows.append(row)
    nav = []
    if page.page > 0:
        nav.append(("◀️ Newer", JobList(status=status, kind=kind, page=page.page - 1).pack()))
    if page.page + 1 < page.pages:
        nav.append(("Older ▶️", JobList(status=status, kind=kind, page=page.page + 1).pack()))
    rows.append(nav)
    if status == "failed" and retryable and actor.at_least(Role.operator):
        rows.append([(f"🔁 Retry all ({retryable})", RetryAll(step="ask", n=retryable).pack())])
    rows.append(
        [
            ("🔄 Refresh", JobList(status=status, kind=kind, page=page.page).pack()),
            ("☰ Menu", Nav(to="menu").pack()),
        ]
    )
    return keyboard(rows)
