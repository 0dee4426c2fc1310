"""Operators and workspaces: who may use the bot, in which workspace, with which role."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from core.actor import Actor
from core.clock import Clock
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.services.audit import record
from core.timefmt import parse_timezone
from storage.identity import OperatorRecord
from storage.models import Operator, Role, Tenant
from storage.repositories import fsm as fsm_repo
from storage.repositories import operators as op_repo
from storage.repositories import tenants as tenant_repo
from storage.uow import UnitOfWork

ASSIGNABLE_ROLES = (Role.operator, Role.viewer)
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,31}$")
MAX_USER_ID = 2**52  # Telegram user ids fit in 52 bits


def to_actor(op: Operator | OperatorRecord) -> Actor:
    return Actor(
        operator_id=op.id,
        user_id=op.telegram_user_id,
        tenant_id=op.tenant_id,
        role=Role(op.role),
        timezone=op.timezone,
        display_name=op.display_name,
        notify=op.notify,
    )


def parse_user_id(text: str) -> int:
    text = (text or "").strip()
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < MAX_USER_ID:
        raise InvalidInput("A Telegram user id is a positive number, like 123456789.")
    return int(text)


def parse_role(text: str) -> Role:
    value = (text or "").strip().lower()
    if value not in {r.value for r in ASSIGNABLE_ROLES}:
        raise InvalidInput("The role must be operator or viewer.")
    return Role(value)


async def bootstrap_owners(session: AsyncSession, clock: Clock, owner_ids: Iterable[int]) -> Tenant:
    """Make sure the default workspace exists and every configured owner owns it."""
    now = clock.now()
    tenant = await tenant_repo.get_by_slug(session, tenant_repo.DEFAULT_SLUG)
    if tenant is None:
        tenant = await tenant_repo.create(session, tenant_repo.DEFAULT_SLUG, "Owner workspace", now)
    for user_id in owner_ids:
        op = await op_repo.by_telegram_id(session, user_id)
        if op is None:
            session.add(
                Operator(
                    tenant_id=tenant.id,
                    telegram_user_id=user_id,
                    role=Role.owner,
                    timezone="UTC",
                    notify=True,
                    created_at=now,
                )
            )
        elif op.tenant_id != tenant.id or op.role != Role.owner:
            op.tenant_id, op.role = tenant.id, Role.owner
    await session.flush()
    return tenant


async def operator_name(session: AsyncSession, tenant_id: int, user_id: int | None) -> str:
    """How audit text and stale-press answers name someone: their Telegram name if known."""
    if user_id is None:
        return "the system"
    op = await op_repo.by_telegram_id(session, user_id)
    if op is not None and op.tenant_id == tenant_id and op.display_name:
        return op.display_name
    return f"user {user_id}"


@dataclass(frozen=True, slots=True)
class OperatorRow:
    id: int
    user_id: int
    role: str
    display_name: str | None
    timezone: str


class OperatorService:
    """Operators of the actor's own workspace. Owners manage; everyone manages themselves."""

    def __init__(self, uow: UnitOfWork, clock: Clock, owner_ids: Iterable[int] = ()) -> None:
        self.uow = uow
        self.clock = clock
        self.configured_owners = frozenset(owner_ids)

    async def resolve(self, user_id: int) -> Actor | None:
        async with self.uow.read() as session:
            op = await op_repo.by_telegram_id(session, user_id)
        return to_actor(op) if op else None

    async def remember_name(self, actor: Actor, name: str | None) -> None:
        """Keep the Telegram name for cards and audit text (not audited: not a change)."""
        if name and name != actor.display_name:
            async with self.uow.write() as session:
                op = await session.get(Operator, actor.operator_id)
                if op is not None:
                    op.display_name = name[:128]

    async def list(self, actor: Actor) -> list[OperatorRow]:
        actor.require(Role.owner, "manage operators")
        async with self.uow.read() as session:
            ops = await op_repo.in_tenant(session, actor.tenant_id)
        return [
            OperatorRow(o.id, o.telegram_user_id, o.role, o.display_name, o.timezone) for o in ops
        ]

    async def add(self, actor: Actor, user_id: int, role: Role) -> OperatorRow:
        actor.require(Role.owner, "add operators")
        if role not in ASSIGNABLE_ROLES:
            raise InvalidInput("The role must be operator or viewer.")
        async with self.uow.write() as session:
            existing = await op_repo.by_telegram_id(session, user_id)
            if existing is not None:
                if existing.tenant_id == actor.tenant_id:
                    raise Conflict(f"User {user_id} is already here as {existing.role}.")
                raise Conflict(f"User {user_id} already belongs to another workspace.")
            op = Operator(
                tenant_id=actor.tenant_id,
                telegram_user_id=user_id,
                role=role,
                timezone=actor.timezone,
                notify=True,
                added_by=actor.user_id,
                created_at=self.clock.now(),
            )
            session.add(op)
            await session.flush()
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="operator.add",
                target=f"user:{user_id}",
                details={"role": role},
            )
        return OperatorRow(op.id, user_id, role, None, op.timezone)

    @staticmethod
    async def _managed(session: AsyncSession, actor: Actor, operator_id: int) -> Operator:
        actor.require(Role.owner, "manage operators")
        op = await session.get(Operator, operator_id)
        if op is None or op.tenant_id != actor.tenant_id:
            raise NotFound("That operator is not in your workspace (any more).")
        if op.id == actor.operator_id:
            raise Forbidden("You cannot change your own role or remove yourself.")
        if op.role == Role.owner:
            raise Forbidden("Owners are set in the configuration and cannot be changed here.")
        return op

    async def set_role(self, actor: Actor, operator_id: int, role: Role) -> OperatorRow:
        if role not in ASSIGNABLE_ROLES:
            raise InvalidInput("The role must be operator or viewer.")
        async with self.uow.write() as session:
            op = await self._managed(session, actor, operator_id)
            if op.role == role:
                raise Conflict(f"User {op.telegram_user_id} is already {role}.")
            old, op.role = op.role, role
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="operator.role",
                target=f"user:{op.telegram_user_id}",
                details={"from": old, "to": role},
            )
        return OperatorRow(op.id, op.telegram_user_id, op.role, op.display_name, op.timezone)

    async def remove(self, actor: Actor, operator_id: int) -> int:
        async with self.uow.write() as session:
            op = await self._managed(session, actor, operator_id)
            user_id = op.telegram_user_id
            await op_repo.remove(session, op.id)
            # a flow they were in must not resume if they are ever added back
            await fsm_repo.forget_user(session, user_id)
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="operator.remove",
                target=f"user:{user_id}",
                details={"role": op.role},
            )
        return user_id

    async def set_timezone(self, actor: Actor, name: str) -> str:
        tz = parse_timezone(name)
        async with self.uow.write() as session:
            op = await session.get(Operator, actor.operator_id)
            if op is None:
                raise NotFound("You are no longer an operator.")
            old, op.timezone = op.timezone, tz
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="operator.timezone",
                target=f"user:{actor.user_id}",
                details={"from": old, "to": tz},
            )
        return tz

    async def set_notify(self, actor: Actor, on: bool) -> None:
        async with self.uow.write() as session:
            op = await session.get(Operator, actor.operator_id)
            if op is None:
                raise NotFound("You are no longer an operator.")
            op.notify = on
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="operator.notify",
                target=f"user:{actor.user_id}",
                details={"on": on},
            )

    async def name_of(self, tenant_id: int, user_id: int | None) -> str:
        async with self.uow.read() as session:
            return await operator_name(session, tenant_id, user_id)

    # -- workspaces ---------------------------------------------------------------------------
    def require_configured_owner(self, actor: Actor) -> None:
        if actor.user_id not in self.configured_owners:
            raise Forbidden("Only owners named in OPSDECK_OWNER_IDS can manage workspaces.")

    async def list_tenants(self, actor: Actor) -> list[tuple[Tenant, int]]:
        self.require_configured_owner(actor)
        async with self.uow.read() as session:
            tenants = await tenant_repo.list_all(session)
            return [(t, len(await op_repo.in_tenant(session, t.id))) for t in tenants]

    async def create_tenant(self, actor: Actor, slug: str, first_owner: int) -> Tenant:
        """A new workspace with its first owner; only configured owners may do this."""
        self.require_configured_owner(actor)
        slug = (slug or "").strip().lower()
        if not SLUG_RE.match(slug):
            raise InvalidInput(
                "A workspace name is 2–32 of a-z, 0-9 and -, starting with a letter or digit."
            )
        async with self.uow.write() as session:
            if await tenant_repo.get_by_slug(session, slug) is not None:
                raise Conflict(f"A workspace named {slug} already exists.")
            if await op_repo.by_telegram_id(session, first_owner) is not None:
                raise Conflict(f"User {first_owner} already belongs to a workspace.")
            now = self.clock.now()
            tenant = await tenant_repo.create(session, slug, slug, now)
            session.add(
                Operator(
                    tenant_id=tenant.id,
                    telegram_user_id=first_owner,
                    role=Role.owner,
                    timezone="UTC",
                    notify=True,
                    added_by=actor.user_id,
                    created_at=now,
                )
            )
            await session.flush()
            for tid in (actor.tenant_id, tenant.id):
                await record(
                    session,
                    self.clock,
                    tenant_id=tid,
                    actor=actor,
                    action="tenant.create",
                    target=f"tenant:{slug}",
                    details={"first_owner": first_owner},
                )
        return tenant
