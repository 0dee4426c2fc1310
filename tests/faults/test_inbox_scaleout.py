"""The inbox across processes (issue 11 item 2): two `python -m bot run` processes on one
PostgreSQL database behind a round-robin balancer; 500 updates — commands from five operators,
button presses, claims from 150 people on a 100-use link — each POSTed twice the way Telegram
resends, and one process SIGKILLed half-way while it handles updates.

Checked: every update is handled (its inbox row is), every operator message and button press
is answered, each update answered once unless it was in handling on the killed process (then
at most twice: handling is at least once), every claimer's update queued exactly one answer
(the file for the first 100, a refusal for the rest) and no claimer receives the file twice,
and every use spent is one queued delivery with its access-log row (no use spent without a
delivery; sending it is the outbox's business). The dead process's updates are taken over by
the live one after their lease (production INBOX_* defaults).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from storage.db import create_engine
from tests.conftest import needs_postgres
from tests.e2e.conftest import OPERATOR, OWNER, Harness, free_port
from tests.e2e.test_vault_in_chat import make_link, upload
from tests.fakes.telegram import FakeTelegram
from tests.faults.test_process_kill import BotProcess, chat
from tests.integration.test_scaleout import SECRET, Balancer, bot_env, pg_url

__all__ = ["pg_url"]

pytestmark = [needs_postgres, pytest.mark.postgres, pytest.mark.slow]

OPERATORS = [OWNER, OPERATOR, 1003, 1004, 1005]
CLAIMERS = [3_000_001 + n for n in range(150)]
USES = 100
COMMANDS_PER_OPERATOR = 50  # 30 unique /tz answers + 20 /help
PRESSES_PER_OPERATOR = 20
HELP = "What you can do"
SETTLE = 120.0  # the dead process's leases (15 s) and outbox rows run out well within


Cluster = tuple[FakeTelegram, Balancer, list[BotProcess]]


@pytest.fixture
async def cluster(pg_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with FakeTelegram() as tg:
        balancer = Balancer()
        await balancer.start()
        procs: list[BotProcess] = []
        for name in ("a", "b"):
            env = bot_env(pg_url, tg, balancer, tmp_path) | {
                "HTTP_PORT": str(free_port()),
                "OUTBOX_LEASE_SECONDS": "6",  # the dead one's sends are taken over sooner
                "BACKUP_ENABLED": "false",
            }
            (tmp_path / name).mkdir()
            procs.append(BotProcess(tmp_path / name, env))
        balancer.backends = [p.port for p in procs]
        try:
            for p in procs:  # one after the other: the first migrates and bootstraps
                await p.start()
            yield tg, balancer, procs
        except BaseException:
            for p in procs:
                print(f"--- {p.workdir.name} ---\n{p.output()}")
            raise
        finally:
            for p in procs:
                await p.stop()
            await balancer.stop()
        assert not tg.internal_errors, tg.internal_errors


async def setup(h: Harness) -> tuple[str, dict[int, dict]]:
    """Operators added in chat, a document in the vault with a 100-use link, a /status card
    (with its Refresh button) in each operator's chat."""
    for uid in OPERATORS[1:]:
        h.users[uid] = h.tg.user(uid, f"Op{uid}")
        await h.say(OWNER, f"/operators add {uid} operator", "Added", timeout=30)
    card = await upload(h, OPERATOR, "document", b"%PDF-1.4 inbox scale-out", file_name="s.pdf")
    code, _, _ = await make_link(h, card, uses=str(USES))
    cards = {}
    for uid in OPERATORS:
        cards[uid] = await h.say(uid, "/status", "Opsdeck status", timeout=30)
    return code, cards


class Recorder:
    """Stands in for the fake's delivery: the updates the fake builds (texts, presses) are
    kept, so the test can POST each of them twice through the balancer itself."""

    def __init__(self, tg: FakeTelegram) -> None:
        self.tg, self.updates = tg, []  # type: list[dict[str, Any]]
        tg.send_update = self.capture  # type: ignore[method-assign]

    async def capture(self, update: dict[str, Any]) -> dict[str, Any]:
        update = dict(update, update_id=self.tg._next_update_id)
        self.tg._next_update_id += 1
        self.updates.append(update)
        return update


