"""The shape of a claim code (`core.crypto.new_claim_code`: 256 bits → 43 URL-safe chars)."""

from __future__ import annotations

import re

CODE_LENGTH = 43
_CODE = re.compile(rf"[A-Za-z0-9_-]{{{CODE_LENGTH}}}")


def is_well_formed(code: object) -> bool:
    """Whether `code` could be a claim code at all; anything else is never looked up."""
    return isinstance(code, str) and _CODE.fullmatch(code) is not None


def deep_link(bot_username: str, code: str) -> str:
    """The Telegram door: opens the bot with `/start <code>` (a 64-char payload fits)."""
    return f"https://t.me/{bot_username.lstrip('@')}?start={code}"


def http_link(public_base_url: str, code: str) -> str:
    """The HTTP door, served by `bot.web_claims`."""
    return f"{public_base_url.rstrip('/')}/claim/{code}"
