"""Authorisation matrix, generated from the routers the app actually registers.

Every command and every kind of callback button is sent by a stranger, a viewer, an owner of
another workspace, an operator and an owner. Each must get an answer that is not a crash;
roles below a command's minimum are refused; and nobody but an operator or owner of the
workspace changes anything in it — forged callback data naming this workspace's ids included.
A callback class without samples below fails the test, so new buttons join the matrix.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiogram import Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData, CallbackQueryFilter
from sqlalchemy import delete, select

from bot.commands import COMMANDS, EXTRA_COMMANDS, RANK
from storage.models import AuditEntry, Base, FsmRecord, Job, Role
from tests.e2e.conftest import OPERATOR, OWNER, STRANGER, VIEWER, Harness

OTHER_OWNER = 4001  # owns another workspace
ROLES = {
    "stranger": STRANGER,
    "viewer": VIEWER,
    "other": OTHER_OWNER,
    "operator": OPERATOR,
    "owner": OWNER,
}
CRASH = "Something went wrong on our side"
# Columns that change without anyone acting (bookkeeping), left out of the "nothing changed" check.
VOLATILE = {"updated_at", "display_name", "last_synced_at", "last_check_at"}
SKIP_TABLES = {
    *("fsm_state", "audit_log", "vault_claims", "outbox", "alembic_version", "backups"),
    # rate-limit bookkeeping: a refused stranger's attempt is counted there on purpose
    *("rate_counters", "reddit_rate_budgets", "reddit_rate_slots"),
}


def walk(router: Router) -> typing.Iterator[Router]:
    yield router
    for sub in router.sub_routers:
        yield from walk(sub)


def registered(app: Harness) -> tuple[set[str], set[type[CallbackData]]]:
    commands: set[str] = set()
    callbacks: set[type[CallbackData]] = set()
    for router in walk(app.app.dispatcher):
        for observer in (router.message, router.callback_query):
            for handler in observer.handlers:
                for flt in handler.filters or []:
                    cb = flt.callback
                    if isinstance(cb, Command):
                        commands |= {c for c in cb.commands if isinstance(c, str)}
                    elif isinstance(cb, CallbackQueryFilter):
                        callbacks.add(cb.callback_data)
    return commands, callbacks


@dataclass
class Ids:
    job: int
    operator: int  # operators.id of the viewer row (a manageable operator)
    other: dict[str, int]  # feature ids (vault item, link, account, post …) when they exist


def samples(ids: Ids) -> dict[str, Callable[[type[CallbackData]], list[CallbackData]]]:
    """prefix → builder of sample presses naming this workspace's objects."""
    job = ids.job

    def each(
        field: str, values: list[Any], **fixed: Any
    ) -> Callable[[type[CallbackData]], list[CallbackData]]:
        return lambda cls: [cls(**{field: v, **fixed}) for v in values]

    def generic(cls: type[CallbackData]) -> list[CallbackData]:
        """For feature buttons: every string field tried with each verb seen in the bot's code,
        every int field with this workspace's ids."""
        verbs = [
            "open",
            "link",
            "send",
            "rename",
            "delete",
            "delete_yes",
            "revoke",
            "revoke_yes",
            "check",
            "pause",
            "resume",
            "remove",
            "remove_yes",
            "now",
            "cancel",
            "approve",
            "reschedule",
            "queue",
            "edit",
            "yes",
            "no",
            "back",
            "refresh",
            "log",
            "nsfw",
        ]
        out = []
        fields = cls.model_fields
        int_value = next(iter(ids.other.values()), 1)
        for verb in verbs:
            values = {}
            for name, info in fields.items():
                if info.annotation in (int, "int"):
                    values[name] = int_value
                elif info.annotation in (bool, "bool"):
                    values[name] = True
                else:
                    values[name] = verb
            try:
                out.append(cls(**values))
            except Exception:  # a field shape we cannot fill generically
                continue
        return out

    return {
        "m": each("to", ["menu", "help", "tz", "queue", "operators", "audit", "bogus"]),
        "j": each(
            "act", ["approve", "reject", "retry", "cancel", "refresh", "details", "bogus"], id=job
        ),
        "jl": each("status", ["active", "failed", "all", "bogus"]),
        "ra": each("step", ["ask", "yes", "no"], n=1),
        "op": lambda cls: [
            cls(act=a, id=ids.operator, role="operator")
            for a in ("role", "remove", "remove_yes", "cancel", "bogus")
        ],
        "au": each("page", [0, 1]),
        "*": generic,
    }


