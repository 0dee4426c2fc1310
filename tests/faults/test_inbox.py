"""The durable inbox on SQLite (DESIGN §10, issue 11 item 2): an update is stored before
Telegram is told it arrived, a resent update is handled once, a database that cannot take the
update gets a 503 (Telegram sends it again), and the real `python -m bot run`, SIGKILLed while
it handles an update, has that update taken up again after a restart within 30 s (the lease,
production defaults)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time

import aiohttp
import pytest

from tests.e2e.conftest import OWNER, Harness
from tests.fakes.telegram import FakeTelegram
from tests.faults.test_process_kill import BotProcess, HeldSend, bot, chat, kill_when, reddit

__all__ = ["bot", "reddit"]  # fixtures reused from the process-kill tests

HELP = "What you can do"
TAKEOVER_WITHIN = 30.0  # the bound; the default lease is 15 s


def help_update(update_id: int, user_id: int = OWNER) -> dict:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "from": {"id": user_id, "is_bot": False, "first_name": "Olga"},
            "chat": {"id": user_id, "type": "private", "first_name": "Olga"},
            "date": int(time.time()),
            "text": "/help",
            "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
        },
    }


async def post(app: Harness, update: dict) -> int:
    url = app.app.settings.telegram.webhook_url
    assert url
    headers = {"X-Telegram-Bot-Api-Secret-Token": "e2e-secret-token"}
    async with aiohttp.ClientSession() as http, http.post(url, json=update, headers=headers) as r:
        return r.status


def help_replies(tg: FakeTelegram) -> int:
    return sum(HELP in (m.get("text") or "") for m in tg.messages(OWNER))


def inbox_rows(app: Harness) -> list[tuple]:
    db = app.app.settings.database_url.split("///", 1)[1]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT update_id, attempts, handled_at IS NOT NULL, raw IS NULL FROM inbox"
        ).fetchall()
    finally:
        conn.close()


async def test_a_resent_update_is_handled_once(start_app) -> None:
    app = await start_app(webhook=True)
    update = help_update(700_000_001)
    statuses = await asyncio.gather(*(post(app, update) for _ in range(3)))  # concurrent
    assert statuses == [200, 200, 200]
    await app.tg.wait_until(lambda: help_replies(app.tg) >= 1, timeout=15, what="the answer")
    await app.app.inbox.drain(15)
    assert await post(app, update) == 200  # and once more after it was handled
    await app.app.inbox.drain(15)
    await asyncio.sleep(0.5)
    assert help_replies(app.tg) == 1
    # kept as an id only: what the update said is dropped once it is handled
    assert inbox_rows(app) == [(700_000_001, 1, 1, 1)]


async def test_updates_of_one_chat_run_in_order_whatever_the_arrival_order(start_app) -> None:
    app = await start_app(webhook=True)
    original = app.tg._handlers["sendmessage"][1]
    busy, release = asyncio.Event(), asyncio.Event()

    async def slow_help(params: dict, files: dict):
        if HELP in params.get("text", "") and not release.is_set():
            busy.set()
            await release.wait()
        return original(params, files)

    app.tg.register_method("sendMessage", slow_help)
    assert await post(app, help_update(700_000_100)) == 200
    await asyncio.wait_for(busy.wait(), 15)  # the chat is busy with update 100
    # Telegram may deliver concurrently and out of order: every distinct id is kept, and
    # the chat's updates wait for the one in handling, then run in update_id order
    ids = [700_000_105, 700_000_103, 700_000_104, 700_000_101, 700_000_102]
    for uid in ids:
        update = help_update(uid)
        update["message"]["text"] = f"/tz Etc/GMT-{uid % 100}"
        update["message"]["entities"][0]["length"] = 3
        assert await post(app, update) == 200
    await asyncio.sleep(0.3)
    assert not [m for m in app.tg.messages(OWNER) if "Timezone" in (m.get("text") or "")]
    release.set()
    await app.app.inbox.drain(30)
    replies = [m["text"] for m in app.tg.messages(OWNER) if "Timezone" in (m.get("text") or "")]
    zones = [re.search(r"Etc/GMT-(\d)", r).group(1) for r in replies]  # type: ignore[union-attr]
    assert zones == ["1", "2", "3", "4", "5"], replies
    assert len(inbox_rows(app)) == 6


async def test_the_webhook_answers_503_while_the_database_cannot_take_the_update(
    start_app,
) -> None:
    app = await start_app(webhook=True)
    app.app.inbox.settings.ingest_timeout_seconds = 1.0
    db = app.app.settings.database_url.split("///", 1)[1]
    blocker = sqlite3.connect(db, timeout=0, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    update = help_update(700_000_201)
    try:
        assert await post(app, update) == 503  # not stored: Telegram must send it again
        assert help_replies(app.tg) == 0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # Telegram's retry: stored (or found stored: the first try committed once the lock
    # went), handled once
    assert await post(app, update) == 200
    await app.tg.wait_until(lambda: help_replies(app.tg) >= 1, timeout=15, what="the answer")
    await app.app.inbox.drain(15)
    await asyncio.sleep(0.5)
    assert help_replies(app.tg) == 1


async def test_a_backlog_waits_in_the_table_not_in_memory(start_app) -> None:
    """A burst beyond what the process may hold unstored is answered only once stored (the
    POSTs wait), nothing is dropped, every update is handled once."""
    app = await start_app(webhook=True)
    app.app.inbox.settings.max_waiting = 5
    updates = [help_update(700_000_300 + n, OWNER) for n in range(60)]
    statuses = await asyncio.gather(*(post(app, u) for u in updates))
    assert set(statuses) == {200}, statuses
    await app.app.inbox.drain(60)
    assert help_replies(app.tg) == 60
    assert app.app.inbox._waiting_rows == 0


@pytest.mark.slow
async def test_an_update_in_handling_when_its_process_died_is_handled_after_a_restart(
    bot: BotProcess, tg: FakeTelegram
) -> None:
    """Production lease (INBOX_LEASE_SECONDS=15): the restarted process takes the dead one's
    update over within 30 s; the answer that never went out goes out once."""
    await bot.start()
    h = chat(tg)
    held = HeldSend(tg, "sendMessage", handled=False)  # the reply never reaches the chat
    await tg.send_text(h.user(OWNER), "/help")
    await kill_when(bot, held.arrived, "the /help reply")
    held.release()
    ((update_id, attempts, handled),) = bot.query(
        "SELECT update_id, attempts, handled_at IS NOT NULL FROM inbox"
    )
    assert (attempts, handled) == (1, 0)  # stored, in handling when the process died
    since = tg.mark()
    await bot.start()
    restarted = time.monotonic()
    try:
        await tg.wait_for_message(OWNER, HELP, since=since, timeout=TAKEOVER_WITHIN)
    except AssertionError:
        raise AssertionError(f"not taken over in {TAKEOVER_WITHIN} s:\n{bot.output()}") from None
    print(f"\ntaken over {time.monotonic() - restarted:.1f} s after the restart")
    await asyncio.sleep(1.5)
    assert help_replies(tg) == 1
    assert bot.query("SELECT update_id, attempts, handled_at IS NOT NULL FROM inbox") == [
        (update_id, 2, 1)
    ]
    assert "handled again (try 2)" in bot.output()
