"""Notifications leave through the outbox: durable rows, paced sends, 429 honoured."""

from __future__ import annotations

from sqlalchemy import select

from bot.outbox import wait_idle
from storage.outbox_models import OutboxMessage, OutboxStatus
from tests.e2e.conftest import OPERATOR, OWNER, Harness


async def test_dead_job_alert_goes_through_the_outbox_despite_a_429(app: Harness) -> None:
    app.tg.fail_next("sendMessage", 429, retry_after=1)
    job_id = await app.submit_job("test.boom", max_attempts=1)
    await app.wait_job(job_id, "dead")
    for chat in (OWNER, OPERATOR):
        await app.tg.wait_for_message(chat, "job died", timeout=10)
    await wait_idle(app.app.sessionmaker)
    async with app.app.sessionmaker() as session:
        rows = (await session.scalars(select(OutboxMessage))).all()
    by_chat = {r.chat_id: r for r in rows}
    assert {OWNER, OPERATOR} <= set(by_chat)
    assert all(r.status == OutboxStatus.sent and r.result_message_id for r in rows)
    assert app.tg.rate_limited_count == 0 and app.app.sender.retry_after_count == 1
    # the alert carries the job card's buttons, stored as JSON and rebuilt by the sender
    alert = await app.tg.wait_for_message(OPERATOR, "job died")
    assert app.tg.buttons(alert)
