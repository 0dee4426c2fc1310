"""Claimed files go out through the outbox: paced under enforced limits, 429s waited out,
one send per double tap, auto-delete still scheduled (by the outbox hook) — and files Telegram
does not hold yet are uploaded by the outbox sender too (once per item), with a clear message
when the stored copy is missing and the claimer's use kept."""

from __future__ import annotations

import asyncio
import re

from sqlalchemy import select

from bot.outbox import wait_idle
from core.crypto import hash_code
from core.vault import IngestSource
from storage.outbox_models import OutboxMessage
from storage.vault_models import VaultClaim, VaultItem, VaultLink
from tests.e2e.conftest import OPERATOR, OWNER, STRANGER, VIEWER, Harness
from tests.e2e.test_vault_in_chat import files_sent, make_link, upload, wait_delete_job


async def _outbox_rows(app: Harness) -> list[OutboxMessage]:
    async with app.app.sessionmaker() as session:
        return list(
            (
                await session.scalars(
                    select(OutboxMessage).where(OutboxMessage.dedupe_key.like("vault:%"))
                )
            ).all()
        )


async def test_claims_under_an_enforced_limit_all_arrive_once(app: Harness) -> None:
    card = await upload(app, OPERATOR, "document", b"paced", file_name="p.txt")
    code, _, _ = await make_link(app, card, uses="1")
    app.tg.enforce_rate_limit(per_second=2, per_chat_per_second=1, retry_after=1)
    people = [STRANGER, VIEWER, *range(5001, 5006)]
    for uid in people[2:]:
        app.users[uid] = app.tg.user(uid, f"U{uid}")
    for uid in people:
        await app.tg.send_text(app.user(uid), f"/start {code}")
    await app.tg.wait_until(
        lambda: all(app.tg.messages(uid) for uid in people), timeout=15, what="every answer"
    )
    await wait_idle(app.app.sessionmaker, within=15)
    got = {uid: app.tg.messages(uid) for uid in people}
    assert all(len(msgs) == 1 for msgs in got.values()), got  # one answer each, none lost
    winners = [uid for uid in people if files_sent(app, uid)]
    assert len(winners) == 1
    used_up = [uid for uid in people if "used as many times" in got[uid][0].get("text", "")]
    assert len(used_up) == len(people) - 1
    assert app.app.sender.failed_count == 0


async def test_double_tap_queues_one_send_and_a_429_is_waited_out(app: Harness) -> None:
    card = await upload(app, OPERATOR, "document", b"once", file_name="once.txt")
    code, _, _ = await make_link(app, card)
    app.tg.fail_next("sendDocument", 429, retry_after=1)
    since = app.tg.mark()
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    await app.tg.wait_for("sendDocument", lambda c: c.status == 429, since=since)
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")  # tapped again meanwhile
    got = await app.tg.wait_for_message(STRANGER, "Here is your file", timeout=10, since=since)
    assert "document" in got
    await wait_idle(app.app.sessionmaker, within=10)
    assert len(files_sent(app, STRANGER)) == 1
    assert app.app.sender.retry_after_count >= 1
    rows = [r for r in await _outbox_rows(app) if r.dedupe_key.startswith("vault:claim:")]
    assert [(r.status, r.dedupe_key.rsplit(":", 1)[1]) for r in rows] == [("sent", "0")]
    # the second tap was told the file is coming rather than left unanswered
    assert any("on its way" in m.get("text", "") for m in app.tg.messages(STRANGER))
    # once that delivery went out, claiming again is a new delivery (no use spent)
    since = app.tg.mark()
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    again = await app.tg.wait_for_message(STRANGER, "again", timeout=10, since=since)
    assert "document" in again


async def test_auto_delete_after_a_queued_delivery(app: Harness) -> None:
    card = await upload(app, OPERATOR, "photo", bytes(64), caption="short-lived")
    code, _, _ = await make_link(app, card, auto_delete=10)
    app.tg.fail_next("sendPhoto", 429, retry_after=1)
    since = app.tg.mark()
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    got = await app.tg.wait_for_message(STRANGER, "Here is your file", timeout=10, since=since)
    job = await wait_delete_job(app)
    assert job.payload == {"chat_id": STRANGER, "message_id": got["message_id"]}
    app.clock.advance(601)
    await app.tg.wait_until(
        lambda: any(
            m["message_id"] == got["message_id"] for m in app.tg.deleted_messages(STRANGER)
        ),
        timeout=10,
        what="auto-delete",
    )


# -- files Telegram does not hold yet (bytes only in the blob store) ---------------------------


async def ingest_without_file_id(app: Harness, kind: str, data: bytes, name: str) -> VaultItem:
    """An item as a restore (or an ingest from disk) leaves it: bytes stored, no file_id."""

    async def content():
        yield data

    actor = await app.actor(OPERATOR)
    vault = app.app.services.vault
    result = await vault.ingest(
        actor, IngestSource(kind=kind, name=name, size=len(data), content=content())
    )
    assert result.item.tg_file_id is None
    return result.item


