"""Connected Reddit accounts: adding, listing, pausing, removing, pacing, testing the login.

Secrets (app secret, password, refresh token) are sealed with the SecretBox before they touch
the database and only revealed in `RedditClients`, where a client is built. Everything shown
to an operator is an `AccountView`, where secrets are masked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.actor import Actor
from core.clock import Clock
from core.crypto import SecretBox, mask
from core.errors import Conflict, InvalidInput, NotFound
from core.reddit import RedditAPIError, RedditError, normalize_username
from core.reddit.config import user_agent_problem
from core.reddit_ops.account_status import change_status
from core.reddit_ops.clients import RedditClients
from core.reddit_ops.common import HEALTH_CHECK
from core.services.audit import record
from core.services.jobs import JobService
from storage.models import Role
from storage.reddit_models import (
    DEFAULT_MIN_GAP_MINUTES,
    DEFAULT_POSTS_PER_DAY,
    AccountStatus,
    AuthKind,
    RedditAccount,
)
from storage.repositories import reddit as repo
from storage.uow import UnitOfWork

CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{5,64}$")
MAX_POSTS_PER_DAY = 200
MAX_GAP_MINUTES = 7 * 24 * 60


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


class AccountService:
    """The team's own Reddit accounts. Viewers may look; operators change; owners remove.

    Reads run lock-free; every change is one short `uow.write()` with its audit row. Nothing
    here talks to Reddit inside a write: a login test or a token revocation reads first, talks
    to Reddit with no transaction open, then writes.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        box: SecretBox,
        *,
        jobs: JobService | None = None,
        clients: RedditClients | None = None,
    ) -> None:
        self.uow = uow
        self.clock = clock
        self.box = box
        self.jobs = jobs
        self.clients = clients

    # -- reading --------------------------------------------------------------------------
    async def list(self, actor: Actor) -> list[AccountView]:
        async with self.uow.read() as session:
            accounts = await repo.list_accounts(session, actor.tenant_id)
        return [AccountView.of(a) for a in accounts]

    async def get(self, actor: Actor, account_id: int) -> AccountView:
        return AccountView.of(await self._load(actor, account_id))

    async def _load(self, actor: Actor, account_id: int) -> RedditAccount:
        async with self.uow.read() as session:
            account = await repo.get_account(session, account_id, actor.tenant_id)
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
        now = self.clock.now()
        async with self.uow.write() as session:
            if await repo.account_by_username(session, actor.tenant_id, name) is not None:
                raise Conflict(f"u/{name} is already connected in this workspace.")
            account = await repo.add_account(
                session,
                RedditAccount(
                    tenant_id=actor.tenant_id,
                    username=name,
                    username_key=name.lower(),
                    auth_kind=kind,
                    user_agent=agent,
                    dry_run=dry_run,
                    status=AccountStatus.active,
                    status_changed_at=now,
                    posts_per_day=(
                        DEFAULT_POSTS_PER_DAY if posts_per_day is None else posts_per_day
                    ),
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
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="reddit.account.add",
                target=f"reddit_account:{account.id}",
                details={"username": name, "auth_kind": kind, "dry_run": account.is_dry_run},
            )
            if check and account.has_credentials:
                await self._enqueue_check(actor, account)
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
        problem = "it is too long" if len(value) > 255 else user_agent_problem(value)
        if problem is not None:
            raise InvalidInput(f"That User-Agent cannot be used: {problem}.")
        return value

    # -- changing -------------------------------------------------------------------------
    async def pause(self, actor: Actor, account_id: int, reason: str | None = None) -> AccountView:
        """Stop submitting for this account; its queued posts wait (they are not cancelled)."""
        actor.require(Role.operator, "pause Reddit accounts")
        account = await self._load(actor, account_id)
        if account.status == AccountStatus.paused:
            raise Conflict(f"u/{account.username} is already paused.")
        async with self.uow.write() as session:
            updated = await change_status(
                session,
                self.clock,
                account,
                AccountStatus.paused,
                reason or f"paused by {actor.label}",
                actor=actor,
                action="reddit.account.pause",
            )
        if updated is None:
            raise Conflict(f"u/{account.username} changed meanwhile; look again.")
        return AccountView.of(updated)

    async def resume(self, actor: Actor, account_id: int) -> AccountView:
        """Make the account active again; overdue queued posts go out (paced) right away."""
        actor.require(Role.operator, "resume Reddit accounts")
        account = await self._load(actor, account_id)
        if account.status == AccountStatus.active:
            raise Conflict(f"u/{account.username} is already active.")
        now = self.clock.now()
        async with self.uow.write() as session:
            updated = await change_status(
                session,
                self.clock,
                account,
                AccountStatus.active,
                None,
                actor=actor,
                action="reddit.account.resume",
            )
            if updated is not None:
                await repo.wake_account_jobs(session, account.id, now)
                self.uow.after_commit(lambda: self._wake(now))
        if updated is None:
            raise Conflict(f"u/{account.username} changed meanwhile; look again.")
        return AccountView.of(updated)

    async def remove(self, actor: Actor, account_id: int) -> RemovedAccount:
        """Revoke the account's tokens on Reddit, then delete it with its secrets, posts,
        inbox and cursors (owners only). Waiting submit jobs of its posts are cancelled in the
        same write. A revocation Reddit refuses (or cannot be reached for) is reported, but
        the secrets are deleted all the same: keeping them would not make them safer."""
        actor.require(Role.owner, "remove Reddit accounts")
        account = await self._load(actor, account_id)
        name = account.username
        revoke_problem = await self._revoke(account)
        now = self.clock.now()
        async with self.uow.write() as session:
            await repo.cancel_account_jobs(
                session, account.id, now, f"u/{name} was removed by {actor.label}"
            )
            deleted = await repo.delete_account(session, account.id, actor.tenant_id)
            if not deleted:
                raise NotFound(f"Reddit account #{account_id} was removed meanwhile.")
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="reddit.account.remove",
                target=f"reddit_account:{account_id}",
                details={
                    "username": name,
                    "revoked": account.has_credentials and revoke_problem is None,
                    "revoke_problem": revoke_problem,
                },
            )
        if self.clients is not None:
            await self.clients.forget(account_id)
        return RemovedAccount(name, account.has_credentials, revoke_problem)

    async def _revoke(self, account: RedditAccount) -> str | None:
        """Revoke the account's tokens on Reddit; None when done (or nothing to revoke)."""
        if self.clients is None or not account.has_credentials:
            return None
        try:
            client = await self.clients.client(account)
            if client is not None:
                await client.revoke_tokens()
        except RedditError as exc:
            return exc.message
        return None

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
        values: dict[str, Any] = {"updated_at": self.clock.now()}
        if posts_per_day is not None:
            values["posts_per_day"] = posts_per_day
        if min_gap_minutes is not None:
            values["min_gap_minutes"] = min_gap_minutes
        async with self.uow.write() as session:
            updated = await repo.update_account(
                session, account_id, values, tenant_id=actor.tenant_id
            )
            if updated is None:
                raise NotFound(f"Reddit account #{account_id} does not exist in your workspace.")
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="reddit.account.pacing",
                target=f"reddit_account:{account_id}",
                details={
                    "posts_per_day": updated.posts_per_day,
                    "min_gap_minutes": updated.min_gap_minutes,
                },
            )
        return AccountView.of(updated)

    async def set_dry_run(self, actor: Actor, account_id: int, dry_run: bool) -> AccountView:
        actor.require(Role.operator, "switch dry run")
        async with self.uow.write() as session:
            updated = await repo.update_account(
                session,
                account_id,
                {"dry_run": dry_run, "updated_at": self.clock.now()},
                tenant_id=actor.tenant_id,
            )
            if updated is None:
                raise NotFound(f"Reddit account #{account_id} does not exist in your workspace.")
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="reddit.account.dry_run",
                target=f"reddit_account:{account_id}",
                details={"dry_run": dry_run},
            )
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
        kind = self._auth_kind(auth_kind, client_id, password, refresh_token)
        sealed = self._seal(kind, client_id, client_secret, password, refresh_token)
        now = self.clock.now()
        async with self.uow.write() as session:
            account = await repo.get_account(session, account_id, actor.tenant_id)
            if account is None:
                raise NotFound(f"Reddit account #{account_id} does not exist in your workspace.")
            values: dict[str, Any] = {"auth_kind": kind, "updated_at": now, **sealed}
            if account.status == AccountStatus.auth_failed:
                values.update(
                    status=AccountStatus.active, status_reason=None, status_changed_at=now
                )
            updated = await repo.update_account(
                session, account.id, values, tenant_id=actor.tenant_id
            )
            assert updated is not None
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="reddit.account.credentials",
                target=f"reddit_account:{account.id}",
                details={"auth_kind": kind},
            )
            if check and updated.has_credentials:
                await self._enqueue_check(actor, updated)
        return AccountView.of(updated)

    async def check_now(self, actor: Actor, account_id: int) -> int | None:
        """Queue a health check (`/api/v1/me`) for the account; returns the job id."""
        actor.require(Role.operator, "check Reddit accounts")
        account = await self._load(actor, account_id)
        async with self.uow.write():
            return await self._enqueue_check(actor, account)

    async def _enqueue_check(self, actor: Actor, account: RedditAccount) -> int | None:
        """Inside the caller's write: the job joins it, the engine wakes after the commit."""
        if self.jobs is None:
            raise RuntimeError("AccountService needs a JobService to queue checks")
        return await self.jobs.submit(
            actor.tenant_id,
            HEALTH_CHECK,
            {"account_id": account.id},
            actor=actor,
            max_attempts=3,
        )

    def _wake(self, run_at: datetime) -> None:
        if self.jobs is not None and self.jobs.engine is not None:
            self.jobs.engine.wake_at(run_at)


@dataclass(frozen=True, slots=True)
class RemovedAccount:
    """What removing an account did: its name, and whether its tokens were revoked."""

    username: str
    had_credentials: bool
    revoke_problem: str | None  # None: revoked (or there was nothing to revoke)
