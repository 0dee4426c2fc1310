"""Claim storm, sender side: 5,000 outgoing messages through the outbox against enforced limits.

    python -m bench.claim_storm                          # 5,000 chats, 4,000-use link, 30/s
    python -m bench.claim_storm --people 1000 --uses 800 --limit 30 --json out.json

What it models: a 4,000-use claim link hit by 5,000 distinct people at once. Each claim
produces exactly one message to that person's private chat — 4,000 deliveries and 1,000
"this link is used up" answers — all queued in the outbox in one burst (SQLite database on
disk), then drained by one `bot.outbox.Sender` (defaults: 30/s overall, 1/s per chat) over
real HTTP into `tests.fakes.telegram.FakeTelegram` with `enforce_rate_limit(per_second=
--limit, per_chat_per_second=1)`, which answers 429 above it.

This drives the sender alone: the vault's `/start <code>` handler and `bot/vault_delivery.py`
were still being written and did not yet send through the outbox, so the webhook and the
claim spend are not part of this run (see bench/README.md, "Delivery").

Reported: delivered / used-up / failed / lost (= queued - accepted by the fake), 429 count,
duplicates (a chat that got more than one message), and the achieved send rate = accepted
messages / (last accepted - first accepted) against the enforced limit (target ≥ 0.9x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from bot.outbox import Outbox, OutboxSettings, Sender, wait_idle
from core.clock import SystemClock
from storage import migrate
from storage.db import create_engine, create_sessionmaker
from tests.fakes.telegram import FakeTelegram

FIRST_USER = 10_000_000


async def run(people: int, uses: int, limit: int, per_chat: int, sender_rate: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'storm.db'}")
        await migrate.upgrade(engine)
        sessionmaker = create_sessionmaker(engine)
        async with FakeTelegram() as fake:
            for i in range(people):
                fake.user(FIRST_USER + i, f"P{i}")
            fake.enforce_rate_limit(per_second=limit, per_chat_per_second=per_chat, retry_after=1)
            bot = Bot(
                fake.token, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))
            )
            outbox = Outbox(sessionmaker, SystemClock())
            settings = OutboxSettings(global_per_second=sender_rate, per_chat_per_second=per_chat)
            sender = Sender(bot, sessionmaker, settings=settings, outbox=outbox)

            t0 = time.monotonic()
            for i in range(people):  # the storm: every claim queues its one answer
                chat = FIRST_USER + i
                if i < uses:
                    await outbox.send_message(
                        chat, f"📦 Here is your file (claim {i})", dedupe_key=f"storm:{chat}"
                    )
                else:
                    await outbox.send_message(
                        chat, "⛔ This link is used up.", dedupe_key=f"storm:{chat}"
                    )
            enqueue_s = time.monotonic() - t0
            await sender.start()
            counts = await wait_idle(sessionmaker, within=people / limit * 3 + 60)
            await sender.stop()
            await bot.session.close()

            log = fake.accepted_log
            first, last = log[0][0], log[-1][0]
            per_chat_counts = Counter(chat for _, chat, _, _ in log)
            texts = Counter(
                "delivered" if m["text"].startswith("📦") else "used_up"
                for chat in per_chat_counts
                for m in fake.messages(chat)
            )
            rate = (len(log) - 1) / (last - first) if last > first else float("nan")
            result = {
                "people": people,
                "uses": uses,
                "enforced_limit_per_s": limit,
                "enforced_per_chat_per_s": per_chat,
                "sender_rate_per_s": sender_rate,
                "delivered": texts["delivered"],
                "used_up": texts["used_up"],
                "failed": counts.get("failed", 0),
                "lost": people - len(per_chat_counts),
                "duplicates": sum(1 for n in per_chat_counts.values() if n > 1),
                "http_429": fake.rate_limited_count,
                "achieved_rate_per_s": round(rate, 2),
                "rate_vs_limit": round(rate / limit, 3),
                "drain_seconds": round(last - first, 1),
                "enqueue_seconds": round(enqueue_s, 1),
            }
        await engine.dispose()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--people", type=int, default=5000)
    ap.add_argument("--uses", type=int, default=4000)
    ap.add_argument("--limit", type=int, default=30, help="the fake's enforced messages/s")
    ap.add_argument("--per-chat", type=int, default=1)
    ap.add_argument("--sender-rate", type=int, default=30, help="the sender's global_per_second")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    result = asyncio.run(run(a.people, a.uses, a.limit, a.per_chat, a.sender_rate))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if a.json:
        a.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    ok = (
        result["delivered"] == min(a.uses, a.people)
        and result["used_up"] == max(0, a.people - a.uses)
        and result["lost"] == 0
        and result["duplicates"] == 0
        and result["rate_vs_limit"] >= 0.9
    )
    print("PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
