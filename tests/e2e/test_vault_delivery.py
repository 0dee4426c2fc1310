"""Claimed files go out through the outbox: paced under enforced limits, 429s waited out,
one send per double tap, auto-delete still scheduled (by the outbox hook)."""

from __future__ import annotations

from sqlalchemy import select

from bot.outbox import wait_idle
from storage.outbox_models import OutboxMessage
from tests.e2e.conftest import OPERATOR, STRANGER, VIEWER, Harness
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
    rows = await _outbox_rows(app)
    assert [(r.status, r.dedupe_key.rsplit(":", 1)[1]) for r in rows] == [("sent", "0")]
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
