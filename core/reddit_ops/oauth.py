"""Connect with Reddit: the OAuth code flow of a Reddit *web* app.

`/accounts add` asks `ConnectService.start` for a one-time authorise URL. Its `state` is 256
bits of randomness, stored only as a sha256 hash, bound to the operator, their workspace and
chat, and valid for `STATE_TTL`. Reddit sends the browser back to `GET /reddit/callback` with
the state and a code; `finish` spends the state once, re-checks that the operator may still
connect accounts, exchanges the code (`grant_type=authorization_code`, HTTP basic auth with
the web app), learns the username from `/api/v1/me`, and stores the refresh token sealed. The
account's password is never seen, so two-factor accounts connect like any other.

Network calls (the exchange, `/api/v1/me`) run outside any transaction; the state is spent in
one short write before them, the account written in another after them.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from core.actor import Actor
from core.clock import Clock
from core.crypto import SecretBox
from core.errors import InvalidInput
from core.reddit import (
    DEFAULT_SCOPES,
    RateBudgetRegistry,
    RedditAuthError,
    RedditClient,
    RedditConfig,
    RedditError,
    RedditUnavailable,
    RefreshTokenCredentials,
)
from core.reddit.auth import parse_grant
from core.reddit.models import Me
from core.services.audit import record
from core.services.operators import to_actor
from core.settings import Settings
from storage import txguard
from storage.models import Role
from storage.reddit_models import (
    DEFAULT_MIN_GAP_MINUTES,
    DEFAULT_POSTS_PER_DAY,
    AccountStatus,
    AuthKind,
    RedditAccount,
)
from storage.reddit_oauth_models import RedditOAuthState
from storage.repositories import operators as op_repo
from storage.repositories import reddit as repo
from storage.repositories import reddit_oauth as state_repo
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

CALLBACK_PATH = "/reddit/callback"
STATE_TTL = timedelta(minutes=10)
# What Opsdeck calls, and no more: identity (/api/v1/me), read (subreddit about/rules/
# requirements, /api/info, listings and comments for /browse), submit (/api/submit, image
# uploads, /api/comment), flair (the flair picker), history (/user/<me>/submitted and
# /comments: the history backfill and the look before re-sending), privatemessages
# (/message/inbox). Never `vote`. The script apps' password grant asks for the same.
CONNECT_SCOPES: tuple[str, ...] = DEFAULT_SCOPES
_STATE_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,512}$")


@dataclass(frozen=True, slots=True)
class WebApp:
    """The Reddit web app (REDDIT_WEB_CLIENT_ID / _SECRET) and where Reddit sends people back."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str

    @classmethod
    def from_settings(cls, settings: Settings) -> WebApp | None:
        reddit = settings.reddit
        client_id = (reddit.web_client_id or "").strip()
        secret = reddit.web_client_secret.get_secret_value() if reddit.web_client_secret else ""
        if not client_id or not secret.strip():
            return None
        return cls(client_id, secret.strip(), settings.public_base_url + CALLBACK_PATH)


@dataclass(frozen=True, slots=True)
class ConnectOutcome:
    """What the callback page says, and what the operator is told in chat (if anyone)."""

    ok: bool
    status: int  # the page's HTTP status
    title: str
    text: str
    chat_id: int | None = None
    tenant_id: int | None = None
    chat_text: str | None = None
    state_id: int | None = None
    username: str | None = None
    user_id: int | None = None  # the operator's Telegram user id, once known


