"""One send budget per bot token (issue 11 item 3): senders in separate OS processes
(tests/integration/sender_proc.py, the production `Sender`) share the global and per-chat
pace through the database, on SQLite and PostgreSQL, against the fake Telegram, which
answers 429 above the limit and records when it accepted each send.

Checked: two processes together never go over the limit (no 429; no sliding second holds
more than the limit) and both send; one process alone reaches the whole limit (a sliding
second holds all of it, not half); a chat's messages stay a second apart whichever process
sends them; a killed process's claimed rows are sent by the other once their lease ends.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.outbox import Outbox
from core.clock import SystemClock
from storage.outbox_models import OutboxMessage, OutboxStatus
from storage.uow import UnitOfWork
from tests.fakes.telegram import FakeTelegram

pytestmark = pytest.mark.slow

PROC = Path(__file__).with_name("sender_proc.py")
ROOT = Path(__file__).resolve().parents[2]
LIMIT = 10  # messages/s: low enough that a busy test machine keeps up with it
FIRST_CHAT = 700_000


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        fake.enforce_rate_limit(per_second=LIMIT, per_chat_per_second=1, retry_after=1)
        yield fake
    assert not fake.internal_errors, fake.internal_errors


@pytest.fixture
async def uow(engine) -> AsyncIterator[UnitOfWork]:
    work = UnitOfWork(engine)
    yield work
    await work.dispose()


class Proc:
    def __init__(self, proc: asyncio.subprocess.Process, owner: str) -> None:
        self.proc, self.owner = proc, owner

    async def stop(self) -> int:
        """SIGTERM; the number of messages it sent."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(self.proc.communicate(), timeout=30)
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("sent ")]
        assert self.proc.returncode == 0 and lines, out.decode()
        return int(lines[-1].split()[1])

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()


@pytest.fixture
async def spawn(db_url, tg) -> AsyncIterator:
    procs: list[Proc] = []

    async def start(owner: str, lease_seconds: float = 60.0) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(PROC),
            "--url", db_url,
            "--api", tg.base_url,
            "--token", tg.token,
            "--owner", owner,
            "--rate", str(LIMIT),
            "--lease-seconds", str(lease_seconds),
            # small batches: both processes get rows to send, so both draw on the budget
            "--batch-size", "10",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert line.strip() == b"ready", line
        made = Proc(proc, owner)
        procs.append(made)
        return made

    yield start
    for p in procs:
        if p.proc.returncode is None:
            p.proc.kill()
            await p.proc.wait()


async def enqueue(uow: UnitOfWork, tg: FakeTelegram, chats: int, per_chat: int = 1) -> list[int]:
    outbox = Outbox(uow, SystemClock())
    ids = [FIRST_CHAT + i for i in range(chats)]
    for chat in ids:
        tg.user(chat, f"U{chat}")
    for n in range(per_chat):
        for chat in ids:
            await outbox.send_message(chat, f"m{n}")
    return ids


def busiest_second(times: list[float]) -> int:
    """The most sends the fake accepted within any one-second window."""
    times = sorted(times)
    return max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))


async def all_sent(tg: FakeTelegram, chats: list[int], per_chat: int = 1, timeout=120.0):
    await tg.wait_until(
        lambda: all(tg.accepted_sends[c] >= per_chat for c in chats),
        timeout=timeout,
        what="every chat's messages",
    )


async def test_two_processes_together_stay_within_the_budget(uow, tg, spawn) -> None:
    a, b = await spawn("a"), await spawn("b")
    chats = await enqueue(uow, tg, chats=40, per_chat=2)
    await all_sent(tg, chats, per_chat=2)
    sent_a, sent_b = await a.stop(), await b.stop()
    assert tg.rate_limited_count == 0
    assert sent_a + sent_b == 80 and sent_a > 0 and sent_b > 0, (sent_a, sent_b)
    times = [at for at, chat, _, _ in tg.accepted_log if chat in set(chats)]
    assert busiest_second(times) <= LIMIT
    # each chat's second message came a second after its first, and in order
    by_chat: dict[int, list[float]] = {}
    for at, chat, _, _ in tg.accepted_log:
        by_chat.setdefault(chat, []).append(at)
    for chat in chats:
        assert [m["text"] for m in tg.messages(chat)] == ["m0", "m1"]
        assert all(later - first >= 0.95 for first, later in itertools.pairwise(by_chat[chat]))


async def test_one_process_alone_uses_the_whole_budget(uow, tg, spawn) -> None:
    chats = await enqueue(uow, tg, chats=60)
    a = await spawn("alone")
    await all_sent(tg, chats)
    assert await a.stop() == 60
    assert tg.rate_limited_count == 0
    times = [at for at, chat, _, _ in tg.accepted_log if chat in set(chats)]
    # not a share of it: a second with the whole limit (half would be 5)
    assert busiest_second(times) >= LIMIT - 1


async def test_a_killed_senders_rows_are_sent_by_the_other_after_the_lease(
    uow, tg, spawn, sessionmaker
) -> None:
    lease = 4.0
    chats = await enqueue(uow, tg, chats=40)
    a = await spawn("doomed", lease_seconds=lease)
    await tg.wait_until(lambda: sum(tg.accepted_sends.values()) >= 5, timeout=60, what="5 sent")
    await a.kill()
    async with sessionmaker() as session:
        held = (
            await session.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.status == OutboxStatus.sending,
                    OutboxMessage.lease_owner == "doomed",
                )
            )
        ).all()
    assert held, "the killed sender held no rows"
    expiry = {row.chat_id: row.lease_expires_at for row in held}
    b = await spawn("heir", lease_seconds=lease)
    await all_sent(tg, chats)
    assert await b.stop() >= len(held) - 1  # one may have been in flight when it died
    async with sessionmaker() as session:
        statuses = Counter((await session.scalars(select(OutboxMessage.status))).all())
    assert statuses == {"sent": 40}
    assert tg.rate_limited_count == 0
    for at, chat, _, _ in tg.accepted_log:  # taken over only once the lease ran out
        if chat in expiry and tg.accepted_sends[chat] == 1:
            assert datetime.fromtimestamp(at, UTC) >= expiry[chat]
