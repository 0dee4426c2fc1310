"""VaultService on SQLite and PostgreSQL: ingest, dedupe, size cap, Telegram-only items,
links (the code is shown once and stored only as a hash), listings, stats, roles."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.actor import Actor
from core.clock import OffsetClock
from core.crypto import hash_code
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.services.operators import OperatorService, bootstrap_owners
from core.vault import (
    Claimer,
    ClaimService,
    IngestSource,
    VaultConfig,
    VaultService,
)
from storage.blobs import LocalBlobStore
from storage.models import AuditEntry, Role
from storage.uow import UnitOfWork, over_session
from storage.vault_models import VaultItem, VaultLink

OWNER = 1001
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


@dataclass
class World:
    sessionmaker: async_sessionmaker[AsyncSession]
    uow: UnitOfWork
    clock: OffsetClock
    blobs: LocalBlobStore
    actor: Actor
    config: VaultConfig

    def vault(self) -> VaultService:
        return VaultService(self.uow, self.clock, self.blobs, self.config)


@pytest.fixture
async def world(engine, sessionmaker, tmp_path) -> AsyncIterator[World]:
    clock = OffsetClock()
    async with sessionmaker() as session:
        await bootstrap_owners(session, clock, [OWNER])
        await session.commit()
        actor = await OperatorService(over_session(session), clock).resolve(OWNER)
    assert actor is not None
    uow = UnitOfWork(engine)
    yield World(
        sessionmaker,
        uow,
        clock,
        LocalBlobStore(tmp_path / "blobs"),
        actor,
        VaultConfig(max_file_bytes=64 * 1024),
    )
    await uow.dispose()


async def chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def source(data: bytes | None, **kw) -> IngestSource:
    values = {
        "kind": "document",
        "file_id": "FILE-1",
        "file_unique_id": "UNIQ-1",
        "name": "picture",
        "mime": "application/octet-stream",
        "size": None if data is None else len(data),
    }
    values.update(kw)
    return IngestSource(content=None if data is None else chunks(data), **values)


async def test_ingest_streams_hashes_sniffs_and_names(world: World) -> None:
    result = await world.vault().ingest(
        world.actor, source(PNG, name="../../etc/holiday\u202egpj.exe", caption=" sunny ")
    )
    item = result.item
    assert not result.duplicate and not result.telegram_only
    assert item.sha256 == hashlib.sha256(PNG).hexdigest()
    assert item.size == len(PNG)
    assert item.mime == "image/png"  # sniffed from the bytes, not the declared octet-stream
    assert item.name == "holidaygpj.exe"  # no path, no bidi override
    assert item.description == "sunny"
    assert item.tg_file_id == "FILE-1"
    assert await (await world.blobs.open_range(item.blob_key)).read_all() == PNG
    async with world.sessionmaker() as session:
        audit = (await session.execute(select(AuditEntry.action))).scalars().all()
    assert "vault.ingest" in audit


async def test_photo_without_name_gets_kind_and_extension(world: World) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 100
    item = (
        await world.vault().ingest(world.actor, source(jpeg, kind="photo", name=None, mime=None))
    ).item
    assert item.kind == "photo" and item.mime == "image/jpeg"
    assert item.name.startswith("photo_") and item.name.endswith(".jpg")


async def test_same_bytes_are_one_item(world: World) -> None:
    first = await world.vault().ingest(world.actor, source(PNG))
    # Different Telegram file (another upload of the same bytes): found by sha256.
    again = await world.vault().ingest(
        world.actor, source(PNG, file_id="FILE-2", file_unique_id="UNIQ-2", name="copy.png")
    )
    assert again.duplicate and again.item.id == first.item.id
    async with world.sessionmaker() as session:
        assert (await session.execute(select(VaultItem))).scalars().all().__len__() == 1


async def test_same_telegram_file_is_recognised_before_reading(world: World) -> None:
    first = await world.vault().ingest(world.actor, source(PNG))

    read = []

    async def tracking() -> AsyncIterator[bytes]:
        read.append(True)
        yield PNG

    again = await world.vault().ingest(
        world.actor,
        IngestSource(kind="document", file_id="X", file_unique_id="UNIQ-1", content=tracking()),
    )
    assert again.duplicate and again.item.id == first.item.id
    assert read == []


async def test_deleted_item_does_not_block_a_new_upload(world: World) -> None:
    first = await world.vault().ingest(world.actor, source(PNG))
    await world.vault().delete(world.actor, first.item.id)
    again = await world.vault().ingest(world.actor, source(PNG))
    assert not again.duplicate and again.item.id != first.item.id


async def test_size_cap_refuses_declared_and_streamed(world: World) -> None:
    big = b"x" * (64 * 1024 + 1)
    with pytest.raises(InvalidInput, match=r"up to 64\.0 KB"):
        await world.vault().ingest(world.actor, source(big))
    # A source that under-declares its size is cut off while streaming.
    with pytest.raises(InvalidInput, match=r"more than 64\.0 KB"):
        await world.vault().ingest(world.actor, source(big, size=None))
    # Telegram-only items are refused by their declared size too.
    with pytest.raises(InvalidInput):
        await world.vault().ingest(world.actor, source(None, size=len(big)))
    async with world.sessionmaker() as session:
        assert (await session.execute(select(VaultItem))).scalars().all() == []
    assert not any(p.is_file() for p in world.blobs.root.rglob("*") if ".tmp" not in p.parts)


async def test_telegram_only_item_and_its_dedupe(world: World) -> None:
    src = source(None, kind="video", name="clip", mime="video/mp4", size=3 * 1024)
    first = await world.vault().ingest(world.actor, src)
    assert first.telegram_only and first.item.sha256 is None
    assert first.item.name == "clip.mp4" and first.item.size == 3 * 1024
    again = await world.vault().ingest(world.actor, src)
    assert again.duplicate and again.item.id == first.item.id


async def test_viewer_cannot_ingest_or_create_links(world: World) -> None:
    viewer = Actor(operator_id=99, user_id=99, tenant_id=world.actor.tenant_id, role=Role.viewer)
    item = (await world.vault().ingest(world.actor, source(PNG))).item
    with pytest.raises(Forbidden):
        await world.vault().ingest(viewer, source(PNG))
    with pytest.raises(Forbidden):
        await world.vault().create_link(viewer, item.id, lifetime_seconds=3600, max_uses=1)
    # Reading is fine.
    assert (await world.vault().get(viewer, item.id)).id == item.id


async def test_other_workspace_sees_nothing(world: World) -> None:
    stranger = Actor(operator_id=5, user_id=5, tenant_id=world.actor.tenant_id + 1, role=Role.owner)
    item = (await world.vault().ingest(world.actor, source(PNG))).item
    with pytest.raises(NotFound):
        await world.vault().get(stranger, item.id)
    with pytest.raises(NotFound):
        await world.vault().create_link(stranger, item.id, lifetime_seconds=3600, max_uses=1)


async def test_link_code_is_shown_once_and_only_its_hash_is_stored(world: World) -> None:
    vault = world.vault()
    item = (await vault.ingest(world.actor, source(PNG))).item
    new = await vault.create_link(
        world.actor,
        item.id,
        lifetime_seconds=3600,
        max_uses=5,
        protect_content=True,
        auto_delete_seconds=600,
    )
    assert len(new.code) == 43
    assert new.link.code_hash == hash_code(new.code)
    assert new.link.uses_left == 5 and new.link.protect_content
    # The plaintext code is nowhere in the database: dump every text column of every table.
    async with world.sessionmaker() as session:
        found = []
        for table in ("vault_items", "vault_links", "vault_claims", "audit_log", "jobs"):
            for row in (await session.execute(text(f"SELECT * FROM {table}"))).all():
                found += [table for value in row if new.code in str(value)]
    assert found == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lifetime_seconds": 59, "max_uses": 1}, "1 minute and 365 days"),
        ({"lifetime_seconds": 366 * 86400, "max_uses": 1}, "1 minute and 365 days"),
        ({"lifetime_seconds": 3600, "max_uses": 0}, "between 1 and 1,000,000"),
        ({"lifetime_seconds": 3600, "max_uses": 1_000_001}, "between 1 and 1,000,000"),
        ({"lifetime_seconds": 3600, "max_uses": 1, "auto_delete_seconds": 59}, "2880"),
        ({"lifetime_seconds": 3600, "max_uses": 1, "auto_delete_seconds": 2881 * 60}, "2880"),
    ],
)
async def test_link_bounds(world: World, kwargs, message) -> None:
    item = (await world.vault().ingest(world.actor, source(PNG))).item
    with pytest.raises(InvalidInput, match=message):
        await world.vault().create_link(world.actor, item.id, **kwargs)


async def test_link_bounds_edges_are_accepted(world: World) -> None:
    vault = world.vault()
    item = (await vault.ingest(world.actor, source(PNG))).item
    await vault.create_link(world.actor, item.id, lifetime_seconds=60, max_uses=1)
    await vault.create_link(
        world.actor,
        item.id,
        lifetime_seconds=365 * 86400,
        max_uses=1_000_000,
        auto_delete_seconds=2880 * 60,
    )


async def test_revoke_and_listings(world: World) -> None:
    vault = world.vault()
    item = (await vault.ingest(world.actor, source(PNG))).item
    soon = await vault.create_link(world.actor, item.id, lifetime_seconds=120, max_uses=2)
    later = await vault.create_link(world.actor, item.id, lifetime_seconds=7200, max_uses=2)
    gone = await vault.create_link(world.actor, item.id, lifetime_seconds=7200, max_uses=2)
    await vault.revoke(world.actor, gone.link.id)
    with pytest.raises(Conflict, match="already revoked"):
        await vault.revoke(world.actor, gone.link.id)
    with pytest.raises(NotFound):
        await vault.revoke(world.actor, 999_999)
    active = await vault.links(world.actor)
    assert [link.id for link, _ in active.rows] == [soon.link.id, later.link.id]
    assert all(it.id == item.id for _, it in active.rows)
    everything = await vault.links(world.actor, active_only=False)
    assert everything.total == 3
    world.clock.advance(timedelta(minutes=5))
    assert [link.id for link, _ in (await vault.links(world.actor)).rows] == [later.link.id]
    assert (await vault.stats(world.actor)).active_links == 1


async def test_delete_revokes_links_and_hides_item(world: World) -> None:
    async with world.sessionmaker() as session:
        vault = world.vault()
        item = (await vault.ingest(world.actor, source(PNG))).item
        await vault.create_link(world.actor, item.id, lifetime_seconds=3600, max_uses=2)
        await vault.create_link(world.actor, item.id, lifetime_seconds=3600, max_uses=2)
        assert await vault.delete(world.actor, item.id) == 2
        with pytest.raises(Conflict):
            await vault.delete(world.actor, item.id)
        with pytest.raises(NotFound):
            await vault.get(world.actor, item.id)
        assert (await vault.page(world.actor)).total == 0
        links = (await session.execute(select(VaultLink))).scalars().all()
        assert all(link.revoked_at is not None and link.revoked_by == OWNER for link in links)
    # The bytes stay: content-addressed blobs may be shared.
    assert await world.blobs.exists(item.blob_key)


async def test_rename_keeps_extension_and_refuses_empty(world: World) -> None:
    vault = world.vault()
    item = (await vault.ingest(world.actor, source(PNG, name="a.png"))).item
    renamed = await vault.rename(world.actor, item.id, "  Summer / beach  ")
    assert renamed.name == "beach.png"
    assert (await vault.rename(world.actor, item.id, "report.pdf")).name == "report.pdf"
    with pytest.raises(InvalidInput):
        await vault.rename(world.actor, item.id, " ... ")


async def test_page_filters_and_stats(world: World) -> None:
    vault = world.vault()
    for i in range(5):
        data = PNG + bytes([i])
        await vault.ingest(
            world.actor,
            source(data, file_unique_id=f"U{i}", kind="photo" if i % 2 else "document"),
        )
    await vault.ingest(
        world.actor, source(None, file_unique_id="TG", kind="video", size=5000, nsfw=True)
    )
    page0 = await vault.page(world.actor, size=4)
    page1 = await vault.page(world.actor, size=4, page=1)
    assert (page0.total, page0.pages, len(page0.rows), len(page1.rows)) == (6, 2, 4, 2)
    assert {i.id for i in page0.rows}.isdisjoint({i.id for i in page1.rows})
    assert (await vault.page(world.actor, page=99, size=4)).page == 1  # clamped
    assert (await vault.page(world.actor, kind="photo")).total == 2
    assert (await vault.page(world.actor, nsfw=True)).total == 1
    assert (await vault.page(world.actor, nsfw=False)).total == 5
    with pytest.raises(InvalidInput):
        await vault.page(world.actor, kind="sticker")
    stats = await vault.stats(world.actor)
    assert stats.items == 6
    assert stats.by_kind["photo"].count == 2
    assert stats.by_kind["document"].bytes == 3 * (len(PNG) + 1)
    assert stats.by_kind["video"].telegram_only == 1
    assert stats.bytes == 5 * (len(PNG) + 1) + 5000


async def test_record_file_id_caches_for_next_send(world: World) -> None:
    item = (
        await world.vault().ingest(world.actor, IngestSource(kind="document", content=chunks(PNG)))
    ).item
    assert item.tg_file_id is None
    await ClaimService(world.uow, world.clock).record_file_id(item.id, "NEWFILE", "NEWUNIQ")
    fresh = await world.vault().get(world.actor, item.id)
    assert (fresh.tg_file_id, fresh.tg_file_unique_id) == ("NEWFILE", "NEWUNIQ")


async def test_access_log_lists_attempts_newest_first(world: World) -> None:
    vault = world.vault()
    item = (await vault.ingest(world.actor, source(PNG))).item
    new = await vault.create_link(world.actor, item.id, lifetime_seconds=3600, max_uses=1)
    for user in (1, 2, 1):
        await ClaimService(world.uow, world.clock).claim(new.code, Claimer.telegram(user))
    log = await world.vault().access_log(world.actor, item.id)
    assert [c.outcome for c in log.rows] == ["redelivered", "denied:used_up", "delivered"]
    assert [c.claimer_id for c in log.rows] == ["1", "2", "1"]


async def test_concurrent_uploads_of_the_same_bytes_make_one_item(world: World) -> None:
    async def upload(i: int):
        src = source(PNG, file_id=f"F{i}", file_unique_id=f"U{i}")
        return await world.vault().ingest(world.actor, src)

    results = await asyncio.gather(*(upload(i) for i in range(8)))
    assert len({r.item.id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    async with world.sessionmaker() as session:
        assert len((await session.execute(select(VaultItem))).scalars().all()) == 1
