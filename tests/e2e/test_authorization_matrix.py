"""Authorisation matrix, generated from the routers the app actually registers.

Every command and every kind of callback button is sent by a stranger, a viewer, an owner of
another workspace, an operator and an owner. Each must get an answer that is not a crash;
roles below a command's minimum are refused; and nobody but an operator or owner of the
workspace changes anything in it — forged callback data naming this workspace's ids included.
A callback class without samples below fails the test, so new buttons join the matrix.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiogram import Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData, CallbackQueryFilter
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import delete, select

from bot.callbacks import STALE_BUTTON
from bot.commands import COMMANDS, EXTRA_COMMANDS, RANK
from storage.models import AuditEntry, Base, FsmRecord, Job, Role
from tests.e2e.conftest import OPERATOR, OWNER, STRANGER, VIEWER, Harness
from tests.e2e.test_http_doors import PATH_TRICKS, raw_get
from tests.unit.test_callback_data import forged

OTHER_OWNER = 4001  # owns another workspace
METRICS_TOKEN = "matrix-metrics-token-0123456789"
ROLES = {
    "stranger": STRANGER,
    "viewer": VIEWER,
    "other": OTHER_OWNER,
    "operator": OPERATOR,
    "owner": OWNER,
}
CRASH = "Something went wrong on our side"
# Deployment-wide commands (issue 12): what another workspace's owner gets instead.
DEPLOYMENT_ONLY = {
    "settings": "only to the deployment's owners",
    "backup": "Only the deployment's owners",
    "tenants": "Only owners named in OPSDECK_OWNER_IDS",
    "status": "its owners (OPSDECK_OWNER_IDS) see them",
}
DEPLOYMENT_LEAKS = (
    "OPSDECK_OWNER_IDS:",
    "Effective settings",
    "Kept files",
    "Last backup",
    "Telegram: webhook",
    "Telegram: long polling",
    "restore",
)
# Columns that change without anyone acting (bookkeeping), left out of the "nothing changed" check.
VOLATILE = {"updated_at", "display_name", "last_synced_at", "last_check_at"}
SKIP_TABLES = {
    *("fsm_state", "audit_log", "vault_claims", "outbox", "alembic_version", "backups"),
    # rate-limit bookkeeping: a refused stranger's attempt is counted there on purpose
    *("rate_counters", "reddit_rate_budgets", "reddit_rate_slots"),
    "inbox",  # every update is stored there before it is handled, refused ones too
    # send pacing bookkeeping: a refusal is a message too, and its send moves the pace
    *("outbox_budget", "outbox_chat_pace"),
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
        """For feature buttons: every verb each Literal field allows (the others at a
        valid value), every int field at this workspace's ids."""
        int_value = next(iter(ids.other.values()), 1)
        base = {name: base_value(cls, name, info, int_value) for name, info in fields(cls)}
        if cls.__prefix__ == "rc":  # the account step carries an account id
            base["val"] = str(int_value)
        out = []
        for name, info in fields(cls):
            if typing.get_origin(info.annotation) is typing.Literal:
                for verb in typing.get_args(info.annotation):
                    try:
                        out.append(cls(**{**base, name: verb}))
                    except ValueError:  # a combination the class refuses (rc: acct + word)
                        continue
        return out or [cls(**base)]

    return {
        "m": each("to", ["menu", "help", "tz", "queue", "operators", "audit"]),
        "j": each("act", ["approve", "reject", "retry", "cancel", "refresh", "details"], id=job),
        "jl": each("status", ["active", "failed", "all"]),
        "ra": each("step", ["ask", "yes", "no"], n=1),
        "op": lambda cls: [
            cls(act=a, id=ids.operator, role="operator")
            for a in ("role", "remove", "remove_yes", "cancel")
        ],
        "au": each("page", [0, 1]),
        "*": generic,
    }


def fields(cls: type[CallbackData]) -> list[tuple[str, Any]]:
    return list(cls.model_fields.items())


def base_value(cls: type[CallbackData], name: str, info: Any, int_value: int) -> Any:
    """A value the field accepts: a Literal's first word, an id, a string its pattern takes."""
    if typing.get_origin(info.annotation) is typing.Literal:
        words = [a for a in typing.get_args(info.annotation) if a != ""]
        return words[0] if words else ""
    adapter = TypeAdapter(typing.Annotated[info.annotation, *info.metadata])
    candidates = (int_value, 1, 0) if info.annotation is int else ("1", "abc", "hot", "")
    for candidate in candidates:
        try:
            return adapter.validate_python(candidate)
        except ValidationError:
            continue
    raise AssertionError(f"no sample value for {cls.__name__}.{name}")


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


async def jobs_of_kind(app: Harness, kind: str) -> int:
    async with app.app.sessionmaker() as session:
        return len((await session.execute(select(Job.id).where(Job.kind == kind))).all())


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
            if command in DEPLOYMENT_ONLY and user_id != OWNER:
                # another workspace's owner (and anyone below an owner) sees no deployment
                assert DEPLOYMENT_ONLY[command] in text or "cannot" in text, (command, role)
                assert not any(leak in text for leak in DEPLOYMENT_LEAKS), (command, role, text)
            checked += 1
    # the deployment-wide commands with arguments, by another workspace's owner
    for command, refusal in (
        ("/backup now", "Only the deployment's owners"),
        (f"/tenants add third {OTHER_OWNER + 1}", "Only owners named in OPSDECK_OWNER_IDS"),
    ):
        text = (await app.say(OTHER_OWNER, command, timeout=10))["text"]
        assert refusal in text, (command, text)
        checked += 1
    assert await jobs_of_kind(app, "maintenance.backup") == 0
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


async def test_forged_buttons_are_out_of_date_and_log_no_error(app: Harness, caplog) -> None:
    """Numbers past BIGINT, negative ids, unknown verbs, wrong prefixes, extra parts: for every
    registered callback class, pressed by the owner and a viewer."""
    _, callbacks = registered(app)
    every = sorted(callbacks, key=lambda c: c.__prefix__)
    anchor = {uid: await app.say(uid, "/start") for uid in (OWNER, VIEWER)}
    caplog.set_level(logging.INFO)
    pressed = 0
    for cls in every:
        cases = [data for data in forged(cls) if not any(accepts(other, data) for other in every)]
        assert cases, cls.__name__
        for data in cases:
            for user_id in (OWNER, VIEWER):
                answer = await app.forge(user_id, anchor[user_id], data)
                assert answer.get("text") == STALE_BUTTON, (cls.__name__, data, answer)
                pressed += 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage()[:200] for r in errors]
    print(f"forged presses answered as out of date: {pressed}")


def accepts(cls: type[CallbackData], data: str) -> bool:
    try:
        cls.unpack(data)
    except (TypeError, ValueError):
        return False
    return True


async def test_the_metrics_door(start_app, monkeypatch) -> None:
    """Strangers on the public port never reach metrics, under any spelling; the metrics
    listener wants the bearer token when one is set."""
    monkeypatch.setenv("METRICS_TOKEN", METRICS_TOKEN)
    app = await start_app()
    public = app.app.settings.http.port
    for target in PATH_TRICKS:
        for headers in ({}, {"Authorization": f"Bearer {METRICS_TOKEN}"}):
            status, _, body = await raw_get(public, target, headers)
            assert status in (400, 404) and b"opsdeck_" not in body, (target, status)
    port = app.app.metrics_port
    status, _, body = await raw_get(port, "/metrics")
    assert status == 401 and b"opsdeck_" not in body
    status, _, body = await raw_get(port, "/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert status == 200 and b"opsdeck_jobs" in body
