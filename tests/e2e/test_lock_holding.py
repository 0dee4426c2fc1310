"""No database transaction is held while the bot waits on a slow peer (DESIGN §9).

The fake Telegram answers every call in 2 s (the fake Reddit holds its answer): while an
Approve press, a claim, a Reddit "Test connection" and a vault upload each wait on their
peer, an unrelated write on another connection goes through within 100 ms. That bound is on
lock holding, not speed: a write queued behind a held SQLite write lock (or a PostgreSQL row
lock) would wait until the slow answer arrived, seconds later. The write is timed on its own
and must finish while the slow call is still pending; a few tries allow for a loaded machine
(a held lock would make every one of them wait). On PostgreSQL the write does not wait for
its WAL flush (`synchronous_commit` off, which changes no locking): the disk of a shared
machine is not what is measured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.settings import RedditSettings
from storage.db import create_engine
from storage.repositories import fsm as fsm_repo
from tests.e2e.conftest import OPERATOR, OWNER, STRANGER, Harness
from tests.e2e.test_reddit_accounts import CLIENT_ID, CLIENT_SECRET, PASSWORD, connect
from tests.e2e.test_vault_in_chat import PNG, make_link, upload
from tests.fakes.reddit import FakeReddit

SLOW = 2.0  # seconds every Telegram call takes
BOUND = 0.1  # an unrelated write made meanwhile finishes within this


@pytest.fixture
async def lapp(db_url, start_app) -> Harness:
    return await start_app(database_url=db_url)


@pytest.fixture
async def writer(lapp: Harness, db_url) -> AsyncIterator[AsyncEngine]:
    """Another process's connection, warmed up: only the write itself is timed."""
    engine = create_engine(db_url, pool_size=1)
    async with AsyncSession(engine) as session, session.begin():
        await fsm_repo.save(session, "unrelated:warm-up", lapp.clock.now(), state="x")
    yield engine
    await engine.dispose()


@pytest.fixture
async def reddit() -> AsyncIterator[FakeReddit]:
    async with FakeReddit() as fake:
        yield fake


async def _until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def _pending(app: Harness, *methods: str) -> Callable[[], bool]:
    """Whether a call of one of `methods` is in the fake's hands and not answered yet."""
    wanted = {m.lower() for m in methods}
    return lambda: any(c.status == 0 and c.method.lower() in wanted for c in app.tg.requests)


async def _write_while(app: Harness, writer: AsyncEngine, pending: Callable[[], bool]) -> None:
    await _until(pending, "the slow call to be in flight")
    took: list[float] = []
    for n in range(5):
        started = time.perf_counter()
        async with AsyncSession(writer) as session, session.begin():
            if writer.dialect.name == "postgresql":
                await session.execute(text("SET LOCAL synchronous_commit TO OFF"))
            await fsm_repo.save(session, f"unrelated:{n}", app.clock.now(), state="x")
        took.append(time.perf_counter() - started)
        assert pending(), f"the write waited until the slow call was answered ({took})"
        if took[-1] < BOUND:
            return
    raise AssertionError(f"an unrelated write took {min(took):.3f}s while a call was in flight")


async def test_approve_press(lapp: Harness, writer: AsyncEngine) -> None:
    job_id = await lapp.submit_job("test.ok", requires_approval=True)
    card = await lapp.tg.wait_for_message(OWNER, f"#{job_id}")
    lapp.tg.latency = SLOW
    qid = await lapp.tg.press(lapp.user(OWNER), card, lapp.button(card, "Approve"))
    await _write_while(lapp, writer, _pending(lapp, "answerCallbackQuery"))
    answer = await lapp.tg.wait_answer(qid, timeout=15)
    assert "approved" in (answer.get("text") or "")


async def test_claim(lapp: Harness, writer: AsyncEngine) -> None:
    card = await upload(lapp, OPERATOR, "photo", PNG, caption="slow")
    code, _, _ = await make_link(lapp, card, uses="10")
    lapp.tg.latency = SLOW
    since = lapp.tg.mark()
    await lapp.tg.send_text(lapp.user(STRANGER), f"/start {code}")
    await _write_while(
        lapp, writer, _pending(lapp, "sendPhoto", "sendMessage", "copyMessage", "sendDocument")
    )
    got = await lapp.tg.wait_for_message(STRANGER, "Here is your file", since=since, timeout=20)
    assert "photo" in got


async def test_vault_upload(lapp: Harness, writer: AsyncEngine) -> None:
    lapp.tg.latency = SLOW
    since = lapp.tg.mark()
    await lapp.tg.send_file(lapp.user(OPERATOR), "document", b"slow upload " * 100)
    await _write_while(lapp, writer, _pending(lapp, "getFile", "sendMessage"))
    await lapp.tg.wait_for_message(OPERATOR, "file #", since=since, timeout=30)


async def test_reddit_test_connection(start_app, db_url, reddit: FakeReddit, tmp_path) -> None:
    app = await start_app(
        database_url=db_url,
        reddit=RedditSettings(_env_file=None, oauth_url=reddit.oauth_url, www_url=reddit.www_url),
    )
    engine = create_engine(db_url, pool_size=1)
    try:
        reddit.add_account("team_main", PASSWORD, CLIENT_ID, CLIENT_SECRET, link_karma=7)
        await connect(app, OWNER, "team_main")
        msg = await app.say(OWNER, "/settings", "Effective settings")
        held = reddit.hold("me", process=True)  # Reddit answers when we say so
        app.tg.latency = SLOW
        qid = await app.tg.press(
            app.user(OWNER), msg, app.button(msg, "Test connection u/team_main")
        )
        await asyncio.wait_for(held.arrived.wait(), 15)
        await _write_while(app, engine, lambda: not held.released.is_set())
        held.release()
        answer = await app.tg.wait_answer(qid, timeout=15)
        assert "connected as u/team_main" in answer["text"]
    finally:
        await engine.dispose()