async def new_link(app: Harness, item_id: int, **kw) -> str:
    actor = await app.actor(OPERATOR)
    vault = app.app.services.vault
    made = await vault.create_link(
        actor, item_id, lifetime_seconds=86400, max_uses=kw.pop("uses", 5), **kw
    )
    return made.code


async def fresh_item(app: Harness, item_id: int) -> VaultItem:
    async with app.app.sessionmaker() as session:
        return await session.get(VaultItem, item_id)


async def cached_file_id(app: Harness, item_id: int) -> str:
    """The file_id cached on the item (it is written just after the upload is marked sent)."""
    for _ in range(200):
        if file_id := (await fresh_item(app, item_id)).tg_file_id:
            return file_id
        await asyncio.sleep(0.05)
    raise AssertionError(f"no file_id was cached on vault item {item_id}")


async def used_count(app: Harness, code: str) -> int:
    async with app.app.sessionmaker() as session:
        link = await session.scalar(select(VaultLink).where(VaultLink.code_hash == hash_code(code)))
        return link.used_count


async def access_log(app: Harness, code: str) -> list[tuple[str, str]]:
    """(claimer, outcome) of the link's access log, oldest first."""
    async with app.app.sessionmaker() as session:
        link = await session.scalar(select(VaultLink).where(VaultLink.code_hash == hash_code(code)))
        rows = await session.scalars(
            select(VaultClaim).where(VaultClaim.link_id == link.id).order_by(VaultClaim.id)
        )
        return [(row.claimer_id, row.outcome) for row in rows]


def uploads(app: Harness, method: str) -> list:
    return [c for c in app.tg.calls(method) if c.files]


async def test_first_claim_of_a_restored_item_is_uploaded_through_the_outbox(app: Harness) -> None:
    """No file_id yet: the sender uploads the bytes (paced, after a 429), protect_content and
    auto-delete hold, the new file_id is cached and the next claimer gets it by file_id."""
    item = await ingest_without_file_id(app, "video", b"\x00\x00\x00\x18ftypmp42" * 300, "v.mp4")
    code = await new_link(app, item.id, protect_content=True, auto_delete_seconds=600)
    app.tg.fail_next("sendVideo", 429, retry_after=1)
    since = app.tg.mark()
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    got = await app.tg.wait_for_message(STRANGER, "Here is your file", timeout=15, since=since)
    assert "video" in got and got["has_protected_content"] is True
    assert [c.status for c in uploads(app, "sendVideo")] == [429, 200]
    assert app.app.sender.upload_count == 2 and app.app.sender.retry_after_count >= 1
    cached = await cached_file_id(app, item.id)
    assert cached == got["video"]["file_id"]
    job = await wait_delete_job(app)
    assert job.payload == {"chat_id": STRANGER, "message_id": got["message_id"]}
    # another person: by the cached file_id, no bytes sent again
    since = app.tg.mark()
    await app.tg.send_text(app.user(VIEWER), f"/start {code}")
    second = await app.tg.wait_for_message(VIEWER, "Here is your file", timeout=15, since=since)
    assert second["video"]["file_id"] == cached
    assert len(uploads(app, "sendVideo")) == 2
    app.clock.advance(601)
    await app.tg.wait_until(
        lambda: any(
            m["message_id"] == got["message_id"] for m in app.tg.deleted_messages(STRANGER)
        ),
        timeout=15,
        what="auto-delete of the uploaded file",
    )


async def test_missing_blob_tells_the_claimer_and_keeps_the_use(app: Harness) -> None:
    """The stored copy is gone: the claimer is told, nothing is sent; once the bytes are back,
    claiming again delivers without spending a second use (DESIGN §4)."""
    data = b"%PDF-1.4 restored later " * 40
    item = await ingest_without_file_id(app, "document", data, "r.pdf")
    code = await new_link(app, item.id, uses=1)
    await app.app.blobs.delete(item.blob_key)
    told = await app.say(STRANGER, f"/start {code}", "stored copy is unavailable")
    assert "will not use up another download" in told["text"]
    await wait_idle(app.app.sessionmaker, within=15)
    assert files_sent(app, STRANGER) == [] and app.tg.calls("sendDocument") == []
    assert await used_count(app, code) == 1
    assert await access_log(app, code) == [
        (str(STRANGER), "delivered"),
        (str(STRANGER), "undelivered:source"),
    ]
    # somebody else cannot take the use meanwhile
    assert "used as many times" in (await app.say(VIEWER, f"/start {code}"))["text"]
    await app.app.blobs.put_bytes(data)  # the bytes are restored (same content, same key)
    since = app.tg.mark()
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    again = await app.tg.wait_for_message(STRANGER, "again", timeout=15, since=since)
    assert "document" in again
    assert await used_count(app, code) == 1
    assert (await access_log(app, code))[-1] == (str(STRANGER), "redelivered")


