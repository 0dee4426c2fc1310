"""`GET /reddit/callback`: where Reddit sends the browser back after "Connect with Reddit".

The page is small and says what happened; the operator also hears it in chat, through the
outbox (one message per state, whichever process answers a repeated callback).
"""

from __future__ import annotations

import html
import logging
import math

from aiogram.fsm.storage.base import BaseStorage, StorageKey
from aiohttp import web

from bot.outbox import Outbox
from bot.web_claim_pages import STATIC_PATH, ClaimPages, page_headers
from bot.web_claims import client_address
from core.ratelimit import Limit, SharedLimiter
from core.reddit_ops.oauth import CALLBACK_PATH, ConnectOutcome, ConnectService

log = logging.getLogger(__name__)

TITLE = "Connect with Reddit"
# A person needs one or two tries; anything beyond is someone guessing states.
CALLBACK_LIMIT = Limit(10, 60.0)
DESCRIPTION = "Connecting a Reddit account to Opsdeck."


def render(pages: ClaimPages, outcome: ConnectOutcome, public_base_url: str) -> web.Response:
    """The page, through the claim door's Jinja2 environment (autoescaped, same stylesheet
    and strict headers); the URL that led here held a code and a state: nothing is cached."""
    body = pages.env.get_template("reddit_connect.html").render(
        static=STATIC_PATH,
        title=TITLE,
        description=DESCRIPTION,
        ok=outcome.ok,
        heading=outcome.title,
        message=outcome.text,
    )
    return web.Response(
        status=outcome.status,
        text=body,
        content_type="text/html",
        headers=page_headers(public_base_url),
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
    public_base_url: str,
    trusted_proxy_hops: int = 0,
) -> None:
    pages = ClaimPages()
    limiter = SharedLimiter("reddit:callback", CALLBACK_LIMIT, connect.clock)

    async def end_add_flow(outcome: ConnectOutcome) -> None:
        if outcome.chat_id is None or outcome.user_id is None:
            return
        key = StorageKey(bot_id=bot_id, chat_id=outcome.chat_id, user_id=outcome.user_id)
        state = await fsm.get_state(key)
        if state and state.startswith(_ADD_FLOW_PREFIX):
            await fsm.set_state(key, None)
            await fsm.set_data(key, {})

    async def callback(request: web.Request) -> web.Response:
        address = client_address(request, trusted_proxy_hops)
        async with connect.uow.write() as session:
            wait = await limiter.hit_in(session, address)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            response = render(
                pages,
                ConnectOutcome(
                    ok=False,
                    status=429,
                    title="Too many tries",
                    text=f"Too many tries from your address; wait {seconds} s and try again.",
                ),
                public_base_url,
            )
            response.headers["Retry-After"] = str(seconds)
            return response
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
        return render(pages, outcome, public_base_url)

    app.router.add_get(CALLBACK_PATH, callback)
