"""End-to-end harness: the real Opsdeck app over HTTP against the fake Telegram Bot API."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.app import Opsdeck
from core.actor import Actor
from core.clock import OffsetClock
from core.jobs.registry import JobRegistry
from core.services.operators import to_actor
from core.settings import (
    ApiSettings,
    DatabaseSettings,
    HttpSettings,
    JobSettings,
    OpsdeckSettings,
    PublicSettings,
    RedditSettings,
    Settings,
    TelegramSettings,
    VaultSettings,
)
from storage.models import Operator, Role
from storage.repositories import operators as op_repo
from tests.fakes.telegram import FakeTelegram

OWNER, OPERATOR, VIEWER, STRANGER = 1001, 1002, 1003, 2001
# How long a test waits for the bot; generous so a loaded CI machine fails nothing that works
# (a passing test never waits this long).
WAIT = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_settings(
    tmp_path,
    fake: FakeTelegram,
    *,
    webhook: bool = False,
    reddit: RedditSettings | None = None,
    api: ApiSettings | None = None,
    database_url: str | None = None,
    **jobs: Any,
) -> Settings:
    port = free_port()
    env = {"_env_file": None}
    return Settings(
        telegram=TelegramSettings(
            **env,
            bot_token=fake.token,
            api_url=fake.base_url,
            api_is_local=fake.local_mode,
            webhook_url=f"http://127.0.0.1:{port}/telegram/webhook" if webhook else None,
            webhook_secret="e2e-secret-token" if webhook else None,
        ),
        opsdeck=OpsdeckSettings(
            **env, owner_ids=[OWNER], data_dir=tmp_path / "data", secret_key="k" * 32
        ),
        database=DatabaseSettings(
            **env, url=database_url or f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}"
        ),
        http=HttpSettings(**env, host="127.0.0.1", port=port),
        public=PublicSettings(**env, base_url=f"http://127.0.0.1:{port}"),
        vault=VaultSettings(**env, storage_url=str(tmp_path / "vault")),
        reddit=reddit or RedditSettings(**env),
        api=api or ApiSettings(**env),
        jobs=JobSettings(
            **env,
            **{
                "poll_seconds": 0.5,
                "backoff_base_seconds": 60,
                "lease_seconds": 10,
                "shutdown_timeout_seconds": 3,
                **jobs,
            },
        ),
    )


@dataclass
class Harness:
    app: Opsdeck
    tg: FakeTelegram
    clock: OffsetClock
    users: dict[int, dict] = field(default_factory=dict)

    def user(self, user_id: int) -> dict:
        return self.users[user_id]

    async def add_operator(self, user_id: int, role: Role, tenant_id: int | None = None) -> None:
        async with self.app.sessionmaker() as session:
            owner = await op_repo.by_telegram_id(session, OWNER)
            session.add(
                Operator(
                    tenant_id=tenant_id or owner.tenant_id,
                    telegram_user_id=user_id,
                    role=role,
                    timezone="UTC",
                    notify=True,
                    created_at=self.clock.now(),
                )
            )
            await session.commit()

    async def actor(self, user_id: int) -> Actor:
        async with self.app.sessionmaker() as session:
            return to_actor(await op_repo.by_telegram_id(session, user_id))

    async def submit_job(self, kind: str, payload: dict | None = None, **kw: Any) -> int:
        actor = await self.actor(OWNER)
        return await self.app.services.jobs.submit(
            actor.tenant_id, kind, payload or {}, actor=actor, **kw
        )

    async def job(self, job_id: int):
        from storage.repositories import jobs as job_repo

        async with self.app.sessionmaker() as session:
            return await job_repo.get(session, job_id)

    async def wait_job(self, job_id: int, *statuses: str, timeout: float = 10.0):
        """Wait until the job is in one of `statuses`; return it."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            job = await self.job(job_id)
            if job.status in statuses:
                return job
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"job {job_id} is {job.status}, not {statuses}")
            await asyncio.sleep(0.05)

    async def say(
        self, user_id: int, text: str, contains: str | None = None, timeout: float = WAIT
    ) -> dict:
        """Send text as a user and return the bot's next message in that chat (containing …)."""
        since = self.tg.mark()
        await self.tg.send_text(self.users[user_id], text)
        return await self.tg.wait_for_message(user_id, contains, timeout=timeout, since=since)

    async def press(self, user_id: int, message: dict, data: str) -> dict:
        """Press a button (or forged data) and return the answerCallbackQuery params."""
        qid = await self.tg.press(self.users[user_id], message, data)
        return await self.tg.wait_answer(qid, timeout=WAIT)

    async def forge(self, user_id: int, message: dict, data: str) -> dict:
        """Send callback data that is not on the message, as a modified client could."""
        qid = await self.tg.press(self.users[user_id], message, data, forged=True)
        return await self.tg.wait_answer(qid, timeout=WAIT)

    def button(self, message: dict, text_part: str) -> str:
        for text, data in self.tg.buttons(message):
            if text_part in text:
                return data
        raise AssertionError(f"no button with {text_part!r} in {self.tg.buttons(message)}")

    async def becomes(
        self, message: dict, predicate: Callable[[dict], bool], timeout: float = WAIT
    ) -> dict:
        """Wait until the bot's message (edited in place) satisfies `predicate`; return it."""
        chat_id, message_id = message["chat"]["id"], message["message_id"]
        await self.tg.wait_until(
            lambda: predicate(self.current(chat_id, message_id)),
            timeout=timeout,
            what=f"message {message_id} to change",
        )
        return self.current(chat_id, message_id)

    def buttons_text(self, message: dict) -> str:
        return " | ".join(t for t, _ in self.tg.buttons(message))

    def current(self, chat_id: int, message_id: int) -> dict:
        for m in self.tg.messages(chat_id):
            if m["message_id"] == message_id:
                return m
        raise AssertionError(f"message {message_id} not in chat {chat_id}")


def test_kinds(registry: JobRegistry) -> None:
    """Job kinds the e2e tests drive: one that succeeds, one that always fails."""

    async def ok(ctx):
        return {"done": True}

    async def boom(ctx):
        raise RuntimeError("the widget exploded " + "x" * 300)

    registry.register("test.ok", ok)
    registry.register("test.boom", boom)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake
    assert not fake.internal_errors, fake.internal_errors


@pytest.fixture
async def start_app(tmp_path, tg) -> AsyncIterator[Callable[..., Any]]:
    started: list[Opsdeck] = []

    async def start(
        webhook: bool = False,
        registrars=(test_kinds,),
        reddit: RedditSettings | None = None,
        api: ApiSettings | None = None,
        database_url: str | None = None,
        **jobs: Any,
    ) -> Harness:
        clock = OffsetClock()
        app = Opsdeck(
            make_settings(
                tmp_path,
                tg,
                webhook=webhook,
                reddit=reddit,
                api=api,
                database_url=database_url,
                **jobs,
            ),
            clock=clock,
            registrars=registrars,
        )
        await app.start()
        started.append(app)
        harness = Harness(app, tg, clock)
        for uid, name in (
            (OWNER, "Olga"),
            (OPERATOR, "Oscar"),
            (VIEWER, "Vera"),
            (STRANGER, "Stan"),
        ):
            harness.users[uid] = tg.user(uid, name)
        await harness.add_operator(OPERATOR, Role.operator)
        await harness.add_operator(VIEWER, Role.viewer)
        return harness

    yield start
    for app in started:
        await app.stop()


@pytest.fixture
async def app(start_app) -> Harness:
    return await start_app()
