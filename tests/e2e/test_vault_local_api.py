"""Behind a local telegram-bot-api server (the fake in local mode): getFile answers a path on
disk, so a file over the cloud API's 20 MB is read from disk into the vault and can be
downloaded over HTTP, not kept as a Telegram-only item."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.e2e.conftest import OPERATOR, STRANGER, Harness
from tests.e2e.test_vault_in_chat import make_link
from tests.fakes.telegram import FakeTelegram

MB = 1024 * 1024


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(local_mode=True) as fake:
        yield fake
    assert not fake.internal_errors, fake.internal_errors


async def test_a_file_over_20_mb_is_read_from_disk_and_served_over_http(
    app: Harness, tmp_path
) -> None:
    data = bytes(range(256)) * (25 * MB // 256) + b"tail"
    source = tmp_path / "footage.bin"
    source.write_bytes(data)
    since = app.tg.mark()
    await app.tg.send_local_file(app.user(OPERATOR), source, caption="raw footage")
    card = await app.tg.wait_for_message(OPERATOR, "file #", since=since)
    digest = hashlib.sha256(data).hexdigest()
    assert digest[:12] in card["text"] and "Telegram-only" not in card["text"], card["text"]
    assert app.tg.downloads == []  # read from the path getFile gave, not fetched over HTTP

    code, url, _ = await make_link(app, card)
    async with aiohttp.ClientSession() as http:  # a script's claim: JSON POST, then the file
        async with http.post(url, headers={"Accept": "application/json"}) as claimed:
            assert claimed.status == 200
            download_url = (await claimed.json())["download_url"]
        async with http.get(download_url) as response:
            assert response.status == 200
            assert hashlib.sha256(await response.read()).hexdigest() == digest

    since = app.tg.mark()
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    got = await app.tg.wait_for_message(STRANGER, "Here is your file", since=since)
    assert "document" in got  # by the file_id Telegram gave, no upload
    assert source.read_bytes() == data  # the bot never touches the server's copy


async def test_the_same_file_twice_is_one_item(app: Harness, tmp_path) -> None:
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    for path in (first, second):
        path.write_bytes(b"same" * (6 * MB))
    since = app.tg.mark()
    await app.tg.send_local_file(app.user(OPERATOR), first)
    card = await app.tg.wait_for_message(OPERATOR, "file #", since=since)
    since = app.tg.mark()
    await app.tg.send_local_file(app.user(OPERATOR), second)
    again = await app.tg.wait_for_message(OPERATOR, "Already in the vault", since=since)
    assert card["text"].split("file #")[1].split()[0] in again["text"]
