"""One outbox sender in its own OS process, for test_shared_send_budget.py.

    python tests/integration/sender_proc.py --url URL --api BASE --token T --owner NAME
        [--rate N] [--lease-seconds S] [--batch-size N]

Runs `bot.outbox.Sender` (the production class) against the database and the Bot API at
BASE, prints "ready" once sending, and on SIGTERM stops gracefully and prints
"sent <count>".
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from bot.outbox import Sender
from core.settings import OutboxSettings
from storage.db import create_engine
from storage.uow import UnitOfWork


async def main(args: argparse.Namespace) -> int:
    db = create_engine(args.url)
    uow = UnitOfWork(db)
    bot = Bot(args.token, session=AiohttpSession(api=TelegramAPIServer.from_base(args.api)))
    settings = OutboxSettings(
        _env_file=None,  # type: ignore[call-arg]
        global_per_second=args.rate,
        lease_seconds=args.lease_seconds,
        batch_size=args.batch_size,
        # a row is only sent while its lease outlasts the request's timeout
        request_timeout_seconds=min(30.0, args.lease_seconds / 4),
        poll_seconds=0.2,
        shutdown_timeout_seconds=3,
    )
    sender = Sender(bot, uow, settings=settings, owner=args.owner)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await sender.start()
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        await sender.stop()
        print(f"sent {sender.sent_count}", flush=True)
        await bot.session.close()
        await uow.dispose()
        await db.dispose()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--api", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--owner", required=True)
    parser.add_argument("--rate", type=int, default=30)
    parser.add_argument("--lease-seconds", type=float, default=60.0)
    parser.add_argument("--batch-size", type=int, default=150)
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    sys.exit(asyncio.run(main(parse_args())))
