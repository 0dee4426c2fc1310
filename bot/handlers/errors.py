"""The one error handler: domain errors become short answers, anything else is logged in full."""

from __future__ import annotations

import logging

from aiogram import Router
from aiogram.exceptions import TelegramAPIError
from aiogram.types import ErrorEvent
from aiogram.types.update import UpdateTypeLookupError

from core.errors import Forbidden, OpsdeckError
from core.masking import mask_urls

log = logging.getLogger("bot.errors")


async def on_error(event: ErrorEvent) -> bool:
    exc, update = event.exception, event.update
    if isinstance(exc, UpdateTypeLookupError):
        # An update with no event we know (e.g. `{"update_id": 1}` on the webhook, or a type
        # from a newer Bot API): nobody to answer and nothing broken on our side.
        log.info("update %s ignored: no known event type", update.update_id)
        return True
    if isinstance(exc, OpsdeckError):
        text, alert = mask_urls(exc.message), True
        log.info("update %s: %s: %s", update.update_id, type(exc).__name__, exc.message)
    else:
        text, alert = (
            f"Something went wrong on our side; it was logged (ref {update.update_id}).",
            True,
        )
        log.error(
            "update %s failed: %s",
            update.update_id,
            update.model_dump_json(exclude_none=True)[:2000],
            exc_info=exc,
        )
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(
                text[:200], show_alert=alert or isinstance(exc, Forbidden)
            )
        elif update.message is not None:
            await update.message.answer(text, parse_mode=None)
    except TelegramAPIError:
        log.warning("could not tell the user about the error of update %s", update.update_id)
    return True


def build_router() -> Router:
    router = Router(name="errors")
    router.errors.register(on_error)
    return router
