"""Claim storm, end to end, on two processes sharing one PostgreSQL database: 5,000 distinct
people through the webhook on a 4,000-use link.

    OPSDECK_TEST_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test \\
        python -m bench.claim_storm                          # 5,000 people, 4,000 uses, 30/s
    python -m bench.claim_storm --people 300 --uses 240      # quick check
    python -m bench.claim_storm --json out.json

What runs: two real `python -m bot run` processes (webhook mode, production settings: only
what a deployment must set is set) on a fresh PostgreSQL database (created on the server of
`OPSDECK_TEST_POSTGRES_URL`, dropped afterwards), against `tests.fakes.telegram.FakeTelegram`
over real HTTP, the fake enforcing `enforce_rate_limit(per_second=--limit,
per_chat_per_second=1, retry_after=1)` and answering 429 above it. The owner sends one
document to the bot (so the item has a Telegram file_id), a `--uses`-use link is created
through `VaultService`, then `--people` `/start <code>` updates from as many distinct users
are POSTed to the two processes' webhooks in turn, like a load balancer (at most
`--concurrency` at once; the bench never waits for the app: backpressure is the app's). Each
claim is decided by one process; its answer — the file, or "used up" — is queued in the
outbox, and both processes' senders share the bot's one send budget through the database.
The run ends when every person has an answer and the outbox is idle (or nothing moved for
60 s).

Reported, from the fake's log of accepted sends to the storm's chats: delivered (documents),
used up (texts), lost (people with neither), duplicates (people with more than one message),
the fake's 429 count, and the achieved send rate = (accepted - 1) / (last - first accepted)
against the enforced limit (target >= 0.9x), with the load average before and after. Exit
code 1 when any target is missed or any 429 was answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from sqlalchemy import func, select

from core.clock import SystemClock
from core.services.operators import to_actor
from core.vault import VaultConfig, VaultService
from storage.blobs import blob_store_from_url
from storage.db import create_engine
from storage.outbox_models import OutboxMessage
from storage.repositories import operators as op_repo
from storage.repositories import vault as vault_repo
from storage.uow import UnitOfWork
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.e2e.conftest import free_port
from tests.fakes.telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[1]
OWNER = 1001
FIRST_USER = 10_000_000
SECRET = "bench-webhook-secret"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def start_update(update_id: int, user_id: int, code: str) -> dict:
    text = f"/start {code}"
    user = {"id": user_id, "is_bot": False, "first_name": f"P{user_id}", "language_code": "en"}
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "from": user,
            "chat": {"id": user_id, "type": "private", "first_name": user["first_name"]},
            "date": int(time.time()),
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def spawn(n: int, port: int, url: str, fake: FakeTelegram, tmp: Path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM_", "OPSDECK_", "DATABASE_", "VAULT_", "HTTP_", "OUTBOX_"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        TELEGRAM_BOT_TOKEN=fake.token,
        TELEGRAM_API_URL=fake.base_url,
        TELEGRAM_WEBHOOK_URL=f"http://127.0.0.1:{port}/telegram/webhook",
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        OPSDECK_OWNER_IDS=str(OWNER),
        OPSDECK_SECRET_KEY="bench-secret-key-" + "k" * 32,
        OPSDECK_DATA_DIR=str(tmp / f"data{n}"),
        DATABASE_URL=url,
        VAULT_STORAGE_URL=str(tmp / "vault"),
        HTTP_PORT=str(port),
        METRICS_PORT=str(free_port()),
    )
    log = open(tmp / f"bot{n}.log", "wb")  # noqa: SIM115, ASYNC230 - once, before the storm
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=tmp, env=env, stdout=log, stderr=log
    )
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            if proc.returncode is not None:
                raise RuntimeError(f"bot {n} exited: {(tmp / f'bot{n}.log').read_text()[-2000:]}")
            await asyncio.sleep(0.2)
    raise RuntimeError(f"bot {n} did not become ready")


async def run(people: int, uses: int, limit: int, per_chat: int, concurrency: int) -> dict:
    load_before = load()
    url = await create_postgres_database()
    procs = []
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            async with FakeTelegram() as fake:
                fake.enforce_rate_limit(
                    per_second=limit, per_chat_per_second=per_chat, retry_after=1
                )
                owner = fake.user(OWNER, "Olga")
                for i in range(people):
                    fake.user(FIRST_USER + i, f"P{i}")
                ports = [free_port(), free_port()]
                for n, port in enumerate(ports):
                    procs.append(await spawn(n, port, url, fake, tmp))
                engine = create_engine(url)
                uow = UnitOfWork(engine)
                try:
                    result = await storm(fake, owner, uow, tmp, ports, people, uses, concurrency)
                finally:
                    await uow.dispose()
                    await engine.dispose()
                result.update(
                    people=people,
                    uses=uses,
                    enforced_limit_per_s=limit,
                    enforced_per_chat_per_s=per_chat,
                    processes=len(ports),
                    load_average_before=load_before,
                    load_average_after=load(),
                )
                log = [e for e in fake.accepted_log if e[1] >= FIRST_USER]
                per_chat_counts = Counter(chat for _, chat, _, _ in log)
                methods = Counter(method for _, _, method, _ in log)
                used_up = sum(
                    1
                    for chat in per_chat_counts
                    for m in fake.messages(chat)
                    if "used as many times" in m.get("text", "")
                )
                first, last = (log[0][0], log[-1][0]) if log else (0.0, 0.0)
                rate = (len(log) - 1) / (last - first) if last > first else float("nan")
                result.update(
                    delivered=methods.get("sendDocument", 0),
                    used_up=used_up,
                    lost=people - len(per_chat_counts),
                    duplicates=sum(1 for n in per_chat_counts.values() if n > 1),
                    http_429=fake.rate_limited_count,
                    # which calls were refused: the storm's answers, or others (the owner's)
                    http_429_calls=dict(
                        Counter(
                            f"{c.method} to "
                            + (
                                "a claimer"
                                if int(c.params.get("chat_id", 0)) >= FIRST_USER
                                else f"chat {c.params.get('chat_id')}"
                            )
                            for c in fake.requests
                            if c.status == 429
                        )
                    ),
                    achieved_rate_per_s=round(rate, 2),
                    rate_vs_limit=round(rate / limit, 3),
                    send_window_seconds=round(last - first, 1),
                )
                for proc in procs:
                    proc.terminate()
                await asyncio.gather(*(asyncio.wait_for(p.wait(), 120) for p in procs))
                return result
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await drop_postgres_database(url)


async def storm(fake, owner, uow, tmp, ports, people, uses, concurrency) -> dict:
    # ingest: the owner sends a document through the webhook (it gets a file_id)
    since = fake.mark()
    await fake.send_file(owner, "document", b"%PDF-1.4 storm", file_name="storm.pdf")
    card = await fake.wait_for_message(OWNER, "file #", timeout=60, since=since)
    item_id = int(re.search(r"file #(\d+)", card["text"]).group(1))
    async with uow.read() as session:
        actor = to_actor(await op_repo.by_telegram_id(session, OWNER))
    clock = SystemClock()
    vault = VaultService(uow, clock, blob_store_from_url(str(tmp / "vault")), VaultConfig())
    new = await vault.create_link(actor, item_id, lifetime_seconds=86400, max_uses=uses)

    # the storm: every person POSTs /start <code>, to the two processes in turn
    urls = [f"http://127.0.0.1:{p}/telegram/webhook" for p in ports]
    headers = {SECRET_HEADER: SECRET}
    slots = asyncio.Semaphore(concurrency)
    statuses: Counter[int] = Counter()
    t0 = time.time()

    async def post(http: aiohttp.ClientSession, i: int) -> None:
        update = start_update(900_000_000 + i, FIRST_USER + i, new.code)
        async with slots, http.post(urls[i % len(urls)], json=update, headers=headers) as resp:
            statuses[resp.status] += 1

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(post(http, i) for i in range(people)))
    posted_s = time.time() - t0

    # drain: until everyone has an answer and the outbox is idle
    chats = set(range(FIRST_USER, FIRST_USER + people))
    last_progress, seen = time.monotonic(), -1
    while True:
        answered = {c for _, c, _, _ in fake.accepted_log if c in chats}
        async with uow.read() as session:
            rows = await session.execute(
                select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
            )
            counts = {status: n for status, n in rows.all()}
        idle = not counts.get("pending") and not counts.get("sending")
        if len(answered) == people and idle:
            break
        if len(answered) != seen:
            seen, last_progress = len(answered), time.monotonic()
        elif time.monotonic() - last_progress > 60:
            break
        await asyncio.sleep(0.5)
    async with uow.read() as session:
        link = await vault_repo.get_link(session, new.link.id, fresh=True)
        last_queued = await session.scalar(
            select(func.max(OutboxMessage.created_at)).where(OutboxMessage.chat_id >= FIRST_USER)
        )
    return {
        # how long the processes took to handle the claims (the last answer queued)
        "handled_seconds": round(last_queued.timestamp() - t0, 1) if last_queued else None,
        "webhook_statuses": dict(statuses),
        "link_used_count": link.used_count,
        "outbox": counts,
        "post_seconds": round(posted_s, 1),
        "total_seconds": round(time.time() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--people", type=int, default=5000)
    ap.add_argument("--uses", type=int, default=4000)
    ap.add_argument("--limit", type=int, default=30, help="the fake's enforced messages/s")
    ap.add_argument("--per-chat", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=50, help="webhook POSTs at once")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if not os.environ.get("OPSDECK_TEST_POSTGRES_URL"):
        raise SystemExit("set OPSDECK_TEST_POSTGRES_URL (the bench creates its own database)")
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(run(a.people, a.uses, a.limit, a.per_chat, a.concurrency))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if a.json:
        a.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    ok = (
        result["delivered"] == min(a.uses, a.people)
        and result["used_up"] == max(0, a.people - a.uses)
        and result["lost"] == 0
        and result["duplicates"] == 0
        and result["http_429"] == 0
        and result["rate_vs_limit"] >= 0.9
    )
    print("PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
