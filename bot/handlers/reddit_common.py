"""What the Reddit handlers share (not a router): their services and how a flow asks."""

from __future__ import annotations

from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from core.reddit_ops import AccountService, PostService
from core.services.container import Services

CANCEL_HINT = "\n/cancel stops."


def posts_of(services: Services) -> PostService:
    return services.reddit_posts


def accounts_of(services: Services) -> AccountService:
    return services.reddit_accounts


async def ask(
    target: Message | CallbackQuery, text: str, markup: InlineKeyboardMarkup | None = None
) -> None:
    """A question of a guided flow, with the way out."""
    message = target.message if isinstance(target, CallbackQuery) else target
    if message is not None:
        await message.answer(text + CANCEL_HINT, reply_markup=markup)
