"""API tokens: owners make them in chat; scripts present them as `Authorization: Bearer …`.

A token acts as an operator of its workspace with its role (operator or viewer), so the HTTP
API goes through the same services, role checks and audit as the chat. The token is shown
once; only its SHA-256 is stored, and it is looked up by that hash (a 256-bit random value
needs no slow hash, and the lookup is an index probe, not a comparison loop).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.actor import Actor
from core.clock import Clock
from core.errors import Conflict, InvalidInput, NotFound, Unauthorized
from core.services.audit import record
from storage.api_models import ApiToken
from storage.models import Role
from storage.repositories import api_tokens as token_repo
from storage.repositories import operators as op_repo
from storage.uow import UnitOfWork

PREFIX = "odk_"  # lets secret scanners and people recognise an Opsdeck token
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_LIFETIME = timedelta(days=366)
TOUCH_EVERY = timedelta(minutes=1)  # last-use time is written at most this often per token


@dataclass(frozen=True, slots=True)
class CreatedToken:
    token: ApiToken
    secret: str  # shown once


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_role(text: str) -> Role:
    value = (text or "").strip().lower()
    if value not in Role.__members__:
        raise InvalidInput("A token's role is operator, viewer or owner.")
    return Role(value)


def parse_lifetime(text: str) -> timedelta | None:
    """`90d` → 90 days; `never` → None."""
    value = (text or "").strip().lower()
    if value == "never":
        return None
    days = value[:-1] if value.endswith("d") else ""
    if not (days.isascii() and days.isdigit()) or not 1 <= int(days) <= MAX_LIFETIME.days:
        raise InvalidInput(f"A token's lifetime is in days, 1d to {MAX_LIFETIME.days}d, or never.")
    return timedelta(days=int(days))


def parse_name(text: str) -> str:
    name = (text or "").strip()
    if not NAME_RE.match(name):
        raise InvalidInput(
            "A token name is 1–64 letters, digits, dots, dashes or underscores, e.g. ci-upload."
        )
    return name


class ApiTokenService:
    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self.uow = uow
        self.clock = clock

    async def create(
        self, actor: Actor, name: str, role: Role, lifetime: timedelta | None = None
    ) -> CreatedToken:
        actor.require(Role.owner, "create API tokens")
        name = parse_name(name)
        if lifetime is not None and not timedelta(minutes=1) <= lifetime <= MAX_LIFETIME:
            raise InvalidInput("A token lives between a minute and a year (e.g. 90d), or forever.")
        secret = PREFIX + secrets.token_urlsafe(32)
        now = self.clock.now()
        async with self.uow.write() as session:
            if await token_repo.name_taken(session, actor.tenant_id, name):
                raise Conflict(f"A live token named {name} exists already; revoke it first.")
            token = await token_repo.add(
                session,
                ApiToken(
                    tenant_id=actor.tenant_id,
                    name=name,
                    role=role.value,
                    token_hash=hash_token(secret),
                    created_by=actor.user_id,
                    created_at=now,
                    expires_at=now + lifetime if lifetime else None,
                ),
            )
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="api_token.create",
                target=f"token:{token.id}",
                details={"name": name, "role": role.value, "expires_at": _iso(token.expires_at)},
            )
        return CreatedToken(token, secret)

    async def list(self, actor: Actor) -> list[ApiToken]:
        actor.require(Role.owner, "see API tokens")
        async with self.uow.read() as session:
            return await token_repo.in_tenant(session, actor.tenant_id)

    async def revoke(self, actor: Actor, token_id: int) -> ApiToken:
        actor.require(Role.owner, "revoke API tokens")
        now = self.clock.now()
        async with self.uow.write() as session:
            token = await token_repo.get(session, token_id, actor.tenant_id)
            if token is None:
                raise NotFound(f"Token #{token_id} does not exist in your workspace.")
            if not await token_repo.revoke(session, token_id, actor.tenant_id, actor.user_id, now):
                raise Conflict(f"Token {token.name} was already revoked.")
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="api_token.revoke",
                target=f"token:{token_id}",
                details={"name": token.name},
            )
            token.revoked_at, token.revoked_by = now, actor.user_id
        return token

    async def authenticate(self, secret: str) -> Actor:
        """The actor a bearer token stands for; Unauthorized when it is unknown or dead.

        The creator must still be an operator of the token's workspace: removing someone
        from the workspace also silences the tokens they made."""
        if not secret.startswith(PREFIX) or len(secret) > 128:
            raise Unauthorized("Unknown API token.")
        now = self.clock.now()
        async with self.uow.read() as session:
            token = await token_repo.by_hash(session, hash_token(secret))
            if token is None:
                raise Unauthorized("Unknown API token.")
            if token.revoked_at is not None:
                raise Unauthorized("This API token was revoked.")
            if token.expires_at is not None and token.expires_at <= now:
                raise Unauthorized("This API token has expired.")
            creator = await op_repo.by_telegram_id(session, token.created_by)
        if creator is None or creator.tenant_id != token.tenant_id or creator.role != Role.owner:
            raise Unauthorized("The owner who made this API token is no longer an owner here.")
        if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
            async with self.uow.write() as session:
                await token_repo.touch(session, token.id, now)
        return Actor(
            operator_id=creator.id,
            user_id=creator.telegram_user_id,
            tenant_id=token.tenant_id,
            role=Role(token.role),
            timezone=creator.timezone,
            display_name=f"token {token.name}",
            notify=False,
            token_id=token.id,
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
