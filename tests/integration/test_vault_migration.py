"""Migration 0002 up, down, up on each backend, and the constraints it creates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from storage import migrate
from storage.db import create_engine

VAULT_TABLES = {"vault_items", "vault_links", "vault_claims"}
NOW = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)


async def tables(engine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_stairway(db_url) -> None:
    engine = create_engine(db_url)
    try:
        await migrate.upgrade(engine, "0002")
        assert await tables(engine) >= VAULT_TABLES
        await migrate.downgrade(engine, "0001")
        assert not VAULT_TABLES & await tables(engine)
        await migrate.upgrade(engine, "0002")
        assert await tables(engine) >= VAULT_TABLES
    finally:
        await engine.dispose()


async def _insert_item(conn, sha: str | None, unique: str | None, deleted: bool = False) -> None:
    await conn.execute(
        text(
            "INSERT INTO vault_items (tenant_id, sha256, size, mime, kind, name, blob_key, nsfw,"
            " tg_file_unique_id, created_at, deleted_at) VALUES (1, :sha, 1, 'a/b', 'document',"
            " 'n', :key, false, :uniq, :now, :deleted)"
        ),
        {
            "sha": sha,
            "key": f"{sha[:2]}/{sha[2:4]}/{sha}" if sha else None,
            "uniq": unique,
            "now": NOW,
            "deleted": NOW if deleted else None,
        },
    )


@pytest.mark.parametrize(
    ("first", "second", "clash"),
    [
        (("a" * 64, "u1", False), ("a" * 64, "u2", False), True),  # same bytes, both live
        (("a" * 64, "u1", True), ("a" * 64, "u2", False), False),  # the first is deleted
        ((None, "tg", False), (None, "tg", False), True),  # same Telegram-only file
        ((None, "tg", True), (None, "tg", False), False),
        (("b" * 64, "tg", False), (None, "tg", False), False),  # bytes item does not block
    ],
)
async def test_live_items_are_unique(engine, first, second, clash) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tenants (slug, name, queue_paused, created_at)"
                " VALUES ('t', 't', false, :now)"
            ),
            {"now": NOW},
        )
        await _insert_item(conn, *first)
    if clash:
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await _insert_item(conn, *second)
    else:
        async with engine.begin() as conn:
            await _insert_item(conn, *second)
