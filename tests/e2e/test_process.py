"""The real `python -m bot run` process: embedded defaults, long polling, clean SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

from tests.e2e.conftest import free_port
from tests.fakes.telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]


async def wait_healthy(port: int, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status == 200:
                    return
            except aiohttp.ClientError:
                pass
            assert asyncio.get_running_loop().time() < deadline, "the bot did not come up"
            await asyncio.sleep(0.2)


async def test_bot_process_answers_and_stops_cleanly_on_sigterm(tmp_path, tg: FakeTelegram) -> None:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM_", "OPSDECK_", "DATABASE_", "VAULT_", "HTTP_", "PUBLIC_"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        TELEGRAM_BOT_TOKEN=tg.token,
        TELEGRAM_API_URL=tg.base_url,
        OPSDECK_OWNER_IDS="1001",
        HTTP_PORT=str(port),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        owner = tg.user(1001, "Olga")
        await wait_healthy(port)
        since = tg.mark()
        await tg.send_text(owner, "/menu")
        menu = await tg.wait_for_message(1001, "Choose a section", since=since, timeout=10)
        assert "owner" in menu["text"]
        # the embedded defaults: SQLite and the secret key in ./data
        assert (tmp_path / "data" / "opsdeck.db").exists()
        assert (tmp_path / "data" / "secret.key").stat().st_mode & 0o077 == 0
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = out.decode()
    assert proc.returncode == 0, log
    assert "Opsdeck stopped" in log
    assert tg.token not in log
