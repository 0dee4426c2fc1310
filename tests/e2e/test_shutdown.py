"""Graceful stop in polling mode (the default `make run`): an update already fetched is
finished before the database and the Bot session close."""

from __future__ import annotations

import asyncio

from storage.db import create_engine, create_sessionmaker
from storage.repositories import operators as op_repo
from tests.e2e.conftest import OWNER, Harness


async def test_stop_finishes_an_update_in_handling_in_polling_mode(app: Harness) -> None:
    tg = app.tg
    original = tg._handlers["sendmessage"][1]
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held(params: dict, files: dict):
        result = original(params, files)
        if params.get("text", "").startswith("Timezone set to"):
            arrived.set()
            await release.wait()  # Telegram took the message; its answer is slow
        return result

    tg.register_method("sendMessage", held)
    await tg.send_text(app.users[OWNER], "/tz Asia/Tokyo")
    await asyncio.wait_for(arrived.wait(), 15)

    stopping = asyncio.create_task(app.app.stop())
    await asyncio.sleep(0.5)
    assert not stopping.done(), "stop() returned while an update was still in handling"
    release.set()
    await asyncio.wait_for(stopping, 30)
    # the handler ran to its end: no error reply, and its change is committed
    texts = [m["text"] for m in tg.messages(OWNER)]
    assert not any("went wrong" in t for t in texts), texts
    assert any(t.startswith("Timezone set to") for t in texts), texts
    engine = create_engine(app.app.settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            op = await op_repo.by_telegram_id(session, OWNER)
            assert op is not None and op.timezone == "Asia/Tokyo"
    finally:
        await engine.dispose()
