"""Connected Reddit accounts: adding, listing, pausing, removing, pacing, health checks.

Secrets (app secret, password, refresh token) are sealed with the SecretBox before they touch
the database and only revealed in `RedditClients`, where a client is built. Everything shown
to an operator is an `AccountView`, where secrets are masked.
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from core.actor import Actor
from core.clock import Clock
from core.crypto import SecretBox, mask
from core.errors import Conflict, InvalidInput, NotFound
from core.jobs.context import JobContext
from core.jobs.queue import enqueue
from core.reddit import (
    Credentials,
    RateBudgetRegistry,
    RedditAPIError,
    RedditAuthError,
    RedditClient,
    RedditConfig,
    RefreshTokenCredentials,
    ScriptCredentials,
    normalize_username,
)
from core.reddit.ratelimit import Sleep
from core.reddit_ops.common import DEP_CLIENTS, HEALTH_CHECK
from core.services.audit import record
from core.services.jobs import JobService
from core.settings import RedditSettings
from core.timefmt import fmt
from storage.models import Role
from storage.reddit_models import (
    DEFAULT_MIN_GAP_MINUTES,
    DEFAULT_POSTS_PER_DAY,
    AccountStatus,
    AuthKind,
    RedditAccount,
)
from storage.repositories import reddit as repo

CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{5,64}$")
MAX_POSTS_PER_DAY = 200
MAX_GAP_MINUTES = 7 * 24 * 60
# Statuses a health check may turn back to active when Reddit says all is well.
RECOVERABLE = (AccountStatus.suspended, AccountStatus.auth_failed)


def config_from_settings(settings: RedditSettings, **overrides: Any) -> RedditConfig:
    """The client configuration from REDDIT_* settings."""
    values: dict[str, Any] = {
        "user_agent": settings.user_agent,
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
    credentials change. Close everything with `aclose()` at shutdown.
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
    ) -> None:
        self.config = config
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
        config = self.config
        if account.user_agent:
            config = dataclasses.replace(config, user_agent=account.user_agent)
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

    async def forget(self, account_id: int) -> None:
        cached = self._clients.pop(account_id, None)
        if cached is not None:
            await cached[1].aclose()

    async def aclose(self) -> None:
        for _, client in list(self._clients.values()):
            await client.aclose()
        self._clients.clear()
        await self.budgets.flush()  # slots and pacing still being written to the database


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account as an operator may see it: secrets are masked."""

    id: int
    username: str
    auth_kind: str
    client_id: str | None
    client_secret: str
    password: str
    refresh_token: str
    user_agent: str | None
    dry_run: bool  # effective: marked dry-run or no credentials
    marked_dry_run: bool
    has_credentials: bool
    status: str
    status_reason: str | None
    status_changed_at: datetime | None
    cooldown_until: datetime | None
    last_check_at: datetime | None
    link_karma: int | None
    comment_karma: int | None
    posts_per_day: int
    min_gap_minutes: int
    created_by: int | None
    created_at: datetime

    @property
    def is_active(self) -> bool:
        return self.status == AccountStatus.active

    @classmethod
    def of(cls, account: RedditAccount) -> AccountView:
        return cls(
            id=account.id,
            username=account.username,
            auth_kind=account.auth_kind,
            client_id=account.client_id,
            client_secret=mask(account.client_secret_enc),
            password=mask(account.password_enc),
            refresh_token=mask(account.refresh_token_enc),
            user_agent=account.user_agent,
            dry_run=account.is_dry_run,
            marked_dry_run=account.dry_run,
            has_credentials=account.has_credentials,
            status=account.status,
            status_reason=account.status_reason,
            status_changed_at=account.status_changed_at,
            cooldown_until=account.cooldown_until,
            last_check_at=account.last_check_at,
            link_karma=account.link_karma,
            comment_karma=account.comment_karma,
            posts_per_day=account.posts_per_day,
            min_gap_minutes=account.min_gap_minutes,
            created_by=account.created_by,
            created_at=account.created_at,
        )


