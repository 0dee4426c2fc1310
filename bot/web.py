"""The one HTTP server: health, readiness, the Telegram webhook (and later claims, metrics)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from itertools import accumulate
from typing import Any

from aiogram.types import Update
from aiohttp import web, web_response
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.inbox import Inbox, InboxUnavailable, Received, chat_key_of

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1024 * 1024
# A real update nests about ten levels; CPython's JSON parser recurses once per level, so a
# body nested 100k deep ended in a RecursionError (a 500 and a traceback) before this bound.
MAX_JSON_DEPTH = 64
SERVER_NAME = "Opsdeck"  # the Server header on every listener: no version to fingerprint


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON text opens more than `limit` arrays/objects inside each other.

    Counted on the brackets outside string literals, without parsing: fast for any body the
    size cap lets in, and a body with no more than `limit` brackets in all skips the count."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets))) > limit


def parse_json_bounded(raw: bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads`, refusing (ValueError) a document nested deeper than `limit` first."""
    if json_depth_exceeds(raw, limit):
        raise ValueError(f"JSON nested deeper than {limit} levels")
    return json.loads(raw)


async def _plain_server_header(_: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_NAME


def hide_server_version(app: web.Application) -> web.Application:
    """aiohttp says `Server: Python/3.x aiohttp/3.y` unless told otherwise: the signal covers
    every response of the app; the answers aiohttp's protocol writes itself (400 for a
    malformed request line) take the module default, which is replaced too."""
    web_response.SERVER_SOFTWARE = SERVER_NAME  # type: ignore[attr-defined]
    app.on_response_prepare.append(_plain_server_header)
    return app


def bearer_only(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]], token: str | None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """`handler` behind `Authorization: Bearer <token>` (compared in constant time); no token:
    `handler` as it is (a listener that only the host or its private network reaches)."""
    if not token:
        return handler
    expected = f"Bearer {token}".encode()

    async def guarded(request: web.Request) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.Response(
                status=401, text="unauthorized\n", headers={"WWW-Authenticate": "Bearer"}
            )
        return await handler(request)

    return guarded


def build_metrics_app(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]], token: str | None
) -> web.Application:
    """The metrics listener (METRICS_HOST:METRICS_PORT): `GET /metrics` and nothing else."""
    app = hide_server_version(web.Application())
    app.router.add_get("/metrics", bearer_only(handler, token))
    return app


def webhook_handler(inbox: Inbox, secret: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """POST from Telegram: checked, parsed, stored in the inbox, then 200 (bot/inbox.py).

    200 only once the update is committed: a crash after that loses nothing (the update is
    handled from the table by whichever process is alive), a crash before it makes Telegram
    send it again. Not stored in time (database down, a full backlog of unstored updates,
    shutting down) → 503, and Telegram retries."""
    expected = secret.encode()

    async def handle(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response({"ok": False, "error": "unauthorized"}, status=401)
        if not inbox.accepting:
            return web.json_response({"ok": False, "error": "shutting down"}, status=503)
        if request.content_length is not None and request.content_length > MAX_UPDATE_BYTES:
            return web.json_response({"ok": False, "error": "too large"}, status=413)
        try:
            body = await request.read()
            raw = body.decode("utf-8")
            data = parse_json_bounded(body)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            update = Update.model_validate(data, context={"bot": inbox.bot})
        except (ValueError, ValidationError):  # UnicodeDecodeError is a ValueError
            return web.json_response({"ok": False, "error": "malformed update"}, status=400)
        try:
            await inbox.ingest([Received(update.update_id, chat_key_of(data), raw, update)])
        except InboxUnavailable as exc:
            log.warning("webhook: update %s not stored (%s): 503", update.update_id, exc)
            return web.json_response({"ok": False, "error": "try again"}, status=503)
        return web.json_response({"ok": True})

    return handle


def build_web_app(
    *,
    db: AsyncEngine,
    scheduler_running: Callable[[], bool],
    inbox: Inbox | None,
    webhook_path: str,
    webhook_secret: str,
    extra_checks: Mapping[str, Callable[[], str]] | None = None,
) -> web.Application:
    """`extra_checks`: more readiness checks by name, each "ok" or why not (e.g. Telegram)."""
    app = hide_server_version(web.Application(client_max_size=MAX_UPDATE_BYTES))

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
        for name, check in (extra_checks or {}).items():
            checks[name] = check()
        ready = all(v == "ok" for v in checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if inbox is not None:
        app.router.add_post(webhook_path, webhook_handler(inbox, webhook_secret))
    return app
