"""The one HTTP server: health, readiness, the Telegram webhook (and later claims, metrics)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from aiohttp import web
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1024 * 1024
# Updates in handling at once. Each holds a database connection for part of its handling; the
# pool has 15 (SQLite) or 20 (PostgreSQL) and the job engine and outbox use it too. Telegram
# takes at most 30 messages a second from a bot, so this is no limit on a real round trip.
MAX_IN_HANDLING = 16


class UpdateFeeder:
    """Feeds webhook updates to the dispatcher in the background, and drains them on shutdown.

    The webhook answers Telegram before handling, so a burst arrives faster than it is handled.
    At most `max_in_handling` updates are handled at once and the rest wait their turn here, in
    order. Started all at once, they queued on the database pool instead, and those still
    waiting after its 30 s checkout timeout failed: lost updates.
    """

    def __init__(
        self, bot: Bot, dispatcher: Dispatcher, max_in_handling: int = MAX_IN_HANDLING
    ) -> None:
        self.bot = bot
        self.dispatcher = dispatcher
        self.tasks: set[asyncio.Task[Any]] = set()
        self.accepting = True
        self._slots = asyncio.Semaphore(max_in_handling)

    def feed(self, update: Update) -> None:
        task = asyncio.create_task(self._process(update))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _process(self, update: Update) -> None:
        async with self._slots:
            try:
                await self.dispatcher.feed_update(self.bot, update)
            except Exception:
                log.exception("update %s failed outside the error handler", update.update_id)

    async def drain(self, grace_seconds: float) -> None:
        self.accepting = False
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=grace_seconds)


def webhook_handler(
    feeder: UpdateFeeder, secret: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    expected = secret.encode()

    async def handle(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response({"ok": False, "error": "unauthorized"}, status=401)
        if not feeder.accepting:
            return web.json_response({"ok": False, "error": "shutting down"}, status=503)
        if request.content_length is not None and request.content_length > MAX_UPDATE_BYTES:
            return web.json_response({"ok": False, "error": "too large"}, status=413)
        try:
            data = json.loads(await request.read())
            if not isinstance(data, dict):
                raise ValueError("not an object")
            update = Update.model_validate(data, context={"bot": feeder.bot})
        except (ValueError, ValidationError):
            return web.json_response({"ok": False, "error": "malformed update"}, status=400)
        feeder.feed(update)
        return web.json_response({"ok": True})

    return handle


def build_web_app(
    *,
    db: AsyncEngine,
    scheduler_running: Callable[[], bool],
    feeder: UpdateFeeder | None,
    webhook_path: str,
    webhook_secret: str,
) -> web.Application:
    app = web.Application(client_max_size=MAX_UPDATE_BYTES)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks: dict[str, str] = {}
        try:
            async with asyncio.timeout(3):
                async with db.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # any failure means not ready
            checks["database"] = f"error: {type(exc).__name__}"
        checks["scheduler"] = "ok" if scheduler_running() else "stopped"
        ready = all(v == "ok" for v in checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if feeder is not None:
        app.router.add_post(webhook_path, webhook_handler(feeder, webhook_secret))
    return app
