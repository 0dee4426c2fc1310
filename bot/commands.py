"""The command list each role sees (setMyCommands per chat) and strangers' default list."""

from __future__ import annotations

import functools
import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand, BotCommandScopeChat, BotCommandScopeDefault

from storage.models import Role

log = logging.getLogger(__name__)

# (command, description, minimum role)
COMMANDS: list[tuple[str, str, Role]] = [
    ("menu", "main menu", Role.viewer),
    ("jobs", "list jobs: /jobs [status] [kind] · /jobs chart", Role.viewer),
    ("queue", "queue state; /queue pause | resume", Role.viewer),
    ("tz", "your timezone: /tz Europe/Berlin", Role.viewer),
    ("notify", "job alerts on or off: /notify on|off", Role.viewer),
    ("operators", "manage operators", Role.owner),
    ("tenants", "workspaces (configured owners)", Role.owner),
    ("audit", "latest audited changes", Role.owner),
    ("tokens", "API tokens for scripts", Role.owner),
    ("cancel", "leave a guided flow", Role.viewer),
    ("help", "what you can do", Role.viewer),
]
EXTRA_COMMANDS: list[tuple[str, str, Role]] = []  # features append here at import time

RANK = {Role.viewer: 0, Role.operator: 1, Role.owner: 2}


def commands_for(role: Role | str) -> list[BotCommand]:
    return list(_commands_for(Role(role)))


@functools.cache
def _commands_for(role: Role) -> tuple[BotCommand, ...]:
    rank = RANK[role]
    return tuple(
        BotCommand(command=c, description=d)
        for c, d, minimum in [*COMMANDS[:-1], *EXTRA_COMMANDS, COMMANDS[-1]]
        if rank >= RANK[minimum]
    )


async def publish_default(bot: Bot) -> None:
    await bot.set_my_commands(
        [
            BotCommand(command="start", description="start"),
            BotCommand(command="help", description="help"),
        ],
        scope=BotCommandScopeDefault(),
    )


async def publish_for(bot: Bot, user_id: int, role: Role | str | None) -> None:
    """Show `user_id` the commands of `role`; None (removed) falls back to the default list."""
    scope = BotCommandScopeChat(chat_id=user_id)
    try:
        if role is None:
            await bot.delete_my_commands(scope=scope)
        else:
            await bot.set_my_commands(commands_for(role), scope=scope)
    except TelegramAPIError as exc:  # e.g. the user never opened a chat with the bot
        log.info("commands for %s not set: %s", user_id, exc)


EXTRA_COMMANDS += [
    ("vault", "files: /vault [kind] · /vault stats", Role.viewer),
    ("links", "active claim links", Role.viewer),
    ("shorten", "short link with click counting: /shorten <url>", Role.operator),
]

EXTRA_COMMANDS += [
    ("accounts", "Reddit accounts: list · /accounts add", Role.viewer),
    ("post", "compose a Reddit post", Role.operator),
    ("posts", "Reddit posts: upcoming, published, all", Role.viewer),
]

EXTRA_COMMANDS += [
    ("backup", "last backup and its check; /backup now", Role.owner),
]

EXTRA_COMMANDS += [
    ("status", "how Opsdeck is doing", Role.viewer),
    ("settings", "effective settings, secrets masked", Role.owner),
]

EXTRA_COMMANDS += [
    ("stats", "chart of Reddit posts: /stats [7d|30d]", Role.viewer),
]