def parse_username(text: str) -> str:
    try:
        return normalize_username(text or "")
    except RedditAPIError as exc:
        raise InvalidInput(
            f"{exc.message}: 3–20 letters, digits, _ or -, e.g. u/opsdeck_team"
        ) from None


def parse_client_id(text: str) -> str:
    value = (text or "").strip()
    if not CLIENT_ID_RE.match(value):
        raise InvalidInput(
            "That does not look like a Reddit app id (the string under the app's name on "
            "reddit.com/prefs/apps: letters, digits, _ and -)."
        )
    return value


def _check_pacing(posts_per_day: int | None, min_gap_minutes: int | None) -> None:
    if posts_per_day is not None and not 0 <= posts_per_day <= MAX_POSTS_PER_DAY:
        raise InvalidInput(f"Posts per day must be 0 (no limit) to {MAX_POSTS_PER_DAY}.")
    if min_gap_minutes is not None and not 0 <= min_gap_minutes <= MAX_GAP_MINUTES:
        raise InvalidInput("The minimum gap must be 0 to 10080 minutes (a week).")


async def change_status(
    session: AsyncSession,
    clock: Clock,
    account: RedditAccount,
    status: str,
    reason: str | None,
    *,
    actor: Actor | None = None,
    action: str = "reddit.account.status",
    from_statuses: tuple[str, ...] | None = None,
    extra: dict[str, Any] | None = None,
) -> RedditAccount | None:
    """Move an account to `status` if it is still where we saw it; audited. None = lost race."""
    now = clock.now()
    updated = await repo.update_account(
        session,
        account.id,
        {
            "status": status,
            "status_reason": reason,
            "status_changed_at": now,
            "updated_at": now,
            **(extra or {}),
        },
        tenant_id=account.tenant_id,
        from_statuses=from_statuses or (account.status,),
    )
    if updated is not None:
        await record(
            session,
            clock,
            tenant_id=account.tenant_id,
            actor=actor,
            action=action,
            target=f"reddit_account:{account.id}",
            details={"username": account.username, "status": status, "reason": reason},
        )
    return updated


_REFUSED_PREFIX = re.compile(r"^reddit refused the login(?: for \S+?)?:\s*", re.IGNORECASE)


def status_message(username: str, status: str, reason: str | None) -> str:
    """What the operators are told when an account's status changes on its own."""
    if status == AccountStatus.suspended:
        return (
            f"⛔ u/{username} is suspended on Reddit{f' ({reason})' if reason else ''}. "
            "Its queue is paused: its queued posts wait until the account is active again."
        )
    if status == AccountStatus.auth_failed:
        # The client's error already reads "Reddit refused the login for u/x: why"; say it once.
        why = _REFUSED_PREFIX.sub("", (reason or "").strip(), count=1)
        return (
            f"🔑 Reddit refused the login for u/{username}: {why or 'unknown reason'}. "
            "Its queue is paused until the credentials are fixed (/accounts)."
        )
    if status == AccountStatus.active:
        return f"✅ u/{username} checks out fine again; its queue runs again."
    return f"u/{username} is now {status.replace('_', ' ')}{f': {reason}' if reason else ''}."


