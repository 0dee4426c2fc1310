"""Vault files by reference through the outbox: the Sender uploads an item's bytes from the
blob store when Telegram does not hold the file yet, against the fake Telegram server, on
SQLite and PostgreSQL.

Items are ingested the way a restore or an ingest without a Telegram file would leave them:
bytes in a real local blob store, no file_id. The source is the app's `VaultUploadSource`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.outbox import FailCause, Outbox, OutboxSettings, Sender, wait_idle
from bot.vault_delivery import (
    DELIVERED_HOOK,
    FAILED_TEXT,
    VAULT_SOURCE,
    VaultUploadSource,
    deliver,
    delivery_failed_hook,
)
from core.actor import Actor
from core.clock import OffsetClock
from core.services.operators import OperatorService, bootstrap_owners
from core.vault import IngestSource, VaultConfig, VaultService
from storage.blobs import BlobReader, BlobStore, LocalBlobStore
from storage.blobs.base import StoredBlob
from storage.outbox_models import OutboxMessage, OutboxStatus
from storage.uow import UnitOfWork, over_session
from storage.vault_models import VaultItem, VaultLink
from tests.fakes.telegram import FakeTelegram

OWNER = 1001
FAST = dict(poll_seconds=0.2, backoff_base_seconds=0.2, shutdown_timeout_seconds=3)
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
KINDS: dict[str, tuple[str, bytes]] = {
    "photo": ("sendPhoto", PNG),
    "video": ("sendVideo", b"\x00\x00\x00\x18ftypmp42" + b"v" * 3000),
    "audio": ("sendAudio", b"ID3\x03\x00" + b"a" * 3000),
    "document": ("sendDocument", b"%PDF-1.4 " + b"d" * 3000),
    "animation": ("sendAnimation", b"\x00\x00\x00\x18ftypmp42" + b"g" * 3001),
    "voice": ("sendVoice", b"OggS\x00" + b"o" * 3000),
}


class FaultyBlobs(BlobStore):
    """A real local store whose reads can be made to break halfway or to stall (the bytes of
    an upload failing or arriving slowly), a given number of times."""

    def __init__(self, inner: LocalBlobStore) -> None:
        self.inner = inner
        self.break_reads = 0
        self.stall_reads = 0
        self.stall_seconds = 0.0

    async def put_stream(self, chunks, **kw) -> StoredBlob:
        return await self.inner.put_stream(chunks, **kw)

    async def size(self, key: str) -> int:
        return await self.inner.size(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def sweep_incomplete(self, older_than: float) -> int:
        return await self.inner.sweep_incomplete(older_than)

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def open_range(self, key, start=0, end=None, *, chunk_size=65536) -> BlobReader:
        reader = await self.inner.open_range(key, start, end, chunk_size=1024)
        mode = None
        if self.break_reads:
            self.break_reads -= 1
            mode = "break"
        elif self.stall_reads:
            self.stall_reads -= 1
            mode = "stall"
        if mode is None:
            return reader

        async def chunks() -> AsyncIterator[bytes]:
            async with reader:
                for n in itertools.count():
                    try:
                        chunk = await anext(reader)
                    except StopAsyncIteration:
                        return
                    if n == 1 and mode == "break":
                        raise OSError("I/O error reading the blob")
                    if n == 1 and mode == "stall":
                        await asyncio.sleep(self.stall_seconds)
                    yield chunk

        async def close() -> None:
            await reader.aclose()

        return BlobReader(
            key=key,
            start=reader.start,
            end=reader.end,
            total_size=reader.total_size,
            chunks=chunks(),
            close=close,
        )


@dataclass
class World:
    sessionmaker: async_sessionmaker[AsyncSession]
    uow: UnitOfWork
    clock: OffsetClock
    blobs: FaultyBlobs
    actor: Actor
    tg: FakeTelegram
    outbox: Outbox
    bots: list[Bot]

    def sender(self, **settings: Any) -> Sender:
        bot = Bot(
            self.tg.token,
            session=AiohttpSession(api=TelegramAPIServer.from_base(self.tg.base_url)),
        )
        self.bots.append(bot)
        sender = Sender(
            bot,
            self.uow,
            clock=self.clock,
            settings=OutboxSettings(**{**FAST, **settings}),
            outbox=self.outbox,
        )
        sender.add_source(VAULT_SOURCE, VaultUploadSource(self.uow, self.blobs, self.clock))

        async def on_sent(_sent) -> None:
            return None

        on_failed = delivery_failed_hook(self.outbox, self.uow, self.clock)
        sender.add_hook(DELIVERED_HOOK, on_sent, on_failed=on_failed)
        return sender

    async def item(self, kind: str, data: bytes, name: str = "f") -> VaultItem:
        """An item with its bytes in the blob store and no Telegram file_id."""

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        vault = VaultService(self.uow, self.clock, self.blobs, VaultConfig())
        result = await vault.ingest(
            self.actor, IngestSource(kind=kind, name=name, size=len(data), content=chunks())
        )
        assert result.item.tg_file_id is None and result.item.blob_key is not None
        return result.item

    async def fresh(self, item_id: int) -> VaultItem:
        async with self.sessionmaker() as session:
            return await session.get(VaultItem, item_id)

    async def deliver(self, chat_id: int, item: VaultItem, **kw: Any) -> int:
        link = kw.pop("link", None)
        row_id, _ = await deliver(self.outbox, chat_id, item, link, **kw)
        return row_id


@pytest.fixture
async def world(engine, sessionmaker, tmp_path) -> AsyncIterator[World]:
    clock = OffsetClock()
    async with sessionmaker() as session:
        await bootstrap_owners(session, clock, [OWNER])
        await session.commit()
        actor = await OperatorService(over_session(session), clock).resolve(OWNER)
    assert actor is not None
    bots: list[Bot] = []
    uow = UnitOfWork(engine)
    async with FakeTelegram() as tg:
        yield World(
            sessionmaker,
            uow,
            clock,
            FaultyBlobs(LocalBlobStore(tmp_path / "blobs")),
            actor,
            tg,
            Outbox(uow, clock),
            bots,
        )
        for bot in bots:
            await bot.session.close()
        await uow.dispose()
        assert not tg.internal_errors, tg.internal_errors


async def rows(world: World) -> list[OutboxMessage]:
    async with world.sessionmaker() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        return list((await session.scalars(query)).all())


def uploads(tg: FakeTelegram, method: str) -> list:
    """Calls of `method` that carried the bytes (multipart file part)."""
    return [c for c in tg.calls(method) if c.files]


def files_in(tg: FakeTelegram, chat_id: int, kind: str) -> list[dict]:
    return [m for m in tg.messages(chat_id) if kind in m]


def texts_in(tg: FakeTelegram, chat_id: int) -> list[str]:
    return [m["text"] for m in tg.messages(chat_id) if "text" in m]


async def run(sender: Sender, world: World, within: float = 20) -> dict[str, int]:
    await sender.start()
    try:
        return await wait_idle(world.sessionmaker, within=within)
    finally:
        await sender.stop()


async def test_each_kind_is_uploaded_by_its_method_then_sent_by_file_id(world: World) -> None:
    ann = world.tg.user(5001, "Ann")
    link = VaultLink(protect_content=True)
    items = {kind: await world.item(kind, data) for kind, (_, data) in KINDS.items()}
    for item in items.values():
        await world.deliver(ann["id"], item, link=link, caption=f"a {item.kind}")
    assert await run(world.sender(per_chat_per_second=50), world) == {"sent": 6}
    for kind, (method, data) in KINDS.items():
        (call,) = uploads(world.tg, method)
        (part,) = call.files.values()  # aiogram attaches it under a random name
        assert call.ok and part.data == data, kind
        assert call.params["protect_content"] is True
        item = await world.fresh(items[kind].id)
        assert item.tg_file_id and item.tg_file_unique_id, kind
        got = [m for m in world.tg.messages(ann["id"]) if m.get("caption") == f"a {kind}"]
        assert len(got) == 1 and kind in got[0] and got[0]["has_protected_content"] is True
    # the file_ids were cached: the next round sends no bytes
    before = len(world.tg.requests)
    for kind in KINDS:
        await world.deliver(ann["id"], await world.fresh(items[kind].id))
    assert await run(world.sender(per_chat_per_second=50), world) == {"sent": 12}
    again = world.tg.requests[before:]
    assert len(again) == 6 and not any(c.files for c in again)
    assert {c.method for c in again} == {m for m, _ in KINDS.values()}


async def test_queued_deliveries_of_one_new_item_upload_it_once(world: World) -> None:
    people = [world.tg.user(5100 + i, f"U{i}") for i in range(8)]
    item = await world.item("document", b"popular " * 500)
    for person in people:
        await world.deliver(person["id"], item)
    sender = world.sender(global_per_second=50)
    assert await run(sender, world) == {"sent": 8}
    assert len(uploads(world.tg, "sendDocument")) == 1
    assert sender.upload_count == 1
    file_id = (await world.fresh(item.id)).tg_file_id
    for person in people:
        (got,) = files_in(world.tg, person["id"], "document")
        assert got["document"]["file_id"] == file_id


async def test_missing_blob_fails_with_a_clear_message(world: World) -> None:
    ann = world.tg.user(5201, "Ann")
    item = await world.item("document", b"gone soon")
    await world.blobs.delete(item.blob_key)
    row_id = await world.deliver(ann["id"], item)
    counts = await run(world.sender(), world)
    assert counts == {"failed": 1, "sent": 1}  # the delivery, and the message about it
    assert world.tg.calls("sendDocument") == []  # nothing was uploaded
    failed = next(r for r in await rows(world) if r.id == row_id)
    assert failed.status == OutboxStatus.failed and "blob missing" in failed.last_error
    assert texts_in(world.tg, ann["id"]) == [FAILED_TEXT["claim"][FailCause.source]]


async def test_blob_breaking_mid_upload_fails_with_a_clear_message(world: World) -> None:
    ann = world.tg.user(5301, "Ann")
    item = await world.item("document", b"x" * 5000)
    world.blobs.break_reads = 1
    row_id = await world.deliver(ann["id"], item, audience="operator")
    counts = await run(world.sender(), world)
    assert counts == {"failed": 1, "sent": 1}
    failed = next(r for r in await rows(world) if r.id == row_id)
    assert "reading the bytes failed" in failed.last_error
    assert files_in(world.tg, ann["id"], "document") == []
    expected = FAILED_TEXT["operator"][FailCause.source].format(item_id=item.id)
    assert texts_in(world.tg, ann["id"]) == [expected]
    assert (await world.fresh(item.id)).tg_file_id is None


async def test_429_during_an_upload_is_waited_out_and_sent_once(world: World) -> None:
    ann = world.tg.user(5401, "Ann")
    item = await world.item("video", b"\x00\x00\x00\x18ftypmp42" + b"v" * 4000)
    world.tg.fail_next("sendVideo", 429, retry_after=2)
    row_id = await world.deliver(ann["id"], item)
    sender = world.sender()
    started = time.monotonic()
    assert await run(sender, world) == {"sent": 1}
    assert time.monotonic() - started >= 1.9
    calls = world.tg.calls("sendVideo")
    assert [c.status for c in calls] == [429, 200] and all(c.files for c in calls)
    assert world.tg.accepted_sends[ann["id"]] == 1 and sender.retry_after_count == 1
    (row,) = [r for r in await rows(world) if r.id == row_id]
    assert row.attempts == 1  # the 429 is not a failed try


async def test_5xx_during_an_upload_is_retried_not_duplicated(world: World) -> None:
    ann = world.tg.user(5501, "Ann")
    item = await world.item("audio", b"ID3\x03\x00" + b"a" * 4000)
    world.tg.fail_next("sendAudio", 502, times=2)
    await world.deliver(ann["id"], item)
    assert await run(world.sender(), world) == {"sent": 1}
    assert [c.status for c in world.tg.calls("sendAudio")] == [502, 502, 200]
    assert len(files_in(world.tg, ann["id"], "audio")) == 1
    (row,) = await rows(world)
    assert row.attempts == 3


async def test_timeout_while_the_bytes_stream_is_retried_not_duplicated(world: World) -> None:
    """The upload stalls past the timeout before its body is complete: Telegram cannot have
    the message, so the row is sent again although vault rows are never resent blindly."""
    ann = world.tg.user(5601, "Ann")
    item = await world.item("document", b"s" * 8000)
    world.blobs.stall_reads, world.blobs.stall_seconds = 1, 2.5
    await world.deliver(ann["id"], item)
    sender = world.sender(upload_timeout_seconds=1)
    assert await run(sender, world, within=30) == {"sent": 1}
    assert sender.retried_count == 1
    assert len(files_in(world.tg, ann["id"], "document")) == 1
    (row,) = await rows(world)
    assert row.attempts == 2 and row.status == OutboxStatus.sent


async def test_answer_lost_after_an_upload_is_not_resent_and_the_person_told(
    world: World,
) -> None:
    ann = world.tg.user(5701, "Ann")
    item = await world.item("document", b"l" * 3000)
    world.tg.delay_next("sendDocument", 2.5, after=True)  # handled at once, answer held back
    row_id = await world.deliver(ann["id"], item)
    assert await run(world.sender(upload_timeout_seconds=1), world) == {"failed": 1, "sent": 1}
    await asyncio.sleep(2)  # a resend would arrive by now
    assert len(files_in(world.tg, ann["id"], "document")) == 1
    assert texts_in(world.tg, ann["id"]) == [FAILED_TEXT["claim"][FailCause.unknown]]
    failed = next(r for r in await rows(world) if r.id == row_id)
    assert "outcome unknown" in failed.last_error


async def test_queued_before_a_restart_is_uploaded_after_it(world: World) -> None:
    people = [world.tg.user(5800 + i, f"U{i}") for i in range(3)]
    item = await world.item("photo", PNG)
    first = world.sender()
    await first.start()
    await first.stop()  # the process goes down with nothing sent yet
    for person in people:  # queued while no sender runs
        await world.deliver(person["id"], item)
    assert all(r.status == OutboxStatus.pending for r in await rows(world))
    second = world.sender(global_per_second=50)
    assert await run(second, world) == {"sent": 3}
    assert len(uploads(world.tg, "sendPhoto")) == 1
    assert all(len(files_in(world.tg, p["id"], "photo")) == 1 for p in people)
    assert (await world.fresh(item.id)).tg_file_id is not None


async def test_refused_file_id_falls_back_to_an_upload(world: World) -> None:
    ann = world.tg.user(5901, "Ann")
    item = await world.item("document", b"stale id " * 100)
    async with world.sessionmaker() as session:
        stale = await session.get(VaultItem, item.id)
        stale.tg_file_id = "BQACAgIAAxkBAAI-no-such-file"
        await session.commit()
    await world.deliver(ann["id"], await world.fresh(item.id))
    assert await run(world.sender(), world) == {"sent": 1}
    calls = world.tg.calls("sendDocument")
    assert [(c.status, bool(c.files)) for c in calls] == [(400, False), (200, True)]
    fresh = await world.fresh(item.id)
    assert fresh.tg_file_id == calls[1].result["document"]["file_id"]


async def test_uploads_are_paced_like_any_send(world: World) -> None:
    """Six uploads of six new items to two chats, with the fake enforcing 3/s overall and 1/s
    per chat and the sender set to the same: no 429, per-chat spacing kept."""
    chats = [world.tg.user(6000 + i, f"U{i}")["id"] for i in range(2)]
    world.tg.enforce_rate_limit(per_second=3, per_chat_per_second=1, retry_after=5)
    for n in range(3):
        for chat in chats:
            item = await world.item("document", f"file {n} for {chat} ".encode() * 50)
            await world.deliver(chat, item)
    started = time.monotonic()
    sender = world.sender(global_per_second=3, per_chat_per_second=1.0)
    assert await run(sender, world, within=30) == {"sent": 6}
    assert time.monotonic() - started >= 2.0
    assert world.tg.rate_limited_count == 0 and sender.upload_count == 6
    assert len([c for c in world.tg.requests if c.files]) == 6
    by_chat: dict[int, list[float]] = {}
    for at, chat, _method, _mid in world.tg.accepted_log:
        by_chat.setdefault(chat, []).append(at)
    for times in by_chat.values():
        assert len(times) == 3
        assert all(b - a >= 0.95 for a, b in itertools.pairwise(times))


async def test_a_long_upload_keeps_its_lease_from_a_second_sender(world: World) -> None:
    """An upload outlasting the lease renews it: the other process's sender neither takes the
    row (it would count it as sent-or-not and tell the person) nor uploads it again."""
    ann = world.tg.user(6101, "Ann")
    item = await world.item("document", b"k" * 8000)
    world.blobs.stall_reads, world.blobs.stall_seconds = 1, 4.0
    await world.deliver(ann["id"], item)
    tuned = dict(lease_seconds=3, request_timeout_seconds=1, upload_timeout_seconds=10)
    a, b = world.sender(**tuned), world.sender(**tuned)
    await asyncio.gather(a.start(), b.start())
    try:
        counts = await wait_idle(world.sessionmaker, within=20)
    finally:
        await asyncio.gather(a.stop(), b.stop())
    assert counts == {"sent": 1}
    assert a.upload_count + b.upload_count == 1 and a.failed_count + b.failed_count == 0
    assert len(files_in(world.tg, ann["id"], "document")) == 1
    assert texts_in(world.tg, ann["id"]) == []


async def test_stopping_mid_upload_hands_the_row_back_for_the_next_process(world: World) -> None:
    """Shut down while the bytes are still streaming: nothing reached Telegram whole, so the
    row goes back to pending (not left to be failed as "outcome unknown") and is sent later."""
    ann = world.tg.user(6201, "Ann")
    item = await world.item("document", b"h" * 8000)
    world.blobs.stall_reads, world.blobs.stall_seconds = 1, 6.0
    row_id = await world.deliver(ann["id"], item)
    first = world.sender(shutdown_timeout_seconds=1)
    await first.start()
    for _ in range(100):  # until the upload is under way
        if first.upload_count:
            break
        await asyncio.sleep(0.05)
    assert first.upload_count == 1
    await first.stop()
    (row,) = await rows(world)
    assert row.id == row_id and row.status == OutboxStatus.pending and row.attempts == 0
    second = world.sender()
    assert await run(second, world) == {"sent": 1}
    assert len(files_in(world.tg, ann["id"], "document")) == 1
    assert texts_in(world.tg, ann["id"]) == [] and second.failed_count == 0
