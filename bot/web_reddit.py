"""`GET /reddit/callback`: where Reddit sends the browser back after "Connect with Reddit".

The page is small and says what happened; the operator also hears it in chat, through the
outbox (one message per state, whichever process answers a repeated callback).
"""

from __future__ import annotations

import html
import logging

from aiogram.fsm.storage.base import BaseStorage, StorageKey
from aiohttp import web

from bot.outbox import Outbox
from core.reddit_ops.oauth import CALLBACK_PATH, ConnectOutcome, ConnectService

log = logging.getLogger(__name__)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} · Opsdeck</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}
h1{{font-size:1.4rem}}</style></head>
<body><h1>{mark} {title}</h1><p>{text}</p></body></html>
"""
# The page carries no secrets, but the URL that led to it held a code and a state.
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}


def render(outcome: ConnectOutcome) -> web.Response:
    body = _PAGE.format(
        title=html.escape(outcome.title),
        text=html.escape(outcome.text),
        mark="✅" if outcome.ok else "⚠️",
    )
    return web.Response(
        status=outcome.status, text=body, content_type="text/html", headers=_HEADERS
    )


# The /accounts add flow waits for a typed username; a finished connect ends it, so the
# operator's next message is not taken for one.
_ADD_FLOW_PREFIX = "AddAccount:"


def add_reddit_routes(
    app: web.Application,
    connect: ConnectService,
    outbox: Outbox,
    fsm: BaseStorage,
    bot_id: int,
) -> None:
    async def end_add_flow(outcome: ConnectOutcome) -> None:
        if outcome.chat_id is None or outcome.user_id is None:
            return
        key = StorageKey(bot_id=bot_id, chat_id=outcome.chat_id, user_id=outcome.user_id)
        state = await fsm.get_state(key)
        if state and state.startswith(_ADD_FLOW_PREFIX):
            await fsm.set_state(key, None)
            await fsm.set_data(key, {})

    async def callback(request: web.Request) -> web.Response:
        query = request.query
        outcome = await connect.finish(query.get("state"), query.get("code"), query.get("error"))
        if outcome.ok:
            await end_add_flow(outcome)
        if outcome.chat_id is not None and outcome.chat_text:
            await outbox.enqueue_new(
                outcome.chat_id,
                "sendMessage",
                text=html.escape(outcome.chat_text),
                tenant_id=outcome.tenant_id,
                dedupe_key=f"reddit-connect:{outcome.state_id}",
            )
        log.info("reddit connect callback: %s %s", outcome.status, outcome.title)
        return render(outcome)

    app.router.add_get(CALLBACK_PATH, callback)