async def snapshot(app: Harness) -> dict[str, set[tuple]]:
    """Every row of every domain table, minus bookkeeping columns."""
    out: dict[str, set[tuple]] = {}
    async with app.app.sessionmaker() as session:
        for name, table in Base.metadata.tables.items():
            if name in SKIP_TABLES:
                continue
            cols = [c for c in table.columns if c.name not in VOLATILE]
            query = select(*cols)
            if name == "jobs":  # system jobs (periodic work) run on their own during the test
                query = query.where(table.c.created_by.is_not(None))
            try:
                rows = (await session.execute(query)).all()
            except Exception:  # table of a feature whose migration is not in this build
                await session.rollback()
                continue
            out[name] = {tuple(repr(v) for v in r) for r in rows}
    return out


async def acted_by(app: Harness, user_id: int) -> list[str]:
    async with app.app.sessionmaker() as session:
        audit = (
            await session.execute(select(AuditEntry.action).where(AuditEntry.actor_id == user_id))
        ).scalars()
        jobs = (await session.execute(select(Job.kind).where(Job.created_by == user_id))).scalars()
        return [*audit, *jobs]


async def reset_flows(app: Harness) -> None:
    async with app.app.sessionmaker() as session:
        await session.execute(delete(FsmRecord))
        await session.commit()


def min_roles() -> dict[str, Role]:
    return {c: r for c, _, r in [*COMMANDS, *EXTRA_COMMANDS]}


async def setup_world(app: Harness) -> Ids:
    await app.say(OWNER, f"/tenants add other {OTHER_OWNER}", "created")
    app.users[OTHER_OWNER] = app.tg.user(OTHER_OWNER, "Otto")
    job = await app.submit_job("test.ok", requires_approval=True)
    async with app.app.sessionmaker() as session:
        from storage.repositories import operators as op_repo

        viewer = await op_repo.by_telegram_id(session, VIEWER)
        return Ids(job=job, operator=viewer.id, other={})


async def test_commands_by_role(app: Harness) -> None:
    await setup_world(app)
    commands, _ = registered(app)
    assert {"start", "jobs", "operators", "audit"} <= commands
    minimum = min_roles()
    checked = 0
    for command in sorted(commands):
        for role, user_id in ROLES.items():
            if role == "stranger":
                continue
            await reset_flows(app)
            reply = await app.say(user_id, f"/{command}", timeout=10)
            text = reply.get("text") or reply.get("caption") or ""
            assert CRASH not in text, (command, role, text)
            need = minimum.get(command)
            rank = RANK[Role.owner if role == "other" else Role(role)]
            if need is not None and rank < RANK[need]:
                assert "cannot" in text or "Only owners" in text, (command, role, text)
            checked += 1
    # strangers: everything but /start is refused, and the refusals are rate-limited
    since = app.tg.mark()
    for command in sorted(commands - {"start"}):
        await app.tg.send_text(app.user(STRANGER), f"/{command}")
        checked += 1
    await app.tg.wait_until(
        lambda: any(m["chat"]["id"] == STRANGER for m in app.tg.messages(STRANGER))
    )
    for m in app.tg.messages(STRANGER):
        assert "private operations bot" in m["text"]
    print(f"command authorisation cases checked: {checked}, since={since}")


async def test_buttons_by_role_and_forged_ids_change_nothing(app: Harness) -> None:
    ids = await setup_world(app)
    _, callbacks = registered(app)
    table = samples(ids)
    missing = [
        cls.__prefix__ for cls in callbacks if cls.__prefix__ not in table and "*" not in table
    ]
    assert not missing, f"add authorisation samples for callback prefixes {missing}"
    anchor = {uid: await app.say(uid, "/start") for uid in ROLES.values()}
    checked = 0
    presses = []
    for cls in sorted(callbacks, key=lambda c: c.__prefix__):
        built = table.get(cls.__prefix__, table["*"])(cls)
        assert built, f"no sample presses for {cls.__name__}"
        presses += [(cls, data) for data in built]
    # Every refused role first: an allowed press below (an operator's Approve) sets work
    # running in the background, which must not land inside a refused press's check.
    for cls, data in presses:
        for role in ("stranger", "viewer", "other"):
            user_id = ROLES[role]
            before = await snapshot(app)
            await reset_flows(app)
            answer = await app.forge(user_id, anchor[user_id], data.pack())
            assert CRASH not in (answer.get("text") or ""), (cls.__name__, data, role, answer)
            if role == "stranger":
                assert "not allowed" in answer["text"], (data, answer)
            after = await snapshot(app)
            changed = {t for t in before if before[t] - after.get(t, set())}
            # viewers and other workspaces may open things, never change this workspace's
            assert not changed, (cls.__name__, data.pack(), role, changed)
            assert not [
                a for a in await acted_by(app, user_id) if not a.startswith(("tenant.",))
            ], (cls.__name__, data.pack(), role)
            checked += 1
    for cls, data in presses:
        for role in ("operator", "owner"):
            await reset_flows(app)
            answer = await app.forge(ROLES[role], anchor[ROLES[role]], data.pack())
            assert CRASH not in (answer.get("text") or ""), (cls.__name__, data, role, answer)
            checked += 1
    print(f"button authorisation cases checked: {checked}")