async def post_until_taken(
    http: aiohttp.ClientSession, url: str, update: dict, statuses: Counter[int]
) -> None:
    """As Telegram does: POST until a 2xx (a 503, a refused or cut connection: again)."""
    deadline = time.monotonic() + SETTLE
    while True:
        try:
            async with http.post(
                url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
            ) as resp:
                statuses[resp.status] += 1
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            statuses[0] += 1
        assert time.monotonic() < deadline, f"update {update['update_id']} never taken"
        await asyncio.sleep(0.2)


async def test_two_processes_one_killed_every_update_handled_claims_once(cluster) -> None:
    tg, balancer, (a, b) = cluster
    h = chat(tg)
    code, cards = await setup(h)
    seen = {uid: max(m["message_id"] for m in tg.messages(uid)) for uid in OPERATORS}

    def new(chat_id: int) -> list[dict]:
        return [m for m in in_chat(tg, chat_id) if m["message_id"] > seen.get(chat_id, 0)]

    def all_new() -> list[dict]:
        return [m for chat_id in (*OPERATORS, *CLAIMERS) for m in new(chat_id)]

    recorder = Recorder(tg)
    tz_names: dict[int, str] = {}  # update_id -> the unique answer it must get
    helps: Counter[int] = Counter()
    presses: dict[int, str] = {}  # update_id -> callback query id
    claims: dict[int, int] = {}  # update_id -> claimer
    for uid in OPERATORS:
        for n in range(COMMANDS_PER_OPERATOR):
            if n < 30:
                name = f"Nowhere/U{uid}n{n}"
                update = await tg.send_text(h.user(uid), f"/tz {name}")
                tz_names[update["update_id"]] = f"'{name}'"  # as the answer quotes it
            else:
                await tg.send_text(h.user(uid), "/help")
                helps[uid] += 1
        data = h.button(cards[uid], "Refresh")
        for _ in range(PRESSES_PER_OPERATOR):
            qid = await tg.press(h.user(uid), cards[uid], data)
            presses[recorder.updates[-1]["update_id"]] = qid
    for person in CLAIMERS:
        update = await tg.send_text(tg.user(person, "Claimer"), f"/start {code}")
        claims[update["update_id"]] = person
    updates = recorder.updates
    assert len(updates) == 500

    # each update twice, the copy somewhere later, like Telegram resending after a lost answer
    rng = random.Random(11)
    schedule = list(updates)
    for update in updates:
        schedule.insert(rng.randint(schedule.index(update) + 1, len(schedule)), update)
    url = f"{balancer.url}/telegram/webhook"
    statuses: Counter[int] = Counter()
    taken = 0
    half_taken = asyncio.Event()
    killed_holding = -1
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for update in schedule:
        queue.put_nowait(update)
    engine = create_engine(a.env["DATABASE_URL"])

    async def sender(http: aiohttp.ClientSession) -> None:
        nonlocal taken
        while not queue.empty():
            await post_until_taken(http, url, queue.get_nowait(), statuses)
            taken += 1
            if taken >= len(schedule) // 2:
                half_taken.set()

    async def killer() -> None:
        nonlocal killed_holding
        await half_taken.wait()
        assert a.proc is not None
        pid = a.proc.pid
        await a.kill()
        async with engine.connect() as conn:
            killed_holding = await conn.scalar(
                text("SELECT count(*) FROM inbox WHERE handled_at IS NULL AND lease_owner LIKE :o"),
                {"o": f"%:{pid}:%"},
            )

    try:
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(killer(), *(sender(http) for _ in range(40)))
        print(f"\nPOST answers: {dict(statuses)}; killed process held {killed_holding} updates")
        assert killed_holding > 0, "the kill hit no update in handling: nothing was tested"

        ids = [u["update_id"] for u in updates]

        async def inbox() -> dict[int, tuple[int, bool]]:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text(
                        "SELECT update_id, attempts, handled_at IS NOT NULL FROM inbox "
                        "WHERE update_id >= :first"
                    ),
                    {"first": min(ids)},
                )
                return {r[0]: (r[1], r[2]) for r in rows}

        async def queued_for_claimers() -> dict[int, list[str]]:
            """Each claimer's queued answers: the file (`vault:claim:…`) or a refusal."""
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text(
                        "SELECT chat_id, dedupe_key FROM outbox WHERE dedupe_key LIKE "
                        "'vault:claim:%' OR dedupe_key LIKE 'vault:claim-answer:%'"
                    )
                )
                out: dict[int, list[str]] = {}
                for chat_id, key in rows:
                    out.setdefault(chat_id, []).append(key)
                return out

        async def unanswered() -> dict[str, list[Any]]:
            texts = [m.get("text") or "" for m in all_new()]
            queued = await queued_for_claimers()
            return {
                "tz": [n for n in tz_names.values() if not any(n in t for t in texts)],
                "presses": [u for u, q in presses.items() if tg._callbacks[q]["answer"] is None],
                "claims": [p for p in CLAIMERS if p not in queued],
                "help": [
                    uid
                    for uid in OPERATORS
                    if sum(HELP in (m.get("text") or "") for m in new(uid)) < helps[uid]
                ],
            }

        deadline = time.monotonic() + SETTLE
        while any((missing := await unanswered()).values()):
            if time.monotonic() > deadline:
                async with engine.connect() as conn:
                    outbox = (
                        await conn.execute(text("SELECT status, count(*) FROM outbox GROUP BY 1"))
                    ).all()
                logs = "\n".join(f"--- {p.workdir.name} ---\n{p.output()}" for p in (a, b))
                raise AssertionError(f"not answered: {missing}; outbox {outbox}\n{logs}")
            await asyncio.sleep(2)
        await asyncio.sleep(2)  # a late duplicate would show by now

        rows = await inbox()
        assert set(ids) <= set(rows), "an update was never stored"
        assert all(rows[i][1] for i in ids), "an update was never handled"
        again = {i for i in ids if rows[i][0] > 1}
        print(f"handled again after the kill: {len(again)}")
        assert again, "the dead process's updates were not taken over"

        # once each (resends ignored), at most twice for those handled again after the kill
        texts: Counter[int] = Counter()
        for m in all_new():
            for update_id, name in tz_names.items():
                if name in (m.get("text") or ""):
                    texts[update_id] += 1
        for update_id in tz_names:
            assert texts[update_id] == 1 or (update_id in again and texts[update_id] == 2), (
                update_id,
                texts[update_id],
            )

        # claims: each claimer's update queued exactly one answer — the file for the first
        # USES of them, a refusal for the rest — and every use spent is one queued delivery
        # in the same transaction as its access-log row (sending it is the outbox's business)
        queued = await queued_for_claimers()
        assert all(len(keys) == 1 for keys in queued.values()), queued
        deliveries = [p for p in CLAIMERS if queued[p][0].startswith("vault:claim:")]
        async with engine.connect() as conn:
            used = await conn.scalar(text("SELECT used_count FROM vault_links"))
            outcomes = dict(
                (
                    await conn.execute(
                        text("SELECT outcome, count(*) FROM vault_claims GROUP BY 1")
                    )
                ).all()
            )
        assert used == USES == outcomes["delivered"] == len(deliveries), (outcomes, used)
        # what the outbox has delivered so far: never a second file to anyone
        files = Counter(m["chat"]["id"] for m in all_new() if "document" in m)
        assert not files or max(files.values()) == 1, files.most_common(3)
        assert set(files) <= set(deliveries)
        print(
            f"claims: {len(deliveries)} files queued, {len(files)} delivered by the outbox so far"
        )
    finally:
        await engine.dispose()


def in_chat(tg: FakeTelegram, chat_id: int) -> list[dict]:
    """The bot's messages in a chat, read in place: `tg.messages` deep-copies each, and this
    test looks often — copying them all starved the fake (it runs on the test's event loop)."""
    return list(tg._bot_messages.get(chat_id, {}).values())
