"""`python -m bot accounts add`: connect a Reddit account from the shell.

Secrets come from the environment (REDDIT_CLIENT_SECRET, REDDIT_PASSWORD, REDDIT_REFRESH_TOKEN)
or, on a terminal, from a prompt that does not echo; never from the command line, where they
would land in shell history and the process list.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from core.clock import SystemClock
from core.crypto import SecretBox
from core.errors import OpsdeckError
from core.notifier import NullNotifier
from core.reddit_ops.accounts import AccountService
from core.services.jobs import JobService
from core.services.operators import bootstrap_owners, to_actor
from core.settings import Settings
from storage import migrate
from storage.db import create_engine
from storage.repositories import operators as op_repo
from storage.uow import UnitOfWork

SECRET_ENV = {
    "client_secret": "REDDIT_CLIENT_SECRET",
    "password": "REDDIT_PASSWORD",
    "refresh_token": "REDDIT_REFRESH_TOKEN",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("username", help="the Reddit username, e.g. u/team_main")
    parser.add_argument("--kind", choices=["script", "refresh_token", "dry_run"], default="script")
    parser.add_argument("--client-id", help="the Reddit app id (from reddit.com/prefs/apps)")
    parser.add_argument(
        "--as-owner",
        type=int,
        help="the owner (Telegram user id) recorded as the actor; "
        "default: the first of OPSDECK_OWNER_IDS",
    )


def _secret(name: str, prompt: str) -> str | None:
    value = os.environ.get(SECRET_ENV[name])
    if value:
        return value
    if sys.stdin.isatty():
        return getpass.getpass(f"{prompt}: ") or None
    return None


async def add_account(settings: Settings, args: argparse.Namespace) -> int:
    owner_id = args.as_owner or (
        settings.opsdeck.owner_ids[0] if settings.opsdeck.owner_ids else None
    )
    if owner_id is None:
        print("opsdeck: set OPSDECK_OWNER_IDS or pass --as-owner", file=sys.stderr)
        return 2
    kind = args.kind
    secrets: dict[str, str | None] = {}
    if kind != "dry_run":
        if not args.client_id:
            print(
                "opsdeck: --client-id is required for script and refresh-token apps",
                file=sys.stderr,
            )
            return 2
        secrets["client_secret"] = _secret(
            "client_secret", "App secret (empty for an installed app)"
        )
        field = "password" if kind == "script" else "refresh_token"
        secrets[field] = _secret(field, "Account password" if kind == "script" else "Refresh token")
        if not secrets[field]:
            print(
                f"opsdeck: no {field.replace('_', ' ')}: set {SECRET_ENV[field]} or run this "
                "on a terminal to be asked",
                file=sys.stderr,
            )
            return 2
    engine = create_engine(settings.database_url)
    uow = UnitOfWork(engine)
    try:
        await migrate.upgrade(engine)
        clock = SystemClock()
        async with uow.write() as session:
            await bootstrap_owners(session, clock, settings.opsdeck.owner_ids)
        async with uow.read() as session:
            op = await op_repo.by_telegram_id(session, owner_id)
        if op is None or op.role != "owner":
            print(f"opsdeck: {owner_id} is not an owner", file=sys.stderr)
            return 2
        service = AccountService(
            uow,
            clock,
            SecretBox(settings.secret_key()),
            jobs=JobService(uow, clock, NullNotifier()),
        )
        view = await service.add(
            to_actor(op),
            username=args.username,
            auth_kind=None if kind == "dry_run" else kind,
            client_id=args.client_id if kind != "dry_run" else None,
            dry_run=kind == "dry_run",
            **secrets,
        )
    except OpsdeckError as exc:
        print(f"opsdeck: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await uow.dispose()
        await engine.dispose()
    mode = "dry run (nothing is ever sent)" if view.dry_run else view.auth_kind
    print(
        f"Connected u/{view.username} ({mode}); app secret {view.client_secret}, "
        f"password {view.password}, refresh token {view.refresh_token}."
    )
    if not view.dry_run:
        print("A health check is queued; it runs when the bot is running (see /accounts).")
    return 0
