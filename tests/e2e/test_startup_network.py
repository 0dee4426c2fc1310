"""Start-up against a real network (issue 11 item 5), with the real `python -m bot run`
process: a token Telegram refuses is one line naming TELEGRAM_BOT_TOKEN and exit code 2;
Telegram out of reach is one log line per attempt while /healthz answers and /readyz says
why not, and the bot connects once Telegram is back. No traceback for either."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp

from tests.e2e.conftest import free_port
from tests.e2e.test_process import wait_healthy
from tests.fakes.telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]
OWNER = 1001


def bot_env(port: int, api_url: str, token: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM_", "OPSDECK_", "DATABASE_", "VAULT_", "HTTP_", "PUBLIC_"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        TELEGRAM_BOT_TOKEN=token,
        TELEGRAM_API_URL=api_url,
        OPSDECK_OWNER_IDS=str(OWNER),
        HTTP_PORT=str(port),
    )
    return env


async def start_bot(tmp_path: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_a_refused_token_is_one_line_and_exit_code_2(tmp_path, tg: FakeTelegram) -> None:
    port = free_port()
    proc = await start_bot(tmp_path, bot_env(port, tg.base_url, "123456:NOT-THE-TOKEN"))
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    log = out.decode()
    assert proc.returncode == 2, log
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if "TELEGRAM_BOT_TOKEN" in line]
    assert len(lines) == 1 and "refused by Telegram" in lines[0], log
    assert "NOT-THE-TOKEN" not in log
    assert [c.method for c in tg.requests] == ["getMe"]  # asked once: a 401 is not retried


async def readiness(port: int) -> tuple[int, dict]:
    url = f"http://127.0.0.1:{port}/readyz"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


async def test_telegram_out_of_reach_then_back(tmp_path) -> None:
    port, api_port = free_port(), free_port()
    fake = FakeTelegram()
    proc = await start_bot(tmp_path, bot_env(port, f"http://127.0.0.1:{api_port}", fake.token))
    lines: list[str] = []

    async def read_log() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            lines.append(raw.decode().rstrip())

    reader = asyncio.create_task(read_log())
    try:
        # the web server is up before Telegram answers anything: health and readiness
        await wait_healthy(port)
        status, body = await readiness(port)
        assert status == 503 and body["checks"]["telegram"].startswith("unreachable"), body
        for _ in range(300):  # a second attempt, so the backoff shows
            if sum("Telegram is unreachable" in line for line in lines) >= 2:
                break
            await asyncio.sleep(0.1)
        attempts = [line for line in lines if "Telegram is unreachable" in line]
        assert len(attempts) >= 2, lines
        assert "attempt 1" in attempts[0] and "attempt 2" in attempts[1]

        await fake.start(port=api_port)  # the network is back
        owner = fake.user(OWNER, "Olga")
        for _ in range(400):
            status, body = await readiness(port)
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200 and body["checks"]["telegram"] == "ok", body
        since = fake.mark()
        await fake.send_text(owner, "/menu")
        await fake.wait_for_message(OWNER, "Choose a section", since=since, timeout=20)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=60)
        await reader
        await fake.stop()
    log = "\n".join(lines)
    assert "Traceback" not in log, log
    assert "Telegram reached after" in log
    assert fake.token not in log
