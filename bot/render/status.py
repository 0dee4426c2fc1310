"""`/status` and `/settings` as phone-sized HTML messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.render.common import MAX_TEXT, clip, h, shorten
from core.masking import mask_urls
from core.status import StatusReport
from core.timefmt import fmt
from core.vault.service import human_size

JOB_ORDER = ("pending_approval", "queued", "running", "failed", "dead", "succeeded", "cancelled")
ACCOUNT_ORDER = ("active", "paused", "suspended", "auth_failed")


@dataclass(frozen=True, slots=True)
class WebhookHealth:
    """From getWebhookInfo; `url` empty means long polling. `error` if the call failed."""

    url: str = ""
    pending: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    error: str | None = None


def duration(seconds: float) -> str:
    """`45s`, `12m`, `3h 5m`, `2d 4h`."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _counts(counts: dict[str, int], order: tuple[str, ...]) -> str:
    keys = [k for k in order if counts.get(k)] + sorted(k for k in counts if k not in order)
    parts = [f"{h(k.replace('_', ' '))} {counts[k]}" for k in keys if counts.get(k)]
    return " · ".join(parts) if parts else "none"


DEPLOYMENT_HIDDEN = (
    "Backups, the Telegram webhook and the version are the deployment's: its owners "
    "(OPSDECK_OWNER_IDS) see them here."
)


def status_text(r: StatusReport, webhook: WebhookHealth | None, tz: str) -> str:
    """`webhook` None: the reader is not a deployment owner (`r.deployment` is False)."""
    p = r.process
    if not p.scheduler_running:
        sched = "⛔ <b>stopped</b>"
    elif r.queue_paused:
        sched = "⏸ <b>paused</b> (workspace queue)"
    else:
        sched = "▶️ running"
    lines = [f"<b>Opsdeck status</b> · {h(fmt(r.now, tz))}", "", f"Scheduler: {sched}"]
    lines.append(f"Jobs: {_counts(r.jobs, JOB_ORDER)}")
    if r.oldest_due_seconds is not None:
        lines.append(f"Oldest queued job waiting: {duration(r.oldest_due_seconds)}")

    lines += ["", f"Accounts: {_counts(r.accounts, ACCOUNT_ORDER)}"]
    if r.next_posts:
        lines.append("Next posts:")
        for post in r.next_posts:
            when = fmt(post.scheduled_for, tz, with_zone=False) if post.scheduled_for else "now"
            note = " (needs approval)" if post.status == "pending_approval" else ""
            lines.append(
                f"• {h(when)} r/{h(post.subreddit)} · u/{h(post.account)} · "
                f"{h(shorten(post.title, 40))}{note}"
            )
    else:
        lines.append("Next posts: none scheduled")

    lines += [
        "",
        f"Vault: {r.vault_items} items · {h(human_size(r.vault_bytes))} · "
        f"{r.active_links} active links",
    ]
    if not r.deployment or webhook is None:
        lines += ["", h(DEPLOYMENT_HIDDEN)]
        return clip("\n".join(lines))
    b = r.backup
    if b is not None and b.managed:
        lines.append(f"Backups: {h(b.managed)} — the database's own backups, not Opsdeck's")
    elif b is None or b.at is None:
        lines.append("Backups: no backups yet")
    else:
        check = "✅ copy checked" if b.ok else "❌ FAILED"
        ago = duration((r.now - b.at).total_seconds())
        detail = f" ({h(shorten(mask_urls(b.detail), 80))})" if b.detail else ""
        lines.append(f"Last backup: {ago} ago · {check}{detail}")

    lines.append("")
    if webhook.error:
        lines.append(
            f"Telegram: getWebhookInfo failed ({h(shorten(mask_urls(webhook.error), 80))})"
        )
    elif not webhook.url:
        lines.append("Telegram: long polling")
    else:
        hook = f"Telegram: webhook · {webhook.pending} pending"
        if webhook.last_error:
            at = (
                f" {duration((r.now - webhook.last_error_at).total_seconds())} ago"
                if (webhook.last_error_at)
                else ""
            )
            hook += f" · last error{at}: {h(shorten(mask_urls(webhook.last_error), 80))}"
        else:
            hook += " · no errors"
        lines.append(hook)
    lines.append(f"Opsdeck {h(p.version)} · {h(p.database)} · up {duration(r.uptime_seconds)}")
    return clip("\n".join(lines))


def settings_pages(rows: list[tuple[str, list[tuple[str, str]]]], accounts: list[str]) -> list[str]:
    """Sections of (name, value) pairs (values already masked where secret), as messages under
    Telegram's length limit, split between sections (a cut inside a tag is a 400). The Reddit
    accounts (whose buttons go on the first message) and the derived values come first."""
    header = "<b>Effective settings</b> (secrets masked)"
    blocks = [["<b>Reddit accounts</b>"]]
    blocks[0] += [f"• {h(a)}" for a in accounts] if accounts else ["none yet (/accounts add)"]
    ordered = [r for r in rows if r[0] == "Effective"] + [r for r in rows if r[0] != "Effective"]
    for section, pairs in ordered:
        blocks.append([f"<b>{h(section)}</b>"] + [f"{h(n)}: <code>{h(v)}</code>" for n, v in pairs])
    pages: list[list[str]] = [[header]]
    for block in blocks:
        text = "\n".join(block)
        if len("\n\n".join([*pages[-1], text])) > MAX_TEXT:
            pages.append(["<b>Effective settings</b> (continued)"])
        pages[-1].append(text)
    return [clip("\n\n".join(page)) for page in pages]


def workspace_settings_text(accounts: list[str], note: str) -> str:
    """What a workspace's owner sees of /settings: their workspace, and why not the rest."""
    lines = ["<b>Workspace settings</b>", "", "<b>Reddit accounts</b>"]
    lines += [f"• {h(a)}" for a in accounts] if accounts else ["none yet (/accounts add)"]
    lines += ["", h(note)]
    return clip("\n".join(lines))
