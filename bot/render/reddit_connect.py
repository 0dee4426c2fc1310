"""The first message of `/accounts add`: the "Connect with Reddit" button when a web app is
configured, else how to configure one; typing a username keeps the script-app flow."""

from __future__ import annotations

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.render.common import h
from core.reddit_ops.oauth import not_configured_hint

CANCEL_HINT = "\n/cancel stops."


def add_intro(
    authorize_url: str | None, public_base_url: str
) -> tuple[str, InlineKeyboardMarkup | None]:
    if authorize_url is None:
        return (
            "Connect a Reddit account the team owns.\n"
            f"<i>{h(not_configured_hint(public_base_url))}</i>\n\n"
            "Which username? (e.g. u/opsdeck_team) — then its script app's id, secret and "
            "password." + CANCEL_HINT,
            None,
        )
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="🔗 Connect with Reddit", url=authorize_url)]]
    )
    return (
        "Connect a Reddit account the team owns.\n"
        "• <b>Connect with Reddit</b>: sign in on Reddit's own page and allow Opsdeck "
        "(works with two-factor auth; Opsdeck never sees the password). The button is for "
        "you only and works once, within 10 minutes.\n"
        "• Or, with a script app, a refresh token or dry run: Which username? "
        "(e.g. u/opsdeck_team)" + CANCEL_HINT,
        markup,
    )
