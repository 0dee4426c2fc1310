"""The one error handler: a crash is a short answer for the operator, the full story in the log."""

from __future__ import annotations

import logging

from aiogram import Router
from aiogram.filters import Command

from tests.e2e.conftest import OPERATOR, Harness


async def test_unexpected_error_is_short_for_the_operator_and_full_in_the_log(
    app: Harness, caplog
) -> None:
    async def explode(message) -> None:
        raise RuntimeError("kaboom in a handler")

    crashing = Router(name="crashing")
    crashing.message.register(explode, Command("explode"))
    # a router in front of every other one, as a feature with a bug would be
    dp = app.app.dispatcher
    crashing._parent_router = dp
    dp.sub_routers.insert(0, crashing)

    with caplog.at_level(logging.ERROR, logger="bot.errors"):
        reply = await app.say(OPERATOR, "/explode", "went wrong")
    assert "Something went wrong on our side" in reply["text"]
    assert "kaboom" not in reply["text"] and "Traceback" not in reply["text"]
    record = next(r for r in caplog.records if r.name == "bot.errors")
    assert "/explode" in record.getMessage()  # the update is in the log
    assert record.exc_info and "kaboom in a handler" in str(record.exc_info[1])
    assert app.tg.token not in caplog.text
