"""Chat-side holes found by attack (issue 12 item 6): echoed text, removed operators, strangers'
/start floods."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select

from storage.models import FsmRecord
from storage.repositories import fsm as fsm_repo
from tests.e2e.conftest import OPERATOR, OWNER, STRANGER, WAIT, Harness
from tests.e2e.test_vault_in_chat import make_link, upload


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


async def handled_messages(app: Harness) -> float:
    registry = app.app.metrics.registry
    return sum(
        registry.get_sample_value("opsdeck_updates_total", {"type": "message", "outcome": outcome})
        or 0
        for outcome in ("handled", "unhandled", "error")
    )


async def wait_handled(app: Harness, n: float) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while await handled_messages(app) < n:
        assert asyncio.get_running_loop().time() < deadline, "updates not handled in time"
        await asyncio.sleep(0.05)


async def test_a_strangers_start_flood_gets_one_answer_a_minute_and_claims_still_work(
    app: Harness,
) -> None:
    card = await upload(app, OPERATOR, "document", b"for the claimer", file_name="c.txt")
    code, _, _ = await make_link(app, card, uses="10")
    expiring = await upload(app, OPERATOR, "document", b"short-lived", file_name="e.txt")
    old_code, _, _ = await make_link(app, expiring, life="1h")
    before = await handled_messages(app)
    for text in ["/start"] * 20 + ["hello", "/jobs"] * 5:
        await app.tg.send_text(app.user(STRANGER), text)
    await wait_handled(app, before + 30)
    answers = app.tg.messages(STRANGER)
    assert len(answers) == 1 and "private operations bot" in answers[0]["text"], answers
    # inside the same minute a real claimer still gets the file, and a word about a real link
    since = app.tg.mark()
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    got = await app.tg.wait_for_message(STRANGER, "Here is your file", since=since, timeout=WAIT)
    assert "document" in got
    app.clock.advance(3601)
    assert "expired" in (await app.say(STRANGER, f"/start {old_code}", "expired"))["text"]
    # and the first mistyped code is answered (the failure limit bounds those)
    assert "does not exist" in (await app.say(STRANGER, f"/start {'A' * 43}"))["text"]


async def fsm_rows(app: Harness, user_id: int) -> list[FsmRecord]:
    async with app.app.sessionmaker() as session:
        stmt = select(FsmRecord).where(FsmRecord.storage_key.like(f"%:{user_id}"))
        return list((await session.execute(stmt)).scalars())


async def test_removing_an_operator_clears_their_flow(app: Harness, caplog) -> None:
    caplog.set_level(logging.INFO)
    await app.say(OPERATOR, "/accounts add", "")
    assert [r.state for r in await fsm_rows(app, OPERATOR)] != [None]
    await app.say(OWNER, f"/operators remove {OPERATOR}", "Removed")
    assert await fsm_rows(app, OPERATOR) == []
    refused = await app.say(OPERATOR, "team_main")
    assert "private operations bot" in refused["text"] and "ask an owner" in refused["text"]
    # added back, they start afresh: the old step does not resume
    await app.say(OWNER, f"/operators add {OPERATOR}", "Added")
    fresh = await app.say(OPERATOR, "team_main")
    assert "didn't understand" in fresh["text"], fresh["text"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_flow_that_outlived_the_removal_is_dropped_with_a_clean_refusal(
    app: Harness, caplog
) -> None:
    """The removal raced a step of the operator's flow, which wrote its state afterwards."""
    caplog.set_level(logging.INFO)
    await app.say(OPERATOR, "/accounts add", "")
    rows = await fsm_rows(app, OPERATOR)
    await app.say(OWNER, f"/operators remove {OPERATOR}", "Removed")
    async with app.app.sessionmaker() as session:
        for row in rows:
            await fsm_repo.save(session, row.storage_key, app.clock.now(), state=row.state)
        await session.commit()
    reply = await app.say(OPERATOR, "team_main")
    assert "no longer an operator" in reply["text"], reply["text"]
    assert await fsm_rows(app, OPERATOR) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
