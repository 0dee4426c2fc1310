"""`python -m bot run | migrate | restore <file>`: start, migrate, or restore a backup."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from core.errors import ConfigError
from core.settings import Settings

log = logging.getLogger("opsdeck")


async def _run(settings: Settings) -> None:
    from bot.app import Opsdeck

    app = Opsdeck(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        # a signal while start() still waits for Telegram stops the wait too
        starting = asyncio.ensure_future(app.start())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a ConfigError (a refused token) ends the process here
            await stopping
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        log.info("signal received: finishing in-flight work")
    finally:
        await app.stop()


async def _migrate(settings: Settings) -> None:
    from storage import migrate
    from storage.db import create_engine

    engine = create_engine(settings.database_url)
    try:
        await migrate.upgrade(engine)
        log.info("database at revision %s", await migrate.current_revision(engine))
    finally:
        await engine.dispose()


def _restore(settings: Settings, file: str) -> int:
    from core.backup.restore import RestoreRefused, restore

    try:
        done = restore(settings, file)
    except RestoreRefused as exc:
        print(f"opsdeck: restore refused: {exc.message}", file=sys.stderr)
        return 2
    rows = sum(done.counts.values())
    print(f"restored {done.source} into {done.target}")
    print(f"schema revision {done.revision}; {rows} rows in {len(done.counts)} tables:")
    for table, n in sorted(done.counts.items()):
        print(f"  {table}: {n}")
    print(
        "Secrets at rest need the same OPSDECK_SECRET_KEY (or secret.key) as the original, "
        "and vault files live in VAULT_STORAGE_URL, not in the database."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Opsdeck operations bot")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run", help="start the bot (polling, or webhook when TELEGRAM_WEBHOOK_URL is set)"
    )
    sub.add_parser("migrate", help="apply database migrations and exit")
    restore_help = "restore a backup file into an empty data dir (no database yet)"
    restore = sub.add_parser("restore", help=restore_help, description=restore_help)
    restore.add_argument("file", help="a backup, e.g. data/backups/opsdeck-20260101T030000Z.db")
    accounts = sub.add_parser("accounts", help="Reddit accounts from the shell")
    accounts_sub = accounts.add_subparsers(dest="accounts_command", required=True)
    add_help = "connect a Reddit account; secrets from REDDIT_* variables or a prompt"
    from bot.cli_accounts import add_arguments

    add_arguments(accounts_sub.add_parser("add", help=add_help, description=add_help))
    args = parser.parse_args(argv)

    from bot.logs import setup_logging

    try:
        settings = Settings.load()
        setup_logging(settings.opsdeck.log_level, settings.opsdeck.log_json)
        if args.command == "run":
            settings.require_runtime()
            asyncio.run(_run(settings))
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "restore":
            return _restore(settings, args.file)
        elif args.command == "accounts":
            from bot.cli_accounts import add_account

            return asyncio.run(add_account(settings, args))
    except ConfigError as exc:
        print(f"opsdeck: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
