"""Connecting and steering Reddit accounts in chat: the fake Telegram and the fake Reddit, both
over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.callbacks import RedditAccountAct
from core.settings import RedditSettings
from storage.repositories import reddit as reddit_repo
from tests.e2e.conftest import OPERATOR, OWNER, VIEWER, Harness
from tests.fakes.reddit import FakeReddit

CLIENT_ID, CLIENT_SECRET, PASSWORD = "opsdeckapp01", "app-secret-xyz", "hunter2-pass"


@pytest.fixture
async def reddit() -> AsyncIterator[FakeReddit]:
    async with FakeReddit() as fake:
        yield fake


@pytest.fixture
async def rapp(start_app, reddit: FakeReddit) -> Harness:
    settings = RedditSettings(_env_file=None, oauth_url=reddit.oauth_url, www_url=reddit.www_url)
    return await start_app(reddit=settings)


async def connect(
    app: Harness, user: int, username: str, password: str = PASSWORD, secret=CLIENT_SECRET
) -> dict:
    """Walk /accounts add with a script app; return the final card message."""
    await app.say(user, "/accounts add", "Which username")
    kinds = await app.say(user, f"u/{username}", "how does Opsdeck log in")
    await app.press(user, kinds, app.button(kinds, "Script app"))
    await app.tg.wait_for_message(user, "app id")
    await app.say(user, CLIENT_ID, "app secret")
    await app.say(user, secret, "password")
    return await app.say(user, password, "Connected")


async def account_id(app: Harness, username: str) -> int:
    async with app.app.sessionmaker() as session:
        owner = await app.actor(OWNER)
        account = await reddit_repo.account_by_username(session, owner.tenant_id, username)
        assert account is not None
        return account.id


async def test_connect_deletes_secret_messages_and_masks_them(
    rapp: Harness, reddit: FakeReddit
) -> None:
    reddit.add_account("team_main", PASSWORD, CLIENT_ID, CLIENT_SECRET, link_karma=42)
    card = await connect(rapp, OPERATOR, "team_main")
    assert "u/team_main" in card["text"]
    assert PASSWORD not in card["text"] and CLIENT_SECRET not in card["text"]
    deleted = [m.get("text") for m in rapp.tg.deleted_messages(OPERATOR)]
    assert CLIENT_SECRET in deleted and PASSWORD in deleted
    assert len(rapp.tg.calls("deleteMessage")) >= 2
    await rapp.tg.wait_for_message(OPERATOR, "deleted your message")
    # the queued health check reads /api/v1/me and stores the karma
    aid = await account_id(rapp, "team_main")
    listing = await rapp.say(OPERATOR, "/accounts", "Reddit accounts")
    await rapp.tg.wait_until(lambda: bool(reddit.requests_to("/api/v1/me")), timeout=10)
    for _ in range(50):  # the check runs in the background: open the card until it shows
        await rapp.forge(OPERATOR, listing, RedditAccountAct(act="card", id=aid).pack())
        shown = rapp.current(listing["chat"]["id"], listing["message_id"])
        if "42 link" in shown["text"]:
            break
        await asyncio.sleep(0.1)
    assert "42 link" in shown["text"] and "active" in shown["text"]


async def test_bad_input_is_asked_again_and_cancel_aborts(rapp: Harness) -> None:
    await rapp.say(OPERATOR, "/accounts add", "Which username")
    answer = await rapp.say(OPERATOR, "not a valid name!!")
    assert "3–20 letters" in answer["text"]
    kinds = await rapp.say(OPERATOR, "team_two", "how does Opsdeck log in")
    await rapp.press(OPERATOR, kinds, rapp.button(kinds, "Script app"))
    await rapp.tg.wait_for_message(OPERATOR, "app id")
    bad = await rapp.say(OPERATOR, "no way", "does not look like a Reddit app id")
    assert bad
    await rapp.say(OPERATOR, "/cancel", "nothing was connected")
    listing = await rapp.say(OPERATOR, "/accounts", "Reddit accounts")
    assert "None connected" in listing["text"]


async def test_wrong_password_marks_auth_failed_and_tells_operators(
    rapp: Harness, reddit: FakeReddit
) -> None:
    reddit.add_account("team_bad", PASSWORD, CLIENT_ID, CLIENT_SECRET)
    await connect(rapp, OPERATOR, "team_bad", password="wrong-password")
    note = await rapp.tg.wait_for_message(OWNER, "refused the login", timeout=10)
    assert "u/team_bad" in note["text"]
    listing = await rapp.say(OPERATOR, "/accounts", "Reddit accounts")
    assert "auth failed" in listing["text"]


async def test_suspended_account_is_paused(rapp: Harness, reddit: FakeReddit) -> None:
    reddit.add_account("team_gone", PASSWORD, CLIENT_ID, CLIENT_SECRET, suspended=True)
    await connect(rapp, OPERATOR, "team_gone")
    note = await rapp.tg.wait_for_message(OPERATOR, "is suspended", timeout=10)
    assert "paused" in note["text"]


async def test_card_buttons_pause_resume_remove_and_roles(rapp: Harness) -> None:
    # dry-run account: no credentials, nothing is sent to Reddit
    await rapp.say(OPERATOR, "/accounts add", "Which username")
    kinds = await rapp.say(OPERATOR, "team_dry", "how does Opsdeck log in")
    await rapp.press(OPERATOR, kinds, rapp.button(kinds, "Dry run"))
    card = await rapp.tg.wait_for_message(OPERATOR, "dry-run mode")
    aid = await account_id(rapp, "team_dry")
    assert (await rapp.press(OPERATOR, card, rapp.button(card, "Pause")))["text"].endswith(
        "queued posts wait."
    )
    card = await rapp.becomes(card, lambda m: "Resume" in rapp.buttons_text(m))
    assert "paused" in card["text"]
    # the stale Pause press is answered clearly
    stale = await rapp.forge(OPERATOR, card, RedditAccountAct(act="pause", id=aid).pack())
    assert "already paused" in stale["text"]
    await rapp.press(OPERATOR, card, rapp.button(card, "Resume"))
    card = await rapp.becomes(card, lambda m: "Pause" in rapp.buttons_text(m))
    # viewers see the card without buttons and cannot press forged ones
    listing = await rapp.say(VIEWER, "/accounts", "Reddit accounts")
    await rapp.press(VIEWER, listing, rapp.button(listing, "u/team_dry"))
    vcard = await rapp.becomes(listing, lambda m: "Dry run" in m["text"])
    assert "Pause" not in rapp.buttons_text(vcard)
    refused = await rapp.forge(VIEWER, vcard, RedditAccountAct(act="pause", id=aid).pack())
    assert "cannot pause Reddit accounts" in refused["text"]
    # operators cannot remove; the owner can, after confirming
    refused = await rapp.forge(OPERATOR, card, RedditAccountAct(act="remove", id=aid).pack())
    assert "cannot remove" in refused["text"]
    olist = await rapp.say(OWNER, "/accounts", "Reddit accounts")
    await rapp.press(OWNER, olist, rapp.button(olist, "u/team_dry"))
    ocard = await rapp.becomes(olist, lambda m: "Remove" in rapp.buttons_text(m))
    await rapp.press(OWNER, ocard, rapp.button(ocard, "Remove"))
    confirm = await rapp.becomes(ocard, lambda m: "Yes, remove" in rapp.buttons_text(m))
    answer = await rapp.press(OWNER, confirm, rapp.button(confirm, "Yes, remove"))
    assert answer["text"] == "u/team_dry removed."
    # a double press on the (now stale) confirmation
    again = await rapp.forge(OWNER, confirm, RedditAccountAct(act="remove_yes", id=aid).pack())
    assert "does not exist" in again["text"]


async def test_forged_press_for_another_workspace_is_refused(rapp: Harness) -> None:
    from storage.models import Role, Tenant

    await rapp.say(OPERATOR, "/accounts add", "Which username")
    kinds = await rapp.say(OPERATOR, "team_mine", "how does Opsdeck log in")
    await rapp.press(OPERATOR, kinds, rapp.button(kinds, "Dry run"))
    await rapp.tg.wait_for_message(OPERATOR, "dry-run mode")
    aid = await account_id(rapp, "team_mine")
    async with rapp.app.sessionmaker() as session:
        other = Tenant(slug="other", name="Other", created_at=rapp.clock.now())
        session.add(other)
        await session.commit()
        other_id = other.id
    intruder = 3001
    rapp.users[intruder] = rapp.tg.user(intruder, "Ian")
    await rapp.add_operator(intruder, Role.owner, tenant_id=other_id)
    listing = await rapp.say(intruder, "/accounts", "Reddit accounts")
    for act in ("card", "pause", "remove_yes"):
        answer = await rapp.forge(intruder, listing, RedditAccountAct(act=act, id=aid).pack())
        assert "does not exist in your workspace" in answer["text"]


async def dump_database(app: Harness) -> str:
    """Every value of every table, as text: to prove a plaintext appears nowhere."""
    from sqlalchemy import select

    from storage.models import Base

    parts = []
    async with app.app.sessionmaker() as session:
        for table in Base.metadata.tables.values():
            try:
                rows = (await session.execute(select(table))).all()
            except Exception:
                await session.rollback()
                continue
            parts += [repr(tuple(row)) for row in rows]
    return "\n".join(parts)


async def test_secrets_are_never_stored_in_plaintext_not_even_mid_flow(
    rapp: Harness, reddit: FakeReddit
) -> None:
    reddit.add_account("team_safe", PASSWORD, CLIENT_ID, CLIENT_SECRET)
    await rapp.say(OPERATOR, "/accounts add", "Which username")
    kinds = await rapp.say(OPERATOR, "u/team_safe", "how does Opsdeck log in")
    await rapp.press(OPERATOR, kinds, rapp.button(kinds, "Script app"))
    await rapp.tg.wait_for_message(OPERATOR, "app id")
    await rapp.say(OPERATOR, CLIENT_ID, "app secret")
    await rapp.say(OPERATOR, CLIENT_SECRET, "password")
    # between the two secret steps the flow state is in the database: sealed only
    assert CLIENT_SECRET not in await dump_database(rapp)
    await rapp.say(OPERATOR, PASSWORD, "Connected")
    dump = await dump_database(rapp)
    assert CLIENT_SECRET not in dump and PASSWORD not in dump


async def test_backfill_history_from_the_card_edits_one_progress_message(
    rapp: Harness, reddit: FakeReddit
) -> None:
    reddit.add_account("team_hist", PASSWORD, CLIENT_ID, CLIENT_SECRET)
    for i in range(250):  # three pages of 100 with `after` cursors
        reddit.add_post("team_hist", "opsdeck_test", f"Old post {i}", created_utc=1.7e9 + i)
    card = await connect(rapp, OPERATOR, "team_hist")
    since = rapp.tg.mark()
    answer = await rapp.press(OPERATOR, card, rapp.button(card, "Backfill history"))
    assert "queued" in answer["text"]
    note = await rapp.tg.wait_for_message(OPERATOR, "history", since=since, timeout=10)
    done = await rapp.becomes(note, lambda m: "done" in m["text"], timeout=30)
    assert done["text"].endswith("250 posts read, 250 new")
    # one message, edited once per page and once at the end
    edits = [
        c
        for c in rapp.tg.calls("editMessageText")
        if c.params.get("message_id") == note["message_id"]
    ]
    assert len(edits) >= 3 and "100 posts read" in edits[0].params["text"]
    later = [
        m for m in rapp.tg.messages(note["chat"]["id"]) if m["message_id"] > note["message_id"]
    ]
    assert not any("history" in m.get("text", "") for m in later)
    owner = await rapp.actor(OWNER)
    async with rapp.app.sessionmaker() as session:
        imported = await reddit_repo.list_posts(
            session, owner.tenant_id, statuses=("published",), limit=500
        )
    assert len(imported) == 250
    # a second press reads only the newest page: nothing new
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, card, rapp.button(card, "Backfill history"))
    again = await rapp.tg.wait_for_message(OPERATOR, "history", since=since, timeout=10)
    assert again["message_id"] != note["message_id"]
    again = await rapp.becomes(again, lambda m: "done" in m["text"], timeout=30)
    assert again["text"].endswith("0 new")


async def test_removing_an_account_revokes_its_tokens_on_reddit(
    rapp: Harness, reddit: FakeReddit
) -> None:
    """Remove → Yes, remove: the access token the health check was granted is revoked on
    Reddit (HTTP basic auth with the app) before the secrets are deleted; a revocation
    Reddit refuses is reported, and the secrets are deleted all the same."""
    reddit.add_account("team_main", PASSWORD, CLIENT_ID, CLIENT_SECRET)
    reddit.add_account("team_alt", PASSWORD, CLIENT_ID, CLIENT_SECRET)
    for name in ("team_main", "team_alt"):
        since = rapp.tg.mark()
        await rapp.say(OPERATOR, "/accounts add", "Which username")
        kinds = await rapp.say(OPERATOR, f"u/{name}", "how does Opsdeck log in")
        await rapp.press(OPERATOR, kinds, rapp.button(kinds, "Script app"))
        await rapp.tg.wait_for_message(OPERATOR, "The app id", since=since)
        await rapp.say(OPERATOR, CLIENT_ID, "app secret")
        await rapp.say(OPERATOR, CLIENT_SECRET, "password")
        await rapp.say(OPERATOR, PASSWORD, "Connected")
    await rapp.tg.wait_until(lambda: len(reddit.grants) >= 2, 10, "the health checks' logins")
    granted = {g["username"] for g in reddit.grants if g["ok"]}
    assert granted == {"team_main", "team_alt"}

    async def remove(name: str) -> dict:
        listing = await rapp.say(OWNER, "/accounts", "Reddit accounts")
        await rapp.press(OWNER, listing, rapp.button(listing, f"u/{name}"))
        card = await rapp.becomes(listing, lambda m: "Remove" in rapp.buttons_text(m))
        await rapp.press(OWNER, card, rapp.button(card, "Remove"))
        confirm = await rapp.becomes(card, lambda m: "Yes, remove" in rapp.buttons_text(m))
        assert "tokens are revoked on Reddit" in confirm["text"]
        return await rapp.press(OWNER, confirm, rapp.button(confirm, "Yes, remove"))

    answer = await remove("team_main")
    assert answer["text"] == "u/team_main removed; its tokens were revoked on Reddit."
    (revoked,) = reddit.revocations
    assert (revoked["client_id"], revoked["token_type_hint"]) == (CLIENT_ID, "access_token")
    assert not [t for t in reddit._tokens.values() if t.username == "team_main"]

    reddit.queue_error("/api/v1/revoke_token", status=503, times=10)
    answer = await remove("team_alt")
    assert answer["show_alert"]
    assert answer["text"].startswith("u/team_alt removed, but Reddit did not confirm revoking")
    async with rapp.app.sessionmaker() as session:
        owner = await rapp.actor(OWNER)
        assert await reddit_repo.list_accounts(session, owner.tenant_id) == []