async def test_a_delivery_to_someone_who_blocked_the_bot_is_logged_as_not_delivered(
    app: Harness,
) -> None:
    """The claim spends the use and queues the file; the send then fails for good (403). The
    access log says so after the `delivered` row, the operator's card reads it in plain words,
    and the use stays the claimer's: unblocked, they get the file again without spending one."""
    card = await upload(app, OPERATOR, "document", b"%PDF-1.4 blocked", file_name="b.pdf")
    code, _, _ = await make_link(app, card, uses="1")
    app.tg.block(STRANGER)
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    await app.tg.wait_for("sendDocument", lambda c: str(c.params.get("chat_id")) == str(STRANGER))
    await wait_idle(app.app.sessionmaker, within=15)
    assert await access_log(app, code) == [
        (str(STRANGER), "delivered"),
        (str(STRANGER), "undelivered:unreachable"),
    ]
    opened = await app.say(OPERATOR, "/vault", "Vault")
    await app.press(OPERATOR, opened, app.button(opened, "#"))
    shown = await app.becomes(opened, lambda m: "Recent access" in m["text"])
    assert "not delivered: they blocked the bot or left the chat" in shown["text"], shown["text"]

    app.tg.block(STRANGER, blocked=False)
    again = await app.say(STRANGER, f"/start {code}", "again")
    assert "document" in again and await used_count(app, code) == 1


async def test_an_unreadable_stored_copy_alerts_the_operators_once(app: Harness) -> None:
    """Two people claim a file whose stored copy is gone: both are told and keep their use;
    every operator who takes notifications hears of it once, not once per claim."""
    item = await ingest_without_file_id(app, "document", b"%PDF-1.4 lost " * 30, "lost.pdf")
    code = await new_link(app, item.id, uses=5)
    await app.app.blobs.delete(item.blob_key)
    for who in (STRANGER, VIEWER):
        await app.say(who, f"/start {code}", "stored copy is unavailable")
    await wait_idle(app.app.sessionmaker, within=15)
    for operator in (OWNER, OPERATOR):
        alerts = [
            m
            for m in app.tg.messages(operator)
            if f"File #{item.id} could not be sent" in m.get("text", "")
        ]
        assert len(alerts) == 1, app.tg.messages(operator)
        assert "VAULT_STORAGE_URL" in alerts[0]["text"]
    assert [outcome for _, outcome in await access_log(app, code)] == [
        "delivered",
        "undelivered:source",
        "delivered",
        "undelivered:source",
    ]


async def test_concurrent_claims_of_a_new_item_upload_it_once(app: Harness) -> None:
    item = await ingest_without_file_id(app, "document", b"%PDF-1.4 wanted " * 500, "w.pdf")
    code = await new_link(app, item.id, uses=10)
    people = list(range(5101, 5107))
    for uid in people:
        app.users[uid] = app.tg.user(uid, f"U{uid}")
    await asyncio.gather(*(app.tg.send_text(app.user(uid), f"/start {code}") for uid in people))
    await app.tg.wait_until(
        lambda: all(files_sent(app, uid) for uid in people), timeout=20, what="every file"
    )
    await wait_idle(app.app.sessionmaker, within=15)
    assert len(uploads(app, "sendDocument")) == 1
    assert all(len(files_sent(app, uid)) == 1 for uid in people)


async def test_send_to_me_uploads_through_the_outbox_or_says_why_not(app: Harness) -> None:
    data = b"to myself " * 50
    card = await upload(app, OPERATOR, "document", data, file_name="me.txt")
    item_id = int(re.search(r"file #(\d+)", card["text"]).group(1))
    async with app.app.sessionmaker() as session:  # as a restore leaves it: no file_id
        restored = await session.get(VaultItem, item_id)
        restored.tg_file_id = restored.tg_file_unique_id = None
        await session.commit()
    since = app.tg.mark()
    await app.press(OPERATOR, card, app.button(card, "Send to me"))
    await app.tg.wait_until(
        lambda: any(m["message_id"] > card["message_id"] for m in files_sent(app, OPERATOR)),
        timeout=15,
        what="the file",
    )
    (call,) = [c for c in uploads(app, "sendDocument") if c.at >= app.tg.requests[since].at]
    assert next(iter(call.files.values())).data == data
    assert await cached_file_id(app, item_id) == call.result["document"]["file_id"]
    # the bytes go missing and Telegram forgets the file: the operator is told
    async with app.app.sessionmaker() as session:
        gone = await session.get(VaultItem, item_id)
        blob_key, gone.tg_file_id = gone.blob_key, None
        await session.commit()
    await app.app.blobs.delete(blob_key)
    await app.press(OPERATOR, card, app.button(card, "Send to me"))
    told = await app.tg.wait_for_message(OPERATOR, "could not be sent", timeout=15)
    assert f"File #{item_id}" in told["text"] and "missing or unreadable" in told["text"]
