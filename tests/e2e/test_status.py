"""/status through the fake Telegram server: content, Refresh in place, who may read it."""

from __future__ import annotations

from datetime import timedelta

from storage.backup_models import BackupRun
from storage.reddit_models import RedditAccount, RedditPost
from storage.vault_models import VaultItem, VaultLink
from tests.e2e.conftest import OPERATOR, OWNER, STRANGER, VIEWER, Harness


async def seed(app: Harness) -> None:
    """Two live vault items (3,000 bytes), a deleted one, one usable link and one expired;
    two Reddit accounts (active, suspended), a queued post and a published one; one backup."""
    tid = (await app.actor(OWNER)).tenant_id
    now = app.clock.now()
    async with app.app.sessionmaker() as session:
        items = [
            VaultItem(tenant_id=tid, mime="application/pdf", kind="document", name=f"{n}.pdf",
                      size=size, created_at=now, deleted_at=deleted)
            for n, size, deleted in (("a", 1000, None), ("b", 2000, None), ("c", 5000, now))
        ]  # fmt: skip
        session.add_all(items)
        await session.flush()
        session.add_all(
            [
                VaultLink(tenant_id=tid, item_id=items[0].id, code_hash="1" * 64, max_uses=5,
                          expires_at=now + timedelta(days=1), created_at=now),
                VaultLink(tenant_id=tid, item_id=items[1].id, code_hash="2" * 64, max_uses=5,
                          expires_at=now - timedelta(days=1), created_at=now),
            ]
        )  # fmt: skip
        accounts = [
            RedditAccount(tenant_id=tid, username=name, username_key=name, auth_kind="none",
                          status=status, created_at=now, updated_at=now)
            for name, status in (("team_main", "active"), ("team_alt", "suspended"))
        ]  # fmt: skip
        session.add_all(accounts)
        await session.flush()
        for title, status in (("Launch day notes", "queued"), ("Old news", "published")):
            session.add(
                RedditPost(tenant_id=tid, account_id=accounts[0].id, subreddit="opsdeck_test",
                           subreddit_key="opsdeck_test", kind="self", title=title,
                           scheduled_for=now + timedelta(hours=2), status=status,
                           created_at=now, updated_at=now)
            )  # fmt: skip
        session.add(
            BackupRun(ok=True, integrity="ok", started_at=now, finished_at=now, file_name="x.db")
        )
        await session.commit()


async def test_status_shows_the_numbers_the_test_created(app: Harness) -> None:
    # two jobs wait for approval, one succeeds, three wait in a paused queue
    for _ in range(2):
        await app.submit_job("test.ok", requires_approval=True)
    done = await app.submit_job("test.ok")
    await app.wait_job(done, "succeeded")
    await app.say(OPERATOR, "/queue pause", "Queue paused")
    for _ in range(3):
        await app.submit_job("test.ok")
    await seed(app)
    app.clock.advance(timedelta(minutes=7))

    msg = await app.say(OWNER, "/status", "Opsdeck status")  # a deployment owner: all parts
    text = msg["text"]
    assert "Scheduler: ⏸ paused" in text
    assert "pending approval 2" in text and "queued 3" in text and "succeeded 1" in text
    assert "Oldest queued job waiting: 7m" in text
    assert "Accounts: active 1 · suspended 1" in text
    assert "r/opsdeck_test · u/team_main · Launch day notes" in text and "Old news" not in text
    assert "Vault: 2 items · 2.9 KB · 1 active links" in text
    assert "Last backup: 7m ago · ✅ copy checked" in text
    assert "Telegram: long polling" in text
    assert "Opsdeck " in text and "SQLite" in text and "up 7m" in text
    assert "Refresh" in app.buttons_text(msg)


async def test_refresh_edits_the_same_message(app: Harness) -> None:
    msg = await app.say(OWNER, "/status", "Opsdeck status")
    assert "Scheduler: ▶️ running" in msg["text"]
    assert "queued" not in msg["text"].split("Jobs:")[1].split("\n")[0]
    await app.say(OWNER, "/queue pause", "Queue paused")
    await app.submit_job("test.ok")
    answer = await app.press(OWNER, msg, app.button(msg, "Refresh"))
    assert answer["text"] == "Refreshed."
    edited = await app.becomes(msg, lambda m: "queued 1" in m["text"])
    assert "Scheduler: ⏸ paused" in edited["text"]
    assert edited["message_id"] == msg["message_id"]
    assert "Refresh" in app.buttons_text(edited)


async def test_viewer_reads_status_and_a_stranger_does_not(app: Harness) -> None:
    msg = await app.say(VIEWER, "/status", "Opsdeck status")
    assert "Refresh" in app.buttons_text(msg)
    answer = await app.press(VIEWER, msg, app.button(msg, "Refresh"))
    assert answer["text"] == "Refreshed."
    refusal = await app.say(STRANGER, "/status")
    assert "private operations bot" in refusal["text"]


async def test_webhook_health_comes_from_get_webhook_info(start_app) -> None:
    app = await start_app(webhook=True)
    msg = await app.say(OWNER, "/status", "Opsdeck status")
    assert "Telegram: webhook · 0 pending · no errors" in msg["text"]


async def test_empty_workspace_says_so_honestly(app: Harness) -> None:
    msg = await app.say(OWNER, "/status", "Opsdeck status")
    text = msg["text"]
    assert "Accounts: none" in text and "Next posts: none scheduled" in text
    assert "Vault: 0 items · 0 bytes · 0 active links" in text
    assert "Backups: no backups yet" in text
    assert "Oldest queued job" not in text


async def test_deployment_wide_parts_are_for_deployment_owners_only(start_app) -> None:
    app = await start_app(webhook=True)
    await seed(app)
    other = 4001
    await app.say(OWNER, f"/tenants add other {other}", "created")
    app.users[other] = app.tg.user(other, "Otto")
    for user in (other, OPERATOR, VIEWER):
        text = (await app.say(user, "/status", "Opsdeck status"))["text"]
        for hidden in ("backup ago", "Last backup", "Telegram: webhook", "SQLite", " up "):
            assert hidden not in text, (user, hidden)
        assert "deployment's: its owners (OPSDECK_OWNER_IDS) see them" in text
    # the other workspace sees its own (empty) workspace, not the seeded one
    text = (await app.say(other, "/status", "Opsdeck status"))["text"]
    assert "Vault: 0 items" in text and "team_main" not in text
    owner = (await app.say(OWNER, "/status", "Opsdeck status"))["text"]
    assert "Last backup" in owner and "Telegram: webhook" in owner and "SQLite" in owner
