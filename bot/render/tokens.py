"""How /tokens shows API tokens."""

from __future__ import annotations

from datetime import datetime

from aiogram.types import InlineKeyboardMarkup

from bot.callbacks import TokenAct
from bot.render.common import clip, h, keyboard
from core.timefmt import fmt
from storage.api_models import ApiToken

USAGE = (
    "Usage:\n/tokens — list API tokens\n"
    "/tokens new <name> <operator|viewer|owner> [lifetime in days, e.g. 90d]"
)


def token_state(token: ApiToken, now: datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


def token_list(
    tokens: list[ApiToken], now: datetime, tz: str
) -> tuple[str, InlineKeyboardMarkup | None]:
    lines = ["<b>API tokens</b>"]
    buttons = []
    if not tokens:
        lines.append("None yet.")
    for t in tokens:
        state = token_state(t, now)
        used = fmt(t.last_used_at, tz) if t.last_used_at else "never"
        expires = (
            f" · expires {fmt(t.expires_at, tz)}" if t.expires_at and state == "active" else ""
        )
        lines.append(f"• <b>{h(t.name)}</b> · {t.role} · {state}{expires} · last used {used}")
        if state == "active":
            buttons.append([(f"Revoke {t.name}", TokenAct(act="ask", id=t.id).pack())])
    lines.append("\nNew: /tokens new &lt;name&gt; &lt;operator|viewer|owner&gt; [90d]")
    return clip("\n".join(lines)), keyboard(buttons)


def created_text(token: ApiToken, secret: str, base_url: str, tz: str) -> str:
    expires = fmt(token.expires_at, tz) if token.expires_at else "never"
    return (
        f"API token <b>{h(token.name)}</b> ({token.role}), expires {expires}.\n\n"
        f"<code>{h(secret)}</code>\n\n"
        "Shown this once: copy it now (it is stored only as a hash). Use it as\n"
        f"<code>Authorization: Bearer …</code> against {h(base_url)}/api/v1 "
        f"(docs: {h(base_url)}/api/v1/docs). Delete this message once it is saved."
    )
