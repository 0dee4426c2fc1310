"""Building one Reddit client per connected account, from the REDDIT_* settings.

Secrets are revealed only here, where a client is built; the app keeps one `RedditClients`.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import httpx

from core.clock import Clock
from core.crypto import SecretBox
from core.reddit import (
    Credentials,
    RateBudgetRegistry,
    RedditClient,
    RedditConfig,
    RefreshTokenCredentials,
    ScriptCredentials,
)
from core.reddit.config import APP_USER_AGENT, account_user_agent
from core.reddit.ratelimit import Sleep
from core.settings import RedditSettings
from storage.reddit_models import AuthKind, RedditAccount


def configured_user_agent(settings: RedditSettings) -> str | None:
    """REDDIT_USER_AGENT when set (checked at start-up), else None: per-account agents."""
    value = (settings.user_agent or "").strip()
    return value or None


def config_from_settings(settings: RedditSettings, **overrides: Any) -> RedditConfig:
    """The client configuration from REDDIT_* settings."""
    values: dict[str, Any] = {
        # the agent of requests made before an account is known; accounts use their own
        "user_agent": configured_user_agent(settings) or APP_USER_AGENT,
        "oauth_url": settings.oauth_url,
        "www_url": settings.www_url,
        "media_upload_url": (settings.media_upload_url or "").strip() or None,
    }
    values.update(overrides)
    return RedditConfig(**values)


class RedditClients:
    """Builds one `RedditClient` per account and keeps it (its token lives as long as it does).

    Accounts on the same OAuth client id share one `RateBudget` from `budgets`, so together
    they stay inside Reddit's per-app limit (across processes when the registry is built with
    `shared=database_budgets(...)`, as the app does). A client is rebuilt when the account's stored
    credentials change. Each client speaks with `agent_for(account)`. Close everything with
    `aclose()` at shutdown.
    """

    def __init__(
        self,
        config: RedditConfig,
        budgets: RateBudgetRegistry,
        box: SecretBox,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        user_agent: str | None = None,
    ) -> None:
        self.config = config
        self.user_agent = user_agent  # REDDIT_USER_AGENT; None: each account's own
        self.budgets = budgets
        self.box = box
        self.clock = clock
        self.sleep = sleep
        self._transport = transport
        self._rng = rng
        self._clients: dict[int, tuple[tuple[Any, ...], RedditClient]] = {}

    def credentials(self, account: RedditAccount) -> Credentials | None:
        """The account's credentials, decrypted; None for an account without any."""
        if not account.has_credentials or account.client_id is None:
            return None
        secret = self.box.reveal(account.client_secret_enc) if account.client_secret_enc else ""
        if account.auth_kind == AuthKind.script:
            return ScriptCredentials(
                client_id=account.client_id,
                client_secret=secret,
                username=account.username,
                password=self.box.reveal(account.password_enc or ""),
            )
        if account.auth_kind == AuthKind.refresh_token:
            return RefreshTokenCredentials(
                client_id=account.client_id,
                client_secret=secret,
                refresh_token=self.box.reveal(account.refresh_token_enc or ""),
            )
        return None

    async def client(self, account: RedditAccount) -> RedditClient | None:
        """The account's client (cached), or None when it has no credentials."""
        fingerprint = (
            account.auth_kind,
            account.client_id,
            account.client_secret_enc,
            account.password_enc,
            account.refresh_token_enc,
            account.user_agent,
            account.username_key,
        )
        cached = self._clients.get(account.id)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        if cached is not None:
            await cached[1].aclose()
            del self._clients[account.id]
        credentials = self.credentials(account)
        if credentials is None:
            return None
        config = dataclasses.replace(self.config, user_agent=self.agent_for(account))
        client = RedditClient(
            config,
            credentials,
            self.budgets.get(credentials.client_id),
            self._transport,
            clock=self.clock,
            sleep=self.sleep,
            rng=self._rng,
        )
        self._clients[account.id] = (fingerprint, client)
        return client

    def agent_for(self, account: RedditAccount) -> str:
        """The account's own agent, else REDDIT_USER_AGENT, else one naming the account:
        never one agent shared by unrelated installs (Reddit throttles by agent)."""
        return account.user_agent or self.user_agent or account_user_agent(account.username)

    async def forget(self, account_id: int) -> None:
        cached = self._clients.pop(account_id, None)
        if cached is not None:
            await cached[1].aclose()

    async def aclose(self) -> None:
        for _, client in list(self._clients.values()):
            await client.aclose()
        self._clients.clear()
        await self.budgets.flush()  # slots and pacing still being written to the database