class AccountService:
    """The team's own Reddit accounts. Viewers may look; operators change; owners remove.

    Bound to one session; every mutating method commits (with its audit row) at the end.
    """

    def __init__(
        self,
        session: AsyncSession,
        clock: Clock,
        box: SecretBox,
        *,
        jobs: JobService | None = None,
        clients: RedditClients | None = None,
    ) -> None:
        self.session = session
        self.clock = clock
        self.box = box
        self.jobs = jobs
        self.clients = clients

    # -- reading --------------------------------------------------------------------------
    async def list(self, actor: Actor) -> list[AccountView]:
        return [AccountView.of(a) for a in await repo.list_accounts(self.session, actor.tenant_id)]

    async def get(self, actor: Actor, account_id: int) -> AccountView:
        return AccountView.of(await self._load(actor, account_id))

    async def _load(self, actor: Actor, account_id: int) -> RedditAccount:
        account = await repo.get_account(self.session, account_id, actor.tenant_id)
        if account is None:
            raise NotFound(f"Reddit account #{account_id} does not exist in your workspace.")
        return account

    # -- adding ---------------------------------------------------------------------------
    async def add(
        self,
        actor: Actor,
        *,
        username: str,
        auth_kind: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        password: str | None = None,
        refresh_token: str | None = None,
        user_agent: str | None = None,
        dry_run: bool = False,
        posts_per_day: int | None = None,
        min_gap_minutes: int | None = None,
        check: bool = True,
    ) -> AccountView:
        """Connect an account.

        `auth_kind` "script" needs client_id, client_secret and password; "refresh_token"
        needs client_id and refresh_token (installed apps have an empty secret); "none" (or
        no credentials at all) makes a dry-run-only account. Without `auth_kind` it is
        inferred from what is given. With `check`, a health check job is queued at once.
        """
        actor.require(Role.operator, "connect Reddit accounts")
        name = parse_username(username)
        kind = self._auth_kind(auth_kind, client_id, password, refresh_token)
        _check_pacing(posts_per_day, min_gap_minutes)
        sealed = self._seal(kind, client_id, client_secret, password, refresh_token)
        agent = self._user_agent(user_agent)
        if await repo.account_by_username(self.session, actor.tenant_id, name) is not None:
            raise Conflict(f"u/{name} is already connected in this workspace.")
        now = self.clock.now()
        account = await repo.add_account(
            self.session,
            RedditAccount(
                tenant_id=actor.tenant_id,
                username=name,
                username_key=name.lower(),
                auth_kind=kind,
                user_agent=agent,
                dry_run=dry_run,
                status=AccountStatus.active,
                status_changed_at=now,
                posts_per_day=DEFAULT_POSTS_PER_DAY if posts_per_day is None else posts_per_day,
                min_gap_minutes=(
                    DEFAULT_MIN_GAP_MINUTES if min_gap_minutes is None else min_gap_minutes
                ),
                created_by=actor.user_id,
                created_at=now,
                updated_at=now,
                **sealed,
            ),
        )
        await record(
            self.session,
            self.clock,
            tenant_id=actor.tenant_id,
            actor=actor,
            action="reddit.account.add",
            target=f"reddit_account:{account.id}",
            details={"username": name, "auth_kind": kind, "dry_run": account.is_dry_run},
        )
        job_id = None
        if check and account.has_credentials and self.jobs is not None:
            job_id = await self._enqueue_check(actor, account)
        await self.session.commit()
        if job_id is not None and self.jobs is not None:
            await self.jobs.after_commit(actor.tenant_id, job_id, now, False)
        return AccountView.of(account)

    def _auth_kind(
        self,
        auth_kind: str | None,
        client_id: str | None,
        password: str | None,
        refresh_token: str | None,
    ) -> str:
        if auth_kind is None:
            if refresh_token:
                return AuthKind.refresh_token
            if password or client_id:
                return AuthKind.script
            return AuthKind.none
        value = auth_kind.strip().lower().replace("-", "_").replace(" ", "_")
        if value in ("password", "script_app"):
            value = AuthKind.script
        if value not in {k.value for k in AuthKind}:
            raise InvalidInput("The login kind is script (password) or refresh_token.")
        return value

    def _seal(
        self,
        kind: str,
        client_id: str | None,
        client_secret: str | None,
        password: str | None,
        refresh_token: str | None,
    ) -> dict[str, str | None]:
        """Check the credentials a login kind needs and seal them for storage."""
        if kind == AuthKind.none:
            if client_id or client_secret or password or refresh_token:
                raise InvalidInput("A dry-run-only account takes no credentials.")
            return {
                "client_id": None,
                "client_secret_enc": None,
                "password_enc": None,
                "refresh_token_enc": None,
            }
        app = parse_client_id(client_id or "")
        secret = (client_secret or "").strip()
        if kind == AuthKind.script:
            if not secret:
                raise InvalidInput("A script app needs its secret (shown under the app's id).")
            if not password:
                raise InvalidInput("A script app logs in with the account's password.")
            return {
                "client_id": app,
                "client_secret_enc": self.box.seal(secret),
                "password_enc": self.box.seal(password),
                "refresh_token_enc": None,
            }
        token = (refresh_token or "").strip()
        if not token:
            raise InvalidInput("A refresh-token login needs the refresh token.")
        return {
            "client_id": app,
            # Installed apps have no secret; keep "none" apart from "empty".
            "client_secret_enc": self.box.seal(secret) if secret else None,
            "password_enc": None,
            "refresh_token_enc": self.box.seal(token),
        }

    @staticmethod
    def _user_agent(user_agent: str | None) -> str | None:
        if user_agent is None or not user_agent.strip():
            return None
        value = user_agent.strip()
        if len(value) > 255 or ":" not in value:
            raise InvalidInput(
                "A Reddit User-Agent looks like <platform>:<app id>:<version> (by /u/<name>)."
            )
        return value

    # -- changing -------------------------------------------------------------------------
    async def pause(self, actor: Actor, account_id: int, reason: str | None = None) -> AccountView:
        """Stop submitting for this account; its queued posts wait (they are not cancelled)."""
        actor.require(Role.operator, "pause Reddit accounts")
        account = await self._load(actor, account_id)
        if account.status == AccountStatus.paused:
            raise Conflict(f"u/{account.username} is already paused.")
        updated = await change_status(
            self.session,
            self.clock,
            account,
            AccountStatus.paused,
            reason or f"paused by {actor.label}",
            actor=actor,
            action="reddit.account.pause",
        )
        if updated is None:
            await self.session.rollback()
            raise Conflict(f"u/{account.username} changed meanwhile; look again.")
        await self.session.commit()
        return AccountView.of(updated)

    async def resume(self, actor: Actor, account_id: int) -> AccountView:
        """Make the account active again; overdue queued posts go out (paced) right away."""
        actor.require(Role.operator, "resume Reddit accounts")
        account = await self._load(actor, account_id)
        if account.status == AccountStatus.active:
            raise Conflict(f"u/{account.username} is already active.")
        updated = await change_status(
            self.session,
            self.clock,
            account,
            AccountStatus.active,
            None,
            actor=actor,
            action="reddit.account.resume",
        )
        if updated is None:
            await self.session.rollback()
            raise Conflict(f"u/{account.username} changed meanwhile; look again.")
        now = self.clock.now()
        await repo.wake_account_jobs(self.session, account.id, now)
        await self.session.commit()
        if self.jobs is not None and self.jobs.engine is not None:
            self.jobs.engine.wake_at(now)
        return AccountView.of(updated)

    async def remove(self, actor: Actor, account_id: int) -> str:
        """Delete the account with its secrets, posts, inbox and cursors; owners only.

        Waiting submit jobs of its posts are cancelled in the same transaction.
        """
        actor.require(Role.owner, "remove Reddit accounts")
        account = await self._load(actor, account_id)
        name = account.username
        now = self.clock.now()
        await repo.cancel_account_jobs(
            self.session, account.id, now, f"u/{name} was removed by {actor.label}"
        )
        await repo.delete_account(self.session, account.id, actor.tenant_id)
        await record(
            self.session,
            self.clock,
            tenant_id=actor.tenant_id,
            actor=actor,
            action="reddit.account.remove",
            target=f"reddit_account:{account_id}",
            details={"username": name},
        )
        await self.session.commit()
        if self.clients is not None:
            await self.clients.forget(account_id)
        return name

    async def set_pacing(
        self,
        actor: Actor,
        account_id: int,
        *,
        posts_per_day: int | None = None,
        min_gap_minutes: int | None = None,
    ) -> AccountView:
        """Change the account's pacing (0 = no rule). Applies to posts queued from now on and
        to every submit (which re-checks the rules when it runs)."""
        actor.require(Role.operator, "change pacing")
        _check_pacing(posts_per_day, min_gap_minutes)
        account = await self._load(actor, account_id)
        values: dict[str, Any] = {"updated_at": self.clock.now()}
        if posts_per_day is not None:
            values["posts_per_day"] = posts_per_day
        if min_gap_minutes is not None:
            values["min_gap_minutes"] = min_gap_minutes
        updated = await repo.update_account(
            self.session, account.id, values, tenant_id=actor.tenant_id
        )
        assert updated is not None
        await record(
            self.session,
            self.clock,
            tenant_id=actor.tenant_id,
            actor=actor,
            action="reddit.account.pacing",
            target=f"reddit_account:{account.id}",
            details={
                "posts_per_day": updated.posts_per_day,
                "min_gap_minutes": updated.min_gap_minutes,
            },
        )
        await self.session.commit()
        return AccountView.of(updated)

    async def set_dry_run(self, actor: Actor, account_id: int, dry_run: bool) -> AccountView:
        actor.require(Role.operator, "switch dry run")
        account = await self._load(actor, account_id)
        updated = await repo.update_account(
            self.session,
            account.id,
            {"dry_run": dry_run, "updated_at": self.clock.now()},
            tenant_id=actor.tenant_id,
        )
        assert updated is not None
        await record(
            self.session,
            self.clock,
            tenant_id=actor.tenant_id,
            actor=actor,
            action="reddit.account.dry_run",
            target=f"reddit_account:{account.id}",
            details={"dry_run": dry_run},
        )
        await self.session.commit()
        return AccountView.of(updated)

    async def set_credentials(
        self,
        actor: Actor,
        account_id: int,
        *,
        auth_kind: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        password: str | None = None,
        refresh_token: str | None = None,
        check: bool = True,
    ) -> AccountView:
        """Replace the stored credentials (e.g. after "auth failed"). An account whose login
        had failed becomes active again; with `check` a health check is queued."""
        actor.require(Role.operator, "change Reddit credentials")
        account = await self._load(actor, account_id)
        kind = self._auth_kind(auth_kind, client_id, password, refresh_token)
        sealed = self._seal(kind, client_id, client_secret, password, refresh_token)
        now = self.clock.now()
        values: dict[str, Any] = {"auth_kind": kind, "updated_at": now, **sealed}
        if account.status == AccountStatus.auth_failed:
            values.update(status=AccountStatus.active, status_reason=None, status_changed_at=now)
        updated = await repo.update_account(
            self.session, account.id, values, tenant_id=actor.tenant_id
        )
        assert updated is not None
        await record(
            self.session,
            self.clock,
            tenant_id=actor.tenant_id,
            actor=actor,
            action="reddit.account.credentials",
            target=f"reddit_account:{account.id}",
            details={"auth_kind": kind},
        )
        job_id = None
        if check and updated.has_credentials and self.jobs is not None:
            job_id = await self._enqueue_check(actor, updated)
        await self.session.commit()
        if job_id is not None and self.jobs is not None:
            await self.jobs.after_commit(actor.tenant_id, job_id, now, False)
        return AccountView.of(updated)

    async def check_now(self, actor: Actor, account_id: int) -> int | None:
        """Queue a health check (`/api/v1/me`) for the account; returns the job id."""
        actor.require(Role.operator, "check Reddit accounts")
        if self.jobs is None:
            raise RuntimeError("AccountService needs a JobService to queue checks")
        account = await self._load(actor, account_id)
        job_id = await self._enqueue_check(actor, account)
        await self.session.commit()
        await self.jobs.after_commit(actor.tenant_id, job_id, self.clock.now(), False)
        return job_id

    async def _enqueue_check(self, actor: Actor, account: RedditAccount) -> int | None:
        assert self.jobs is not None
        return await self.jobs.submit(
            actor.tenant_id,
            HEALTH_CHECK,
            {"account_id": account.id},
            actor=actor,
            max_attempts=3,
            commit=False,
        )


