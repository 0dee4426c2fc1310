"""Connecting to Telegram at start-up, on a real network.

A token Telegram refuses is a configuration error: one line naming TELEGRAM_BOT_TOKEN (the CLI
exits 2). Telegram out of reach (no route, DNS, timeouts, 5xx) is expected on a real network:
one log line per attempt, backing off, until it answers; meanwhile `/readyz` says why the
process is not ready (`TelegramLink.check`). Neither prints a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import random

from aiogram import Bot
from aiogram.exceptions import (
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import User

from core.errors import ConfigError

log = logging.getLogger(__name__)

FIRST_WAIT_SECONDS = 1.0
MAX_WAIT_SECONDS = 15.0  # so the bot is back within seconds of the network


class TelegramLink:
    """Whether this process has reached Telegram yet, for `/readyz`."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.state = "connecting"

    def check(self) -> str:
        return self.state

    async def connect(self, bot: Bot) -> User:
        """`getMe` until Telegram answers; ConfigError when it refuses the token."""
        wait, attempt = FIRST_WAIT_SECONDS, 0
        while True:
            attempt += 1
            try:
                me = await bot.get_me()
            except (TelegramUnauthorizedError, TelegramNotFound) as exc:
                self.state = "error: Telegram refused the bot token"
                raise ConfigError(
                    f"TELEGRAM_BOT_TOKEN was refused by Telegram ({exc.message.strip()}): "
                    "check the token @BotFather gave you (/mybots → API Token), or revoke it "
                    "there and use the new one."
                ) from None
            except TelegramRetryAfter as exc:
                reason, delay = f"asked to wait {exc.retry_after} s", float(exc.retry_after)
            except (TelegramNetworkError, TelegramServerError) as exc:
                reason, delay = _reason(exc), wait
                wait = min(MAX_WAIT_SECONDS, wait * 2)
            else:
                self.state = "ok"
                if attempt > 1:
                    log.info("Telegram reached after %d attempts", attempt)
                return me
            self.state = f"unreachable: {reason}"
            delay *= random.uniform(1.0, 1.2)  # processes restarted together spread out
            log.warning(
                "Telegram is unreachable at %s (%s); attempt %d, retrying in %.0f s",
                self.api_url,
                reason,
                attempt,
                delay,
            )
            await asyncio.sleep(delay)


def _reason(exc: TelegramNetworkError | TelegramServerError) -> str:
    """One short line: the cause without aiogram's wrapping or the request's URL (token)."""
    text = exc.message.strip().splitlines()[0] if exc.message.strip() else type(exc).__name__
    return text[:200]