def hash_state(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def authorize_url(www_url: str, app: WebApp, state: str) -> str:
    """Reddit's consent page for this app, asking for `CONNECT_SCOPES` for good."""
    params = {
        "client_id": app.client_id,
        "response_type": "code",
        "state": state,
        "redirect_uri": app.redirect_uri,
        "duration": "permanent",
        "scope": " ".join(CONNECT_SCOPES),
    }
    return f"{www_url.rstrip('/')}/api/v1/authorize?{urlencode(params, quote_via=quote)}"


def not_configured_hint(public_base_url: str) -> str:
    return (
        "“Connect with Reddit” needs a Reddit web app: create one at "
        "reddit.com/prefs/apps (type “web app”) with the redirect URI "
        f"{public_base_url}{CALLBACK_PATH}, then set REDDIT_WEB_CLIENT_ID and "
        "REDDIT_WEB_CLIENT_SECRET and restart."
    )


class ConnectService:
    """Connect with Reddit (see the module doc). One per process; holds no session."""

    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        box: SecretBox,
        app: WebApp | None,
        config: RedditConfig,
        budgets: RateBudgetRegistry,
        *,
        public_base_url: str,
        transport: httpx.AsyncBaseTransport | None = None,
        wake: Any = None,
    ) -> None:
        self.uow = uow
        self.clock = clock
        self.box = box
        self.app = app
        self.config = config
        self.budgets = budgets
        self.public_base_url = public_base_url
        self._transport = transport
        self._wake = wake  # engine.wake_at: an account back from auth_failed sends its queue

    @property
    def configured(self) -> bool:
        return self.app is not None

    async def start(self, actor: Actor, chat_id: int) -> str:
        """A one-time authorise URL for this operator (valid `STATE_TTL`)."""
        actor.require(Role.operator, "connect Reddit accounts")
        if self.app is None:
            raise InvalidInput(not_configured_hint(self.public_base_url))
        state = secrets.token_urlsafe(32)
        now = self.clock.now()
        async with self.uow.write() as session:
            await state_repo.purge(session, expired_before=now - STATE_TTL)
            await state_repo.add_state(
                session,
                RedditOAuthState(
                    state_hash=hash_state(state),
                    tenant_id=actor.tenant_id,
                    operator_user_id=actor.user_id,
                    chat_id=chat_id,
                    created_at=now,
                    expires_at=now + STATE_TTL,
                ),
            )
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="reddit.account.connect_start",
                details={"expires_in_seconds": int(STATE_TTL.total_seconds())},
            )
        return authorize_url(self.config.www_url, self.app, state)

    async def finish(
        self, state: str | None, code: str | None, error: str | None
    ) -> ConnectOutcome:
        """Handle Reddit's redirect back (`GET /reddit/callback?state=…&code=…|error=…`)."""
        if self.app is None:
            return _page(404, "Not set up", "This Opsdeck has no Reddit web app configured.")
        state = (state or "").strip()
        if not _STATE_RE.match(state):
            return _page(
                400,
                "This link is not valid",
                "The address is incomplete or was altered. Start again with /accounts add.",
            )
        now = self.clock.now()
        async with self.uow.read() as session:
            row = await state_repo.state_by_hash(session, hash_state(state))
        if row is None:
            return _page(
                400,
                "This link is not valid",
                "Opsdeck did not make this link (or forgot it long ago). "
                "Start again with /accounts add.",
            )
        told = {"chat_id": row.chat_id, "tenant_id": row.tenant_id, "state_id": row.id}
        if row.used_at is not None:
            return _page(
                409,
                "Already used",
                "This link was used already; each one works once. Your account list is in "
                "Telegram (/accounts).",
            )
        async with self.uow.write() as session:
            spent = await state_repo.use_state(session, row.id, now)
        if not spent:
            expired = row.expires_at <= now
            why = "expired (links last 10 minutes)" if expired else "was used already"
            return _page(
                410 if expired else 409,
                "This link " + ("expired" if expired else "was used already"),
                f"This link {why}. Start again with /accounts add.",
                chat_text=(
                    "🔗 Connect with Reddit: the link expired before Reddit sent you back. "
                    "Start again with /accounts add."
                    if expired
                    else None
                ),
                **told,
            )
        actor = await self._operator(row)
        if actor is None:
            return _page(
                403,
                "Not allowed",
                "Your Opsdeck role no longer lets you connect Reddit accounts.",
                **told,
            )
        if error:
            if error == "access_denied":
                return _page(
                    200,
                    "Not connected",
                    "You declined on Reddit's page, so nothing was connected.",
                    chat_text="🔗 Connect with Reddit: you declined on Reddit's page; "
                    "nothing was connected.",
                    **told,
                )
            return _page(
                400,
                "Reddit refused",
                f"Reddit answered “{error}”. Check the web app's redirect URI "
                f"({self.app.redirect_uri}) and try again with /accounts add.",
                chat_text=f"🔗 Connect with Reddit failed: Reddit answered “{error}”. Check "
                f"the web app's redirect URI ({self.app.redirect_uri}).",
                **told,
            )
        code = (code or "").strip()
        if not _CODE_RE.match(code):
            return _page(
                400,
                "No code from Reddit",
                "Reddit's answer had no usable code. Start again with /accounts add.",
                chat_text="🔗 Connect with Reddit: Reddit's answer had no usable code; "
                "nothing was connected. Start again with /accounts add.",
                **told,
            )
        try:
            me, refresh_token = await self._exchange(code)
        except RedditError as exc:
            down = not isinstance(exc, RedditAuthError)
            text = (
                "Reddit is not answering right now; nothing was connected. Try again in a "
                "few minutes with /accounts add."
                if down
                else f"Reddit did not accept the sign-in: {exc.message}. Nothing was "
                "connected; start again with /accounts add."
            )
            return _page(
                503 if down else 400,
                "Not connected",
                text,
                chat_text="🔗 Connect with Reddit failed: " + text,
                **told,
            )
        username = me.name
        account = await self._store(actor, username, me, refresh_token)
        status_note = (
            " It is suspended on Reddit, so its queue stays paused."
            if account.status == AccountStatus.suspended
            else ""
        )
        return ConnectOutcome(
            ok=True,
            status=200,
            title="Connected",
            text=f"u/{username} is connected to Opsdeck. You can close this page.",
            chat_text=(
                f"✅ u/{username} is connected with Reddit (refresh token, scopes: "
                f"{', '.join(CONNECT_SCOPES)}).{status_note} See /accounts."
            ),
            username=username,
            user_id=actor.user_id,
            **told,
        )

    async def _operator(self, row: RedditOAuthState) -> Actor | None:
        """The operator behind the state, if they may still connect accounts there."""
        async with self.uow.read() as session:
            op = await op_repo.by_telegram_id(session, row.operator_user_id)
        if op is None or op.tenant_id != row.tenant_id:
            return None
        actor = to_actor(op)
        return actor if actor.at_least(Role.operator) else None

    async def _exchange(self, code: str) -> tuple[Me, str]:
        """Code → tokens → `/api/v1/me`. Raises RedditError (RedditAuthError when refused)."""
        assert self.app is not None
        app = self.app
        url = self.config.www_url.rstrip("/") + "/api/v1/access_token"
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": app.redirect_uri,
        }
        async with httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(self.config.timeout),
            headers={"User-Agent": self.config.user_agent},
            event_hooks={"request": [txguard.httpx_hook]},
        ) as http:
            try:
                response = await http.post(
                    url, data=form, auth=httpx.BasicAuth(app.client_id, app.client_secret)
                )
            except httpx.HTTPError as exc:
                raise RedditUnavailable(f"could not reach Reddit: {type(exc).__name__}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise RedditUnavailable(f"Reddit answered HTTP {response.status_code}")
        probe = RefreshTokenCredentials(app.client_id, app.client_secret, "")
        if response.status_code == 401:
            raise RedditAuthError(
                "Reddit refused the web app's id or secret (REDDIT_WEB_CLIENT_ID / "
                "REDDIT_WEB_CLIENT_SECRET)",
                status=401,
            )
        payload = _json(response)
        if payload.get("error") == "invalid_grant":
            raise RedditAuthError(
                "the code was not accepted (it expired, was used already, or the redirect URI "
                "differs from the web app's)",
                error="invalid_grant",
            )
        token = parse_grant(response.status_code, response.content, probe, self._now())
        refresh_token = payload.get("refresh_token")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise RedditAuthError("Reddit gave no refresh token (a one-hour sign-in only)")
        missing = [s for s in CONNECT_SCOPES if token.scope and s not in token.scope]
        if missing:
            raise RedditAuthError(f"Reddit did not grant {', '.join(missing)}")
        credentials = RefreshTokenCredentials(app.client_id, app.client_secret, refresh_token)
        client = RedditClient(
            self.config,
            credentials,
            self.budgets.get(app.client_id),
            self._transport,
            clock=self.clock,
        )
        try:
            client.use_token(token)
            me = await client.me()
        finally:
            await client.aclose()
        if not me.name:
            raise RedditAuthError("Reddit did not say which account signed in")
        return me, refresh_token

    async def _store(
        self, actor: Actor, username: str, me: Me, refresh_token: str
    ) -> RedditAccount:
        """Create the account, or give a known one these credentials; audited."""
        assert self.app is not None
        now = self.clock.now()
        status = AccountStatus.suspended if me.is_suspended else AccountStatus.active
        reason = "Reddit says the account is suspended" if me.is_suspended else None
        sealed = {
            "auth_kind": AuthKind.refresh_token,
            "client_id": self.app.client_id,
            "client_secret_enc": self.box.seal(self.app.client_secret),
            "password_enc": None,
            "refresh_token_enc": self.box.seal(refresh_token),
            "status": status,
            "status_reason": reason,
            "status_changed_at": now,
            "last_check_at": now,
            "link_karma": me.link_karma,
            "comment_karma": me.comment_karma,
            "updated_at": now,
        }
        async with self.uow.write() as session:
            known = await repo.account_by_username(session, actor.tenant_id, username)
            if known is None:
                account = await repo.add_account(
                    session,
                    RedditAccount(
                        tenant_id=actor.tenant_id,
                        username=username,
                        username_key=username.lower(),
                        dry_run=False,
                        posts_per_day=DEFAULT_POSTS_PER_DAY,
                        min_gap_minutes=DEFAULT_MIN_GAP_MINUTES,
                        created_by=actor.user_id,
                        created_at=now,
                        **sealed,
                    ),
                )
            else:
                updated = await repo.update_account(
                    session, known.id, sealed, tenant_id=actor.tenant_id
                )
                assert updated is not None
                account = updated
                if status == AccountStatus.active:
                    await repo.wake_account_jobs(session, account.id, now)
                    if self._wake is not None:
                        self.uow.after_commit(lambda: self._wake(now))
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="reddit.account.connect",
                target=f"reddit_account:{account.id}",
                details={
                    "username": username,
                    "auth_kind": AuthKind.refresh_token,
                    "client_id": self.app.client_id,
                    "replaced_credentials": known is not None,
                    "status": status,
                },
            )
        return account

    def _now(self) -> float:
        return self.clock.now().timestamp()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _page(
    status: int,
    title: str,
    text: str,
    *,
    chat_id: int | None = None,
    tenant_id: int | None = None,
    state_id: int | None = None,
    chat_text: str | None = None,
) -> ConnectOutcome:
    return ConnectOutcome(
        ok=False,
        status=status,
        title=title,
        text=text,
        chat_id=chat_id if chat_text else None,
        tenant_id=tenant_id,
        chat_text=chat_text,
        state_id=state_id,
    )


__all__ = [
    "CALLBACK_PATH",
    "CONNECT_SCOPES",
    "STATE_TTL",
    "ConnectOutcome",
    "ConnectService",
    "WebApp",
    "authorize_url",
    "hash_state",
    "not_configured_hint",
]