# == jobs ========================================================================================


async def health_check(ctx: JobContext) -> dict[str, Any]:
    """`reddit.health_check` (payload `account_id`): read `/api/v1/me` and update the status.

    Suspended → `suspended`; refused login → `auth_failed`; a suspended or auth-failed account
    that checks out fine → `active`. A change pauses (or resumes) the account's queue — the
    submit job only sends for active accounts — and tells the operators. When Reddit cannot be
    reached the status is left alone and the error propagates (the engine retries later).
    """
    account_id = int(ctx.payload["account_id"])
    clients: RedditClients = ctx.dep(DEP_CLIENTS)
    async with ctx.sessionmaker() as session:
        account = await repo.get_account(session, account_id, ctx.tenant_id)
    if account is None:
        return {"skipped": "the account was removed"}
    client = await clients.client(account)
    now = ctx.clock.now()
    if client is None:
        async with ctx.sessionmaker() as session:
            await repo.update_account(session, account.id, {"last_check_at": now})
            await session.commit()
        return {"dry_run": True, "status": account.status}

    new_status: str | None = None
    reason: str | None = None
    values: dict[str, Any] = {"last_check_at": now}
    try:
        me = await client.me()
    except RedditAuthError as exc:
        new_status, reason = AccountStatus.auth_failed, exc.message
    else:
        if me.name and me.name.lower() != account.username_key:
            new_status = AccountStatus.auth_failed
            reason = f"these credentials log in as u/{me.name}, not u/{account.username}"
        elif me.is_suspended:
            new_status = AccountStatus.suspended
            if me.suspension_expiration_utc:
                until = datetime.fromtimestamp(me.suspension_expiration_utc, UTC)
                reason = f"until {fmt(until, 'UTC')}"
            else:
                reason = "Reddit gives no end date"
        else:
            values.update(link_karma=me.link_karma, comment_karma=me.comment_karma)
            if account.status in RECOVERABLE:
                new_status = AccountStatus.active
    changed = None
    async with ctx.sessionmaker() as session:
        await repo.update_account(session, account.id, values)
        if new_status is not None and new_status != account.status:
            changed = await change_status(session, ctx.clock, account, new_status, reason)
            if changed is not None and new_status == AccountStatus.active:
                await repo.wake_account_jobs(session, account.id, now)
        await session.commit()
    if changed is not None:
        await ctx.notifier.tell_operators(
            ctx.tenant_id, status_message(account.username, new_status or "", reason)
        )
    status = changed.status if changed is not None else account.status
    return {"account_id": account.id, "status": status, "changed": changed is not None}


async def fan_out(ctx: JobContext, kind: str, statuses: tuple[str, ...], **payload: Any) -> int:
    """Queue `kind` for every account (of every workspace) in `statuses`; returns how many.

    The dedupe key ties each queued job to this run, so a retried fan-out adds nothing twice.
    """
    queued = 0
    now = ctx.clock.now()
    async with ctx.sessionmaker() as session:
        accounts = await repo.accounts_with_status(session, statuses)
        for account in accounts:
            if not account.has_credentials:
                continue
            job_id = await enqueue(
                session,
                tenant_id=account.tenant_id,
                kind=kind,
                now=now,
                payload={"account_id": account.id, **payload},
                dedupe_key=f"{kind}:{account.id}:run{ctx.job_id}",
                max_attempts=3,
            )
            queued += job_id is not None
        await session.commit()
    return queued


async def health_check_all(ctx: JobContext) -> dict[str, Any]:
    """`reddit.health_check_all` (periodic): a health check for every active account."""
    return {"queued": await fan_out(ctx, HEALTH_CHECK, (AccountStatus.active,))}
