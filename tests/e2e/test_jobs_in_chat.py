"""Steering jobs from chat through the fake Telegram server."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from bot.callbacks import JobAct
from tests.e2e.conftest import OPERATOR, OWNER, VIEWER, Harness


async def open_card(app: Harness, user_id: int, job_id: int, status: str = "all") -> dict:
    listing = await app.say(user_id, f"/jobs {status}", "Jobs")
    await app.press(user_id, listing, app.button(listing, f"#{job_id}"))
    return await app.becomes(listing, lambda m: f"Job #{job_id}" in m["text"])


async def test_approve_by_button_runs_the_job_and_edits_the_card(app: Harness) -> None:
    job_id = await app.submit_job("test.ok", requires_approval=True)
    # every operator who wants notifications was sent a card with the approval buttons
    note = await app.tg.wait_for_message(OPERATOR, "waits for approval")
    assert "Approve" in app.buttons_text(note) and "Reject" in app.buttons_text(note)
    viewer_note = await app.tg.wait_for_message(VIEWER, "waits for approval")
    assert "Approve" not in app.buttons_text(viewer_note)  # viewers see no mutating buttons
    answer = await app.press(OPERATOR, note, app.button(note, "Approve"))
    assert answer["text"] == f"Job #{job_id} approved."
    card = await app.becomes(note, lambda m: "Approve" not in app.buttons_text(m))
    assert "pending approval" not in card["text"]
    job = await app.wait_job(job_id, "succeeded")
    assert job.approved_by == OPERATOR


async def test_double_press_changes_nothing_and_says_who(app: Harness) -> None:
    job_id = await app.submit_job("test.ok", requires_approval=True)
    note = await app.tg.wait_for_message(OPERATOR, "waits for approval")
    other = await app.tg.wait_for_message(OWNER, "waits for approval")
    approve = app.button(note, "Approve")
    assert (await app.press(OPERATOR, note, approve))["text"] == f"Job #{job_id} approved."
    # the owner presses Approve on their own (now stale) copy of the card
    stale = await app.press(OWNER, other, app.button(other, "Approve"))
    assert "already approved by Oscar" in stale["text"] and stale["show_alert"]
    # the stale card was refreshed to the current state, without the Approve button
    refreshed = await app.becomes(other, lambda m: "Approve" not in app.buttons_text(m))
    assert f"Job #{job_id}" in refreshed["text"]
    from sqlalchemy import func, select

    from storage.models import AuditEntry

    async with app.app.sessionmaker() as session:
        n = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "job.approve", AuditEntry.target == f"job:{job_id}")
        )
    assert n == 1


async def test_viewer_pressing_a_mutating_button_is_refused(app: Harness) -> None:
    job_id = await app.submit_job("test.ok", requires_approval=True)
    card = await open_card(app, VIEWER, job_id, "pending")
    assert "Approve" not in app.buttons_text(card)
    answer = await app.forge(VIEWER, card, JobAct(act="approve", id=job_id).pack())
    assert "cannot approve jobs" in answer["text"]
    assert (await app.job(job_id)).status == "pending_approval"


async def test_dead_job_notifies_and_retry_now_runs_it_again(app: Harness) -> None:
    job_id = await app.submit_job("test.boom", max_attempts=1)
    note = await app.tg.wait_for_message(OPERATOR, "job died", timeout=10)
    assert f"Job #{job_id}" in note["text"] and "the widget exploded" in note["text"]
    assert "Retry now" in app.buttons_text(note) and "Details" in app.buttons_text(note)
    # Details shows the whole error
    await app.press(OPERATOR, note, app.button(note, "Details"))
    detailed = await app.becomes(note, lambda m: "x" * 250 in m["text"])
    assert "Details" not in app.buttons_text(detailed)
    since = app.tg.mark()
    answer = await app.press(OPERATOR, detailed, app.button(detailed, "Retry now"))
    assert answer["text"] == f"Job #{job_id} queued to run now."
    # it dies again (the handler always fails) and the operators are told again
    await app.tg.wait_for_message(OPERATOR, "job died", since=since, timeout=10)
    job = await app.job(job_id)
    assert job.status == "dead" and job.attempts == 1
    # pressing Retry on the first card again works (the job is dead again), but a press
    # on a job that is not failed/dead says so
    ok_id = await app.submit_job("test.ok", requires_approval=True)
    card = await open_card(app, OPERATOR, ok_id, "pending")
    stale = await app.forge(OPERATOR, card, JobAct(act="retry", id=ok_id).pack())
    assert "nothing changed" in stale["text"] or "pending approval" in stale["text"]


async def test_cancel_queued_job_and_reject(app: Harness) -> None:
    future = app.clock.now().replace(year=app.clock.now().year + 1)
    job_id = await app.submit_job("test.ok", run_at=future)
    card = await open_card(app, OPERATOR, job_id, "queued")
    answer = await app.press(OPERATOR, card, app.button(card, "Cancel"))
    assert answer["text"] == f"Job #{job_id} cancelled."
    card = await app.becomes(card, lambda m: "cancelled" in m["text"])
    assert "Cancel" not in app.buttons_text(card)
    again = await app.forge(OPERATOR, card, JobAct(act="cancel", id=job_id).pack())
    assert "already cancelled by you" in again["text"]
    pending = await app.submit_job("test.ok", requires_approval=True)
    card2 = await open_card(app, OWNER, pending, "pending")
    assert (await app.press(OWNER, card2, app.button(card2, "Reject")))[
        "text"
    ] == f"Job #{pending} rejected."
    assert (await app.job(pending)).status == "cancelled"


async def test_retry_all_behind_a_confirmation(app: Harness) -> None:
    ids = [await app.submit_job("test.boom", max_attempts=1) for _ in range(3)]
    for job_id in ids:
        await app.wait_job(job_id, "dead")
    listing = await app.say(OPERATOR, "/jobs failed", "Jobs")
    assert "3 failed or dead" in listing["text"]
    await app.press(OPERATOR, listing, app.button(listing, "Retry all (3)"))
    confirm = await app.becomes(listing, lambda m: "Retry all" in m["text"] and "?" in m["text"])
    no = await app.press(OPERATOR, confirm, app.button(confirm, "No"))
    assert no["text"] == "Nothing retried."
    listing = await app.say(OPERATOR, "/jobs failed", "Jobs")
    await app.press(OPERATOR, listing, app.button(listing, "Retry all (3)"))
    confirm = await app.becomes(listing, lambda m: "?" in m["text"])
    yes = await app.press(OPERATOR, confirm, app.button(confirm, "Yes, retry 3"))
    assert yes["text"] == "Retried 3 job(s)."
    audit = await app.say(OWNER, "/audit", "Audit log")
    assert audit["text"].count("job.retry") == 3


async def test_stale_retry_all_with_nothing_failed(app: Harness) -> None:
    from bot.callbacks import RetryAll

    listing = await app.say(OPERATOR, "/jobs failed", "Jobs")
    assert "No jobs match" in listing["text"]
    answer = await app.forge(OPERATOR, listing, RetryAll(step="yes", n=3).pack())
    assert answer["text"] == "Nothing left to retry."
    ask = await app.forge(OPERATOR, listing, RetryAll(step="ask", n=3).pack())
    assert "no failed or dead jobs" in ask["text"]


async def test_jobs_list_paginates(app: Harness) -> None:
    future = app.clock.now().replace(year=app.clock.now().year + 1)
    for _ in range(11):
        await app.submit_job("test.ok", run_at=future)
    listing = await app.say(OPERATOR, "/jobs queued test.ok", "Jobs")
    assert "11 total" in listing["text"] and "page 1/2" in listing["text"]
    await app.press(OPERATOR, listing, app.button(listing, "Older"))
    page2 = await app.becomes(listing, lambda m: "page 2/2" in m["text"])
    assert "Newer" in app.buttons_text(page2)


async def test_queue_pause_and_resume(app: Harness) -> None:
    assert "paused" in (await app.say(OPERATOR, "/queue pause"))["text"]
    assert "already paused" in (await app.say(OPERATOR, "/queue pause"))["text"]
    job_id = await app.submit_job("test.ok")
    await asyncio.sleep(1.0)
    assert (await app.job(job_id)).status == "queued"
    state = await app.say(VIEWER, "/queue", "Queue")
    assert "paused" in state["text"] and "queued: 1" in state["text"]
    assert "cannot pause" in (await app.say(VIEWER, "/queue resume"))["text"]
    assert "resumed" in (await app.say(OPERATOR, "/queue resume"))["text"]
    await app.wait_job(job_id, "succeeded")
    audit = await app.say(OWNER, "/audit", "Audit log")
    assert "queue.pause" in audit["text"] and "queue.resume" in audit["text"]


async def test_telegram_429_is_waited_out_and_not_lost(app: Harness) -> None:
    app.tg.fail_next("sendMessage", error_code=429, retry_after=1)
    reply = await app.say(OPERATOR, "/queue", "Queue", timeout=10)
    assert reply["text"].startswith("Queue")
    statuses = [
        c.status for c in app.tg.calls("sendMessage") if c.params.get("chat_id") == OPERATOR
    ]
    assert 429 in statuses and statuses[-1] == 200


async def test_webhook_secret_and_malformed_body(start_app) -> None:
    app = await start_app(webhook=True)
    info = app.tg.webhook_info()
    assert info["url"].endswith("/telegram/webhook")
    url = info["url"]
    update = {
        "update_id": 999,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": OPERATOR, "type": "private"},
            "from": {"id": OPERATOR, "is_bot": False, "first_name": "Oscar"},
            "text": "/queue",
        },
    }
    async with aiohttp.ClientSession() as http:
        r = await http.post(url, json=update)
        assert r.status == 401
        r = await http.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})
        assert r.status == 401
        r = await http.post(
            url, data=b"{not json", headers={"X-Telegram-Bot-Api-Secret-Token": "e2e-secret-token"}
        )
        assert r.status == 400
        r = await http.post(
            url,
            data=json.dumps([1, 2]),
            headers={"X-Telegram-Bot-Api-Secret-Token": "e2e-secret-token"},
        )
        assert r.status == 400
    # nothing was processed by any of those
    assert not [c for c in app.tg.calls("sendMessage") if c.params.get("chat_id") == OPERATOR]
    # a real delivery through the fake's webhook works end to end
    reply = await app.say(OPERATOR, "/queue", "Queue")
    assert "running" in reply["text"]
    async with aiohttp.ClientSession() as http:
        base = app.app.settings.public_base_url
        assert (await http.get(f"{base}/healthz")).status == 200
        ready = await http.get(f"{base}/readyz")
        assert ready.status == 200 and (await ready.json())["checks"] == {
            "database": "ok",
            "scheduler": "ok",
            "telegram": "ok",
        }
