"""The outbox and its Sender against the fake Telegram server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from sqlalchemy import select

from bot.outbox import Outbox, OutboxSettings, Sender, SentMessage, wait_idle
from core.clock import SystemClock
from storage.outbox_models import OutboxMessage, OutboxStatus
from storage.uow import UnitOfWork
from tests.fakes.telegram import FakeTelegram

FAST = dict(poll_seconds=0.2, backoff_base_seconds=0.2, shutdown_timeout_seconds=3)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake
    assert not fake.internal_errors, fake.internal_errors


@pytest.fixture
async def bots(tg) -> AsyncIterator[list[Bot]]:
    made: list[Bot] = []
    yield made
    for bot in made:
        await bot.session.close()


def make_bot(tg: FakeTelegram, bots: list[Bot]) -> Bot:
    bot = Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url)))
    bots.append(bot)
    return bot


@pytest.fixture
async def uow(engine) -> AsyncIterator[UnitOfWork]:
    work = UnitOfWork(engine)
    yield work
    await work.dispose()


async def rows(sessionmaker) -> list[OutboxMessage]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def test_paced_under_the_enforced_limit_no_429(sessionmaker, uow, tg, bots) -> None:
    users = [tg.user(5000 + i, f"U{i}") for i in range(4)]
    tg.enforce_rate_limit(per_second=10, per_chat_per_second=1, retry_after=1)
    outbox = Outbox(uow, SystemClock())
    settings = OutboxSettings(global_per_second=8, per_chat_per_second=1.0, **FAST)
    sender = Sender(make_bot(tg, bots), uow, settings=settings, outbox=outbox)
    for n in range(3):  # 3 per chat, in order
        for u in users:
            await outbox.send_message(u["id"], f"msg {n}")
    started = time.monotonic()
    await sender.start()
    counts = await wait_idle(sessionmaker, within=15)
    elapsed = time.monotonic() - started
    await sender.stop()
    assert counts == {"sent": 12}
    assert tg.rate_limited_count == 0
    assert elapsed >= 2.0  # three messages per chat at 1/s take at least two seconds
    for u in users:  # per-chat order kept
        assert [m["text"] for m in tg.messages(u["id"])] == ["msg 0", "msg 1", "msg 2"]
    # spacing per chat as Telegram saw it
    by_chat: dict[int, list[float]] = {}
    for at, chat, _method, _mid in tg.accepted_log:
        by_chat.setdefault(chat, []).append(at)
    for times in by_chat.values():
        assert all(b - a >= 0.95 for a, b in itertools.pairwise(times))


async def test_429_honoured_and_nothing_lost(sessionmaker, uow, tg, bots) -> None:
    users = [tg.user(6000 + i, f"U{i}") for i in range(40)]
    # the sender is configured faster than the server allows: 429s must not lose messages
    tg.enforce_rate_limit(per_second=10, per_chat_per_second=1, retry_after=1)
    outbox = Outbox(uow, SystemClock())
    sender = Sender(
        make_bot(tg, bots),
        uow,
        settings=OutboxSettings(global_per_second=30, **FAST),
        outbox=outbox,
    )
    for u in users:
        await outbox.send_message(u["id"], "hello")
    await sender.start()
    counts = await wait_idle(sessionmaker, within=30)
    await sender.stop()
    assert counts == {"sent": 40}
    assert tg.rate_limited_count > 0 and sender.retry_after_count == tg.rate_limited_count
    assert all(tg.accepted_sends[u["id"]] == 1 for u in users)


async def test_429_retry_after_holds_the_chat(sessionmaker, uow, tg, bots) -> None:
    ann = tg.user(7001, "Ann")
    tg.fail_next("sendMessage", 429, retry_after=2)
    outbox = Outbox(uow, SystemClock())
    sender = Sender(make_bot(tg, bots), uow, settings=OutboxSettings(**FAST), outbox=outbox)
    await outbox.send_message(ann["id"], "one")
    started = time.monotonic()
    await sender.start()
    await tg.wait_for_message(ann["id"], "one", timeout=6)
    assert time.monotonic() - started >= 1.9
    await wait_idle(sessionmaker)
    await sender.stop()
    (row,) = await rows(sessionmaker)
    assert row.status == OutboxStatus.sent and row.attempts == 1  # the 429 is not a failed try


async def test_permanent_errors_fail_without_retry(sessionmaker, uow, tg, bots) -> None:
    ann = tg.user(7101, "Ann")
    outbox = Outbox(uow, SystemClock())
    sender = Sender(make_bot(tg, bots), uow, settings=OutboxSettings(**FAST), outbox=outbox)
    tg.fail_next("sendMessage", 403)
    blocked = await outbox.send_message(ann["id"], "blocked")
    nobody = await outbox.send_message(999_999, "nobody")  # 400 chat not found
    await sender.start()
    await wait_idle(sessionmaker)
    await sender.stop()
    by_id = {r.id: r for r in await rows(sessionmaker)}
    assert by_id[blocked].status == by_id[nobody].status == OutboxStatus.failed
    assert by_id[blocked].attempts == by_id[nobody].attempts == 1
    assert "chat not found" in by_id[nobody].last_error
    assert "blocked" in by_id[blocked].last_error
    assert len(tg.calls("sendMessage")) == 2


async def test_server_errors_retried_with_backoff(sessionmaker, uow, tg, bots) -> None:
    ann = tg.user(7201, "Ann")
    tg.fail_next("sendMessage", 500, times=2)
    outbox = Outbox(uow, SystemClock())
    sender = Sender(make_bot(tg, bots), uow, settings=OutboxSettings(**FAST), outbox=outbox)
    await outbox.send_message(ann["id"], "eventually")
    await sender.start()
    await tg.wait_for_message(ann["id"], "eventually", timeout=6)
    await wait_idle(sessionmaker)
    await sender.stop()
    (row,) = await rows(sessionmaker)
    assert row.status == OutboxStatus.sent and row.attempts == 3
    assert tg.accepted_sends[ann["id"]] == 1


async def test_restart_sends_pending_and_not_what_was_sent(sessionmaker, uow, tg, bots) -> None:
    users = [tg.user(7300 + i, f"U{i}") for i in range(6)]
    outbox = Outbox(uow, SystemClock())
    first = Sender(make_bot(tg, bots), uow, settings=OutboxSettings(**FAST), outbox=outbox)
    for u in users[:3]:
        await outbox.send_message(u["id"], "before")
    await first.start()
    await wait_idle(sessionmaker)
    await first.stop()
    # queued while no sender runs, plus one row a crashed sender left `sending`
    for u in users[3:]:
        await outbox.send_message(u["id"], "while down")
    async with sessionmaker() as session:
        from datetime import timedelta

        from storage.repositories import outbox as repo

        crashed = await repo.claim(
            session, owner="dead-process", now=SystemClock().now(), lease=timedelta(0), limit=1
        )
        await session.commit()
    assert len(crashed) == 1
    second = Sender(make_bot(tg, bots), uow, settings=OutboxSettings(**FAST))
    await second.start()
    counts = await wait_idle(sessionmaker)
    await second.stop()
    assert counts == {"sent": 6}
    assert all(tg.accepted_sends[u["id"]] == 1 for u in users)


async def test_ambiguous_rows_can_opt_out_of_resending(sessionmaker, uow, tg, bots) -> None:
    ann = tg.user(7401, "Ann")
    outbox = Outbox(uow, SystemClock())
    row_id = await outbox.send_message(ann["id"], "secret", retry_ambiguous=False)
    from datetime import timedelta

    from storage.repositories import outbox as repo

    async with sessionmaker() as session:  # a sender died after claiming (maybe mid-send)
        await repo.claim(
            session, owner="dead", now=SystemClock().now(), lease=timedelta(0), limit=5
        )
        await session.commit()
    sender = Sender(make_bot(tg, bots), uow, settings=OutboxSettings(**FAST))
    await sender.start()
    await wait_idle(sessionmaker)
    await sender.stop()
    (row,) = await rows(sessionmaker)
    assert row.id == row_id and row.status == OutboxStatus.failed
    assert "outcome unknown" in row.last_error
    assert tg.accepted_sends[ann["id"]] == 0


async def test_two_senders_never_send_a_row_twice(sessionmaker, uow, tg, bots) -> None:
    users = [tg.user(8000 + i, f"U{i}") for i in range(60)]
    outbox = Outbox(uow, SystemClock())
    settings = OutboxSettings(global_per_second=200, per_chat_per_second=50, batch_size=10, **FAST)
    a = Sender(make_bot(tg, bots), uow, settings=settings, outbox=outbox, owner="a")
    b = Sender(make_bot(tg, bots), uow, settings=settings, outbox=outbox, owner="b")
    for n in range(2):
        for u in users:
            await outbox.send_message(u["id"], f"m{n}")
    await asyncio.gather(a.start(), b.start())
    counts = await wait_idle(sessionmaker, within=30)
    await asyncio.gather(a.stop(), b.stop())
    assert counts == {"sent": 120}
    assert a.sent_count > 0 and b.sent_count > 0
    assert Counter(tg.accepted_sends.values()) == Counter({2: 60})
    for u in users:
        assert [m["text"] for m in tg.messages(u["id"])] == ["m0", "m1"]


async def test_enqueue_dedupe_markup_and_hooks(sessionmaker, uow, tg, bots) -> None:
    ann = tg.user(8101, "Ann")
    outbox = Outbox(uow, SystemClock())
    sender = Sender(make_bot(tg, bots), uow, settings=OutboxSettings(**FAST), outbox=outbox)
    seen: list[SentMessage] = []

    async def remember(sent: SentMessage) -> None:
        seen.append(sent)

    sender.add_hook("remember", remember)
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Go", callback_data="go")]]
    )
    async with sessionmaker() as session:  # inside the caller's transaction
        first = await outbox.send_message(
            ann["id"], "<b>hi</b>", reply_markup=markup, dedupe_key="k1", session=session,
            hook="remember", hook_data={"item": 7}, parse_mode="HTML",
        )  # fmt: skip
        again = await outbox.send_message(ann["id"], "dup", dedupe_key="k1", session=session)
        await session.commit()
    assert first == again
    await sender.start()
    message = await tg.wait_for_message(ann["id"], "hi", timeout=5)
    await wait_idle(sessionmaker)
    await sender.stop()
    assert tg.buttons(message) == [("Go", "go")]
    assert tg.accepted_sends[ann["id"]] == 1
    assert len(seen) == 1 and seen[0].hook_data == {"item": 7}
    assert seen[0].message_id == message["message_id"]
    (row,) = await rows(sessionmaker)
    assert row.result_message_id == message["message_id"]
