"""Per-operator upload caps in VaultService, on SQLite and PostgreSQL: concurrent uploads of
one operator never overshoot the cap (each service has its own session, as separate processes
would), and a file whose size Telegram did not announce stops at the daily cap with nothing
stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.clock import OffsetClock
from core.errors import InvalidInput
from core.services.operators import OperatorService, bootstrap_owners
from core.vault import IngestSource, VaultConfig, VaultService
from core.vault.caps import over_cap
from storage.blobs import LocalBlobStore
from storage.models import AuditEntry
from storage.uow import UnitOfWork, over_session
from storage.vault_models import VaultItem

OWNER = 1001


async def chunks(data: bytes, size: int = 100) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def src(data: bytes, n: int, *, announce: bool = True) -> IngestSource:
    return IngestSource(
        kind="document",
        file_id=f"FILE-{n}",
        file_unique_id=f"UNIQ-{n}",
        name=f"f{n}.bin",
        size=len(data) if announce else None,
        content=chunks(data),
    )


@pytest.fixture
async def setup(engine, sessionmaker, tmp_path):
    clock = OffsetClock()
    async with sessionmaker() as session:
        await bootstrap_owners(session, clock, [OWNER])
        await session.commit()
        actor = await OperatorService(over_session(session), clock).resolve(OWNER)
    uow = UnitOfWork(engine)
    blobs = LocalBlobStore(tmp_path / "blobs")

    def vault(config: VaultConfig) -> VaultService:
        return VaultService(uow, clock, blobs, config)

    yield sessionmaker, vault, blobs, actor
    await uow.dispose()


def stored_blobs(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file() and "tmp" not in p.relative_to(root).parts)


async def count(sessionmaker, model, *where) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)))


async def test_concurrent_uploads_never_overshoot_the_hourly_cap(setup) -> None:
    sessionmaker, vault, blobs, actor = setup
    config = VaultConfig(operator_max_uploads_per_hour=3)

    async def one(n: int) -> str:
        try:
            await vault(config).ingest(actor, src(f"file number {n}".encode() * 50, n))
        except InvalidInput as exc:
            return exc.message
        return "stored"

    answers = await asyncio.gather(*(one(n) for n in range(8)))
    assert answers.count("stored") == 3, answers
    assert all(a.startswith("Upload cap reached") for a in answers if a != "stored"), answers
    assert await count(sessionmaker, VaultItem) == 3
    assert stored_blobs(blobs.root) == 3  # a refusal after the bytes landed removed its blob
    refused = await count(sessionmaker, AuditEntry, AuditEntry.action == "vault.ingest_refused")
    assert refused == 5


async def test_unannounced_size_stops_at_the_daily_cap(setup) -> None:
    sessionmaker, vault, blobs, actor = setup
    config = VaultConfig(operator_max_bytes_per_day=1000)
    await vault(config).ingest(actor, src(b"a" * 600, 1, announce=False))
    with pytest.raises(InvalidInput) as refused:
        await vault(config).ingest(actor, src(b"b" * 5000, 2, announce=False))
    assert "Daily upload cap reached" in refused.value.message
    assert refused.value.data["cap"] == "bytes_per_day"
    assert await count(sessionmaker, VaultItem) == 1
    assert stored_blobs(blobs.root) == 1


def test_over_cap_picks_the_time_enough_has_left_the_window() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 1, 2, 12, tzinfo=UTC)
    rows = [(now - timedelta(hours=h), size) for h, size in ((20, 300), (10, 300), (0.5, 300))]
    config = VaultConfig(operator_max_bytes_per_day=1000, operator_max_uploads_per_hour=5)
    assert over_cap(config, rows, 100, now) is None
    refusal = over_cap(config, rows, 400, now)
    assert refusal is not None and refusal.cap == "bytes_per_day"
    # 900 used + 400 > 1000: the oldest 300 must leave the window (20 h ago → in 4 h)
    assert refusal.frees_at == rows[0][0] + timedelta(days=1)
    refusal = over_cap(config, rows, 500, now)  # needs the two oldest gone
    assert refusal is not None and refusal.frees_at == rows[1][0] + timedelta(days=1)
    refusal = over_cap(config, rows, 800, now)  # needs all three gone
    assert refusal is not None and refusal.frees_at == rows[2][0] + timedelta(days=1)
    assert over_cap(config, rows, 1001, now).frees_at is None  # type: ignore[union-attr]
    per_hour = VaultConfig(operator_max_uploads_per_hour=1)
    refusal = over_cap(per_hour, rows, 1, now)
    assert refusal is not None and refusal.frees_at == rows[2][0] + timedelta(hours=1)
