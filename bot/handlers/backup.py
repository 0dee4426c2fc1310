"""/backup (owners): the last backup and its check, the kept files; /backup now queues one."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.render.common import clip, h
from core.actor import Actor
from core.backup import BackupOverview, BackupRecord, BackupService
from core.errors import InvalidInput
from core.masking import mask_urls
from core.services.container import Services
from core.timefmt import fmt

USAGE = "Usage: /backup — last backup and kept files · /backup now — back up right away"


def _size(n: int | None) -> str:
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _record(r: BackupRecord, tz: str) -> list[str]:
    when = fmt(r.finished_at, tz)
    if r.ok:
        rows = sum(r.row_counts.values())
        return [
            f"✅ {h(when)} · <code>{h(r.file_name)}</code> · {_size(r.size_bytes)} · "
            f"{r.duration_ms} ms",
            f"Check: integrity ok, {rows} rows in {len(r.row_counts)} tables match the source.",
        ]
    return [f"❌ {h(when)} · failed", f"{h(mask_urls(r.error) or 'unknown error')}"]


def render(o: BackupOverview, actor: Actor) -> str:
    if not o.supported:
        return h(o.message or "")
    lines = [f"<b>Backups</b> · {h(o.schedule)} · keep {o.keep} · times in {h(actor.timezone)}"]
    if o.last is None:
        lines.append("No backup yet. /backup now makes one.")
    else:
        lines += ["", "<b>Last run</b>", *_record(o.last, actor.timezone)]
        if not o.last.ok and o.last_good is not None:
            lines += ["", "<b>Last good backup</b>", *_record(o.last_good, actor.timezone)]
    lines += ["", f"<b>Kept files</b> in <code>{h(o.directory)}</code>"]
    lines += [f"• <code>{h(f.name)}</code> · {_size(f.size_bytes)}" for f in o.kept] or ["none"]
    lines.append("\nRestore into an empty data dir with: python -m bot restore &lt;file&gt;")
    return clip("\n".join(lines))


def _service(services: Services) -> BackupService:
    return services.backup


async def backup(
    message: Message, command: CommandObject, actor: Actor, services: Services
) -> None:
    arg = (command.args or "").strip().lower()
    if arg == "now":
        job_id = await _service(services).now(actor)
        await message.answer(
            f"Backup queued as job #{job_id}. It copies the database, checks the copy and "
            "tells you here if anything is wrong; /backup shows the result."
        )
        return
    if arg:
        raise InvalidInput(USAGE)
    await message.answer(render(await _service(services).overview(actor), actor))


def build_router() -> Router:
    router = Router(name="backup")
    router.message.register(backup, Command("backup"))
    return router
