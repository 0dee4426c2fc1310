"""Per-operator upload caps (issue 6 item 4), end to end through the fake Telegram.

VAULT_OPERATOR_MAX_UPLOADS_PER_HOUR and VAULT_OPERATOR_MAX_BYTES_PER_DAY are counted from the
operator's own items in the database. Over a cap the operator is told which cap and when it
frees up, nothing is stored (no item, no blob), and the refusal is audited.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from core.settings import VaultSettings
from core.vault import VaultConfig, VaultService
from storage.models import AuditEntry
from storage.vault_models import VaultItem
from tests.e2e.conftest import OPERATOR, OWNER, Harness

CRASH = "Something went wrong"


def use_caps(app: Harness, *, per_hour: int, per_day: int) -> VaultConfig:
    """Rebuild the vault service from settings carrying the caps (as VAULT_* would)."""
    settings = VaultSettings(
        _env_file=None,  # type: ignore[call-arg]
        operator_max_uploads_per_hour=per_hour,
        operator_max_bytes_per_day=per_day,
    )
    config = VaultConfig.from_settings(settings)
    assert (config.operator_max_uploads_per_hour, config.operator_max_bytes_per_day) == (
        per_hour,
        per_day,
    )
    app.app.services.vault = VaultService(app.app.uow, app.app.clock, app.app.blobs, config)
    return config


async def send(app: Harness, user: int, data: bytes, name: str) -> dict:
    """The operator sends a document; the bot's answer (a card or a refusal)."""
    since = app.tg.mark()
    await app.tg.send_file(app.user(user), "document", data, file_name=name)
    return await app.tg.wait_for_message(user, since=since, timeout=15)


async def items(app: Harness, user: int | None = None) -> int:
    async with app.app.sessionmaker() as session:
        stmt = select(func.count()).select_from(VaultItem)
        if user is not None:
            stmt = stmt.where(VaultItem.uploaded_by == user)
        return int(await session.scalar(stmt) or 0)


async def refusals(app: Harness) -> list[AuditEntry]:
    async with app.app.sessionmaker() as session:
        stmt = select(AuditEntry).where(AuditEntry.action == "vault.ingest_refused")
        return list((await session.scalars(stmt.order_by(AuditEntry.id))).all())


def blobs(app: Harness) -> int:
    root = Path(app.app.blobs.root)
    return sum(1 for p in root.rglob("*") if p.is_file() and "tmp" not in p.relative_to(root).parts)


async def test_uploads_per_hour_cap(app: Harness) -> None:
    """Three files an hour: the fourth (tiny, far under the byte cap) is refused with the cap's
    name and the time it frees up; another operator is not affected; an hour later it fits."""
    use_caps(app, per_hour=3, per_day=10_000_000)
    for n in range(3):
        card = await send(app, OPERATOR, f"file {n}".encode(), f"f{n}.txt")
        assert "file #" in card["text"], card["text"]
    stored = blobs(app)
    answer = await send(app, OPERATOR, b"one too many", "f3.txt")
    text = answer["text"]
    assert "Upload cap reached" in text and "3 files in the last hour" in text, text
    assert "VAULT_OPERATOR_MAX_UPLOADS_PER_HOUR" in text and "Nothing was stored" in text
    assert "You can add the next file from" in text and "(in 59 min)" in text, text
    assert CRASH not in text and "file #" not in text
    assert await items(app, OPERATOR) == 3
    assert blobs(app) == stored
    (audit,) = await refusals(app)
    assert audit.actor_id == OPERATOR
    assert audit.details["cap"] == "uploads_per_hour"
    assert (audit.details["limit"], audit.details["used"]) == (3, 3)

    # the cap is per operator: the owner still uploads
    card = await send(app, OWNER, b"owner's file", "o.txt")
    assert "file #" in card["text"], card["text"]

    # deleting a file does not give its upload back
    async with app.app.sessionmaker() as session:
        first = await session.scalar(
            select(VaultItem).where(VaultItem.uploaded_by == OPERATOR).order_by(VaultItem.id)
        )
    actor = await app.actor(OPERATOR)
    await app.app.services.vault.delete(actor, first.id)
    again = await send(app, OPERATOR, b"one too many", "f3.txt")
    assert "Upload cap reached" in again["text"], again["text"]

    app.clock.advance(3601)
    card = await send(app, OPERATOR, b"one too many", "f3.txt")
    assert "file #" in card["text"], card["text"]
    assert await items(app, OPERATOR) == 4
    assert len(await refusals(app)) == 2


