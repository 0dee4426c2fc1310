"""Charts in chat through the fake Telegram: /stats, /jobs chart and the vault's claims chart
arrive as PNG photos with a text caption and period buttons; every press is re-authorised."""

from __future__ import annotations

import struct
from datetime import timedelta

from bot.callbacks import STALE_BUTTON, ChartAct
from storage.models import Role, Tenant
from storage.reddit_models import RedditAccount, RedditPost
from tests.e2e.conftest import OWNER, STRANGER, VIEWER, Harness

OUTSIDER = 3001  # owner of another workspace


def png_of(app: Harness, message: dict) -> bytes:
    """The bytes the bot uploaded for this photo message."""
    return app.tg.files[message["photo"][-1]["file_id"]].data


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    _, kind, width, height = struct.unpack(">I4sII", png[8:24])
    assert kind == b"IHDR"
    return width, height


async def seed_posts(app: Harness) -> None:
    tid = (await app.actor(OWNER)).tenant_id
    now = app.clock.now()
    async with app.app.sessionmaker() as session:
        account = RedditAccount(tenant_id=tid, username="team_main", username_key="team_main",
                                auth_kind="none", status="active", created_at=now,
                                updated_at=now)  # fmt: skip
        session.add(account)
        await session.flush()
        for days_ago, score in ((0, 40), (2, 2), (12, 500)):
            session.add(
                RedditPost(tenant_id=tid, account_id=account.id, subreddit="opsdeck_test",
                           subreddit_key="opsdeck_test", kind="self", title="t",
                           status="published", published_at=now - timedelta(days=days_ago),
                           score=score, num_comments=3, created_at=now, updated_at=now)
            )  # fmt: skip
        await session.commit()


async def test_stats_sends_a_chart_and_switches_period(app: Harness) -> None:
    await seed_posts(app)
    msg = await app.say(OWNER, "/stats", "Reddit posts")
    assert png_size(png_of(app, msg)) == (1000, 900)
    assert msg["caption"].startswith("Reddit posts, last 7 days: 2 published")
    assert "u/team_main 2" in msg["caption"] and "Score 42, comments 6" in msg["caption"]
    assert app.tg.calls("sendPhoto")

    # a viewer may see it and switch the period: the picture is redrawn in place
    msg = await app.say(VIEWER, "/stats 7d", "Reddit posts")
    week_png = png_of(app, msg)
    answer = await app.press(VIEWER, msg, app.button(msg, "30 days"))
    assert not answer.get("show_alert")
    month = await app.becomes(msg, lambda m: "last 30 days" in m.get("caption", ""))
    assert "3 published" in month["caption"] and "Score 542" in month["caption"]
    assert png_of(app, month) != week_png and png_size(png_of(app, month)) == (1000, 900)
    assert "· 30 days" in app.buttons_text(month)
    assert app.tg.calls("editMessageMedia")


async def test_jobs_chart_and_its_buttons(app: Harness) -> None:
    job = await app.submit_job("test.boom", max_attempts=1)
    await app.wait_job(job, "dead")
    await app.say(OWNER, "/queue pause", "Queue paused")
    await app.submit_job("test.ok")
    msg = await app.say(VIEWER, "/jobs chart", "Job queue")
    assert png_size(png_of(app, msg)) == (1000, 500)
    assert "Waiting or running now: 1" in msg["caption"] and "Failures: 1" in msg["caption"]
    await app.press(VIEWER, msg, app.button(msg, "7 days"))
    week = await app.becomes(msg, lambda m: "last 7 days" in m.get("caption", ""))
    assert "Failures: 1" in week["caption"] and png_size(png_of(app, week)) == (1000, 500)
    # the plain /jobs list is still the jobs router's
    assert "Jobs" in (await app.say(VIEWER, "/jobs"))["text"]


async def test_bad_arguments_strangers_and_forged_buttons(app: Harness) -> None:
    assert "Usage: /stats" in (await app.say(OWNER, "/stats 90d"))["text"]
    assert "Usage: /jobs chart" in (await app.say(OWNER, "/jobs chart 30d"))["text"]
    refusal = await app.say(STRANGER, "/stats")
    assert "private operations bot" in refusal["text"]

    msg = await app.say(OWNER, "/jobs chart", "Job queue")
    # a period no jobs button carries, and data that is no chart button at all
    forged = await app.forge(OWNER, msg, ChartAct(act="jobs", span="30d").pack())
    assert forged["text"] == STALE_BUTTON
    assert (await app.forge(OWNER, msg, "ch:posts:90d"))["text"] == STALE_BUTTON
    # a stranger pressing a real button is refused, and no picture is sent or redrawn
    drawn = len(app.tg.calls("sendPhoto")) + len(app.tg.calls("editMessageMedia"))
    answer = await app.forge(STRANGER, msg, app.button(msg, "7 days"))
    assert answer["text"] and "last 7 days" not in answer["text"]
    assert len(app.tg.calls("sendPhoto")) + len(app.tg.calls("editMessageMedia")) == drawn


async def test_another_workspace_sees_only_its_own_posts(app: Harness) -> None:
    await seed_posts(app)
    async with app.app.sessionmaker() as session:
        other = Tenant(slug="other", name="other", created_at=app.clock.now())
        session.add(other)
        await session.commit()
        other_id = other.id
    await app.add_operator(OUTSIDER, Role.owner, tenant_id=other_id)
    app.users[OUTSIDER] = app.tg.user(OUTSIDER, "Otto")
    msg = await app.say(OUTSIDER, "/stats 30d", "Reddit posts")
    assert "0 published" in msg["caption"] and "team_main" not in msg["caption"]


async def test_vault_stats_has_a_claims_chart_button(app: Harness) -> None:
    stats = await app.say(VIEWER, "/vault stats", "Vault stats")
    since = app.tg.mark()
    await app.press(VIEWER, stats, app.button(stats, "Chart"))
    chart = await app.tg.wait_for_message(VIEWER, "Vault claims", since=since)
    assert chart["caption"].startswith("Vault claims, last 7 days: 0 delivered")
    assert png_size(png_of(app, chart)) == (1000, 500)
    assert "Vault stats" in app.current(VIEWER, stats["message_id"])["text"]  # kept
    await app.press(VIEWER, chart, app.button(chart, "30 days"))
    month = await app.becomes(chart, lambda m: "last 30 days" in m.get("caption", ""))
    assert png_size(png_of(app, month)) == (1000, 500)
