"""PostgreSQL connections killed under a running Opsdeck (issue 6 item 3, PostgreSQL tier).

`pg_terminate_backend` ends the bot's server connections — idle ones in the pool, and ones
caught in the middle of a statement. To catch a statement in flight without sleeps, the test
takes a lock the statement needs, waits until pg_stat_activity shows the bot's backend waiting
on it, terminates that backend, and lets the lock go.

Shown: the job engine loses no job and runs none twice (a killed outcome write is retried, not
left for the lease to expire and the job to run again); updates after the pool was killed are
answered normally (pre-ping); an update whose statement was killed is retried and answered.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bot.app import Opsdeck
from bot.outbox import wait_idle
from core.clock import OffsetClock
from core.jobs.registry import JobRegistry
from core.settings import DatabaseSettings
from storage.models import Job, Role
from storage.outbox_models import OutboxMessage
from tests.conftest import create_postgres_database, drop_postgres_database, needs_postgres
from tests.e2e.conftest import OPERATOR, OWNER, VIEWER, Harness, make_settings
from tests.e2e.conftest import test_kinds as base_kinds
from tests.faults.test_faults import FAULTS

pytestmark = [needs_postgres, pytest.mark.postgres, pytest.mark.slow]

CRASH = "Something went wrong on our side"
RUNS: Counter[int] = Counter()
GATE: asyncio.Event | None = None  # held jobs wait on it


def kinds(registry: JobRegistry) -> None:
    base_kinds(registry)

    async def count(ctx):
        RUNS[ctx.payload["n"]] += 1
        await asyncio.sleep(0.1)
        return {"n": ctx.payload["n"]}

    async def held(ctx):
        RUNS[ctx.payload["n"]] += 1
        assert GATE is not None
        await GATE.wait()
        return {"n": ctx.payload["n"]}

    registry.register("pg.count", count)
    registry.register("pg.held", held)


@pytest.fixture
async def pg(tmp_path, tg) -> AsyncIterator[tuple[Harness, AsyncEngine]]:
    url = await create_postgres_database()
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    settings = make_settings(tmp_path, tg, lease_seconds=3, backoff_base_seconds=1)
    settings = settings.model_copy(
        update={"database": DatabaseSettings(_env_file=None, url=url)}  # type: ignore[call-arg]
    )
    clock = OffsetClock()
    app = Opsdeck(settings, clock=clock, registrars=(kinds,))
    try:
        await app.start()
        harness = Harness(app, tg, clock)
        for uid, name in ((OWNER, "Olga"), (OPERATOR, "Oscar"), (VIEWER, "Vera")):
            harness.users[uid] = tg.user(uid, name)
        await harness.add_operator(OPERATOR, Role.operator)
        await harness.add_operator(VIEWER, Role.viewer)
        yield harness, admin
    finally:
        await app.stop()
        await admin.dispose()
        await drop_postgres_database(url)


BOT_BACKENDS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
)


async def terminate_all(admin: AsyncEngine) -> int:
    """End every server connection of the bot (pooled idle ones and busy ones)."""
    async with admin.connect() as conn:
        pids = (await conn.execute(text(BOT_BACKENDS))).scalars().all()
        for pid in pids:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    return len(pids)


async def terminate_when_blocked(admin: AsyncEngine, lock_sql: str, trigger) -> int:
    """Take a lock (`lock_sql`, in an open transaction), run `trigger()`, wait until a bot
    backend waits on that lock — a statement in flight — terminate it, then release."""
    async with admin.connect() as locker:
        await locker.execute(text("BEGIN"))
        await locker.execute(text(lock_sql))
        await trigger()
        async with admin.connect() as conn:
            for _ in range(300):
                waiting = (
                    (await conn.execute(text(BOT_BACKENDS + " AND wait_event_type = 'Lock'")))
                    .scalars()
                    .all()
                )
                if waiting:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("no statement of the bot ever waited on the lock")
            for pid in waiting:
                await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await locker.execute(text("COMMIT"))
    return len(waiting)


async def jobs_by_status(app: Harness, kind: str) -> Counter[str]:
    async with app.app.sessionmaker() as session:
        rows = await session.execute(
            select(Job.status, func.count()).where(Job.kind == kind).group_by(Job.status)
        )
        return Counter({status: n for status, n in rows.all()})


async def test_connections_killed_while_jobs_run(pg) -> None:
    """40 jobs run while every connection of the bot is terminated five times: each job runs
    exactly once and succeeds; nothing is lost."""
    app, admin = pg
    RUNS.clear()
    ids = [await app.submit_job("pg.count", {"n": n}) for n in range(40)]
    killed = 0
    for _ in range(5):
        await asyncio.sleep(0.15)
        killed += await terminate_all(admin)
        FAULTS["postgres: every bot connection terminated while jobs run"] += 1
    assert killed > 0
    for job_id in ids:
        await app.wait_job(job_id, "succeeded", timeout=60)
    await asyncio.sleep(4)  # past a lease: a job whose outcome was lost would run again now
    assert Counter({n: 1 for n in range(40)}) == RUNS, RUNS
    assert await jobs_by_status(app, "pg.count") == Counter({"succeeded": 40})


async def test_outcome_write_killed_mid_statement_is_retried_not_rerun(pg) -> None:
    """The jobs' outcome UPDATE is caught in flight (it waits on a lock) and its connection
    terminated: the outcomes are written on a fresh connection; no job runs a second time."""
    global GATE
    app, admin = pg
    RUNS.clear()
    GATE = asyncio.Event()
    ids = [await app.submit_job("pg.held", {"n": n}) for n in range(4)]
    await app.tg.wait_until(lambda: len(RUNS) == 4, timeout=20, what="4 jobs running")

    async def finish_jobs() -> None:
        assert GATE is not None
        GATE.set()

    killed = await terminate_when_blocked(admin, "LOCK TABLE jobs IN EXCLUSIVE MODE", finish_jobs)
    FAULTS["postgres: outcome write terminated mid-statement"] += killed
    for job_id in ids:
        await app.wait_job(job_id, "succeeded", timeout=30)
    await asyncio.sleep(4)  # past the 3 s lease
    assert Counter({n: 1 for n in range(4)}) == RUNS, RUNS
    assert await jobs_by_status(app, "pg.held") == Counter({"succeeded": 4})


async def test_updates_after_the_pool_was_killed_are_answered(pg) -> None:
    app, admin = pg
    await app.say(OPERATOR, "/jobs")  # the pool holds live connections now
    assert await terminate_all(admin) > 0
    FAULTS["postgres: pooled connections terminated between updates"] += 1
    replies = await asyncio.gather(
        app.say(OPERATOR, "/jobs"), app.say(OWNER, "/queue"), app.say(VIEWER, "/help")
    )
    for reply in replies:
        assert CRASH not in (reply.get("text") or ""), reply


async def test_update_whose_statement_was_killed_is_answered(pg, caplog) -> None:
    """An operator's /tz writes their operator row; the write is caught in flight and its
    connection terminated: the operator still gets the normal answer, and it was stored."""
    app, admin = pg
    await app.say(OPERATOR, "/jobs")
    since = app.tg.mark()

    async def send() -> None:
        await app.tg.send_text(app.user(OPERATOR), "/tz Europe/Berlin")

    killed = await terminate_when_blocked(admin, "LOCK TABLE operators IN EXCLUSIVE MODE", send)
    FAULTS["postgres: update's statement terminated mid-statement"] += killed
    reply = await app.tg.wait_for_message(OPERATOR, since=since, timeout=20)
    assert CRASH not in reply["text"], reply["text"]
    assert "Europe/Berlin" in reply["text"], reply["text"]
    actor = await app.actor(OPERATOR)
    assert actor.timezone == "Europe/Berlin"
    again = await app.say(OPERATOR, "/jobs")
    assert CRASH not in (again.get("text") or "")
    retried = [r for r in caplog.records if "handling it again" in r.getMessage()]
    assert len(retried) == 1, [r.getMessage() for r in caplog.records]
    assert len([m for m in app.tg.messages(OPERATOR) if "Europe/Berlin" in m["text"]]) == 1


async def test_outbox_mark_sent_killed_mid_statement_is_not_resent(pg) -> None:
    """Telegram took a queued message; the UPDATE recording it is caught in flight and its
    connection terminated: the outcome is written on a fresh connection, so the row is not
    left `sending` for another sender to resend once its lease runs out."""
    from tests.faults.test_process_kill import HeldSend

    app, admin = pg
    sender = app.app.sender
    sender.s = sender.s.model_copy(update={"lease_seconds": 4, "request_timeout_seconds": 2})
    held = HeldSend(app.tg, "sendMessage", handled=True)
    await app.app.outbox.send_message(OPERATOR, "Outbox under fire", parse_mode=None)
    await asyncio.wait_for(held.arrived.wait(), 20)

    async def answer() -> None:
        held.release()

    killed = await terminate_when_blocked(admin, "LOCK TABLE outbox IN EXCLUSIVE MODE", answer)
    FAULTS["postgres: outbox mark-sent terminated mid-statement"] += killed
    await wait_idle(app.app.sessionmaker, within=20)
    await asyncio.sleep(5)  # past the 4 s lease: a row left `sending` would be resent now
    got = [m for m in app.tg.messages(OPERATOR) if m.get("text") == "Outbox under fire"]
    assert len(got) == 1, got
    async with app.app.sessionmaker() as session:
        rows = (await session.execute(select(OutboxMessage.status))).scalars().all()
    assert rows == ["sent"], rows


def teardown_module() -> None:
    print("\npostgres faults injected:")
    for fault, n in FAULTS.items():
        if fault.startswith("postgres"):
            print(f"  {fault}: {n}")