async def test_bytes_per_day_cap(app: Harness) -> None:
    """1,000 bytes a day, 10 files an hour: a file under the upload cap but over what is left
    of the byte cap is refused; a smaller one fits; the day after the big one fits too."""
    use_caps(app, per_hour=10, per_day=1000)
    card = await send(app, OPERATOR, b"a" * 600, "a.bin")
    assert "file #" in card["text"], card["text"]
    app.clock.advance(3600)  # the refusal must name when the first file leaves the window
    stored = blobs(app)
    answer = await send(app, OPERATOR, b"b" * 500, "b.bin")
    text = answer["text"]
    assert "Daily upload cap reached" in text and "600 bytes in the last 24 hours" in text, text
    assert "this file (500 bytes) does not fit" in text, text
    assert "VAULT_OPERATOR_MAX_BYTES_PER_DAY" in text and "Nothing was stored" in text
    assert "(in 22h 59m)" in text or "(in 23h 0m)" in text, text
    assert await items(app, OPERATOR) == 1 and blobs(app) == stored
    (audit,) = await refusals(app)
    assert audit.details == {
        "cap": "bytes_per_day",
        "limit": 1000,
        "used": 600,
        "size": 500,
        "kind": "document",
    }

    card = await send(app, OPERATOR, b"c" * 400, "c.bin")  # exactly fills the day
    assert "file #" in card["text"], card["text"]
    full = await send(app, OPERATOR, b"d", "d.bin")
    assert "Daily upload cap reached" in full["text"], full["text"]

    app.clock.advance(23 * 3600 + 1)  # the 600-byte file has left the window, the 400 not
    card = await send(app, OPERATOR, b"b" * 500, "b.bin")
    assert "file #" in card["text"], card["text"]
    assert await items(app, OPERATOR) == 3
    assert [a.details["cap"] for a in await refusals(app)] == ["bytes_per_day"] * 2


async def test_a_file_larger_than_the_daily_cap_never_fits(app: Harness) -> None:
    use_caps(app, per_hour=10, per_day=1000)
    answer = await send(app, OPERATOR, b"x" * 1500, "huge.bin")
    text = answer["text"]
    assert "is larger than the 1000 bytes each operator may add per 24 hours" in text, text
    assert "Nothing was stored" in text and CRASH not in text
    assert await items(app) == 0 and blobs(app) == 0
    (audit,) = await refusals(app)
    assert audit.details["cap"] == "bytes_per_day" and audit.details["size"] == 1500


async def test_over_the_upload_cap_but_under_the_byte_cap_and_the_reverse(app: Harness) -> None:
    """Both caps set: each refusal names the cap that was broken, not the other one."""
    use_caps(app, per_hour=2, per_day=1000)
    assert "file #" in (await send(app, OPERATOR, b"1" * 100, "1.bin"))["text"]
    over_bytes = await send(app, OPERATOR, b"2" * 950, "2.bin")  # 2nd upload: under the count
    assert "Daily upload cap reached" in over_bytes["text"], over_bytes["text"]
    assert "Upload cap reached" not in over_bytes["text"]
    assert "file #" in (await send(app, OPERATOR, b"3" * 100, "3.bin"))["text"]
    over_count = await send(app, OPERATOR, b"4", "4.bin")  # 1 byte: far under the byte cap
    assert over_count["text"].startswith("Upload cap reached"), over_count["text"]
    assert "Daily" not in over_count["text"]
    assert await items(app, OPERATOR) == 2
    assert [a.details["cap"] for a in await refusals(app)] == ["bytes_per_day", "uploads_per_hour"]
