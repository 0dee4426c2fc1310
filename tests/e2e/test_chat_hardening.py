"""Chat-side holes found by attack (issue 12 item 6): echoed text, removed operators, strangers'
/start floods."""

from __future__ import annotations

import logging

from tests.e2e.conftest import OPERATOR, Harness


async def test_an_unknown_command_is_echoed_escaped(app: Harness, caplog) -> None:
    caplog.set_level(logging.INFO)
    for text, shown in (
        ("/x<i>y", "I don't know /x<i>y."),
        ("/a&amp;b", "I don't know /a&amp;b."),
        ("/<b>bold</b>", "I don't know /<b>bold</b>."),
    ):
        reply = await app.say(OPERATOR, text, "I don't know")
        # the fake Telegram parses HTML as Telegram would: the text arrives as typed
        assert reply["text"].startswith(shown), reply
        styled = [e for e in reply.get("entities") or [] if e["type"] in ("italic", "bold")]
        assert not styled, reply
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
