"""The account card's Refresh stats and Inbox buttons, end to end: what the operator reads in
the progress message and the notifications, checked against what the fake Reddit answered
(shapes as in the recorded `/api/info` and `/message/inbox` exchanges); stale presses and
viewers. Fake Telegram and fake Reddit over HTTP."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.callbacks import RedditAccountAct
from storage.models import Job
from storage.reddit_models import RedditInboxMessage
from tests.e2e.conftest import OPERATOR, OWNER, VIEWER, Harness
from tests.e2e.test_reddit_posts import (
    SLOW,
    add_account,
    compose,
    posts_in_db,
    queue_it,
    rapp,
    reddit,
    setup_reddit,
    wait_post,
)
from tests.fakes.reddit import FakeReddit

__all__ = ["rapp", "reddit"]  # fixtures


async def account_card(app: Harness, user: int, username: str = "team_main") -> dict:
    listing = await app.say(user, "/accounts", "Reddit accounts")
    await app.press(user, listing, app.button(listing, f"u/{username}"))
    return await app.becomes(listing, lambda m: "Pacing:" in m["text"])


async def press_backfill(app: Harness, card: dict, button: str, what: str) -> tuple[dict, dict]:
    """Press a backfill button; (the callback answer, the progress message once finished)."""
    since = app.tg.mark()
    answer = await app.press(OPERATOR, card, app.button(card, button))
    note = await app.tg.wait_for_message(OPERATOR, f"{what}: queued", since=since, timeout=SLOW)
    done = await app.becomes(
        note, lambda m: f"{what} done" in m["text"] or "skipped" in m["text"] or "no " in m["text"]
    )
    return answer, done


async def jobs_of_kind(app: Harness, kind: str) -> int:
    async with app.app.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(Job).where(Job.kind == kind))


async def test_refresh_stats_shows_reddits_numbers_and_alerts_a_removal(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    # one post published from chat, one composed and cancelled (never on Reddit)
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Fresh from chat")
    await queue_it(rapp, OPERATOR, card)
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Never sent", when="+3h")
    await queue_it(rapp, OPERATOR, card)
    never = next(p for p in await posts_in_db(rapp) if p.title == "Never sent")
    await rapp.forge(OPERATOR, card, f"rp:cancel:{never.id}")
    await rapp.tg.wait_until(lambda: len(reddit.posts) == 1, SLOW, "the chat post published")
    # and older posts of the account on Reddit, imported with Backfill history
    launch = reddit.add_post("team_main", "opsdeck_test", "Launch notes")
    weekly = reddit.add_post("team_main", "opsdeck_test", "Weekly thread")
    oops = reddit.add_post("team_main", "opsdeck_test", "Oops post")
    card = await account_card(rapp, OPERATOR)
    await press_backfill(rapp, card, "Backfill history", "history")

    fresh = reddit.posts[0]
    reddit.set_post_stats(fresh.fullname, score=5, num_comments=1, upvote_ratio=1.0)
    reddit.set_post_stats(launch.fullname, score=42, num_comments=7, upvote_ratio=0.93)
    reddit.set_post_stats(
        weekly.fullname, score=3, upvote_ratio=0.6, removed_by_category="moderator"
    )
    reddit.set_post_stats(oops.fullname, removed_by_category="deleted")  # its author deleted it

    since = rapp.tg.mark()
    answer, done = await press_backfill(rapp, card, "Refresh stats", "stats")
    assert answer["text"].startswith("u/team_main stats: job #")
    lines = done["text"].splitlines()
    assert lines[0] == "u/team_main stats done: 4 posts from the last 7 days"
    assert set(lines[1:]) == {
        "• r/opsdeck_test “Fresh from chat”: 5 points · 1 comment · 100% upvoted",
        "• r/opsdeck_test “Launch notes”: 42 points · 7 comments · 93% upvoted",
        "• r/opsdeck_test “Weekly thread”: removed by the subreddit's moderators · "
        "3 points · 0 comments · 60% upvoted",
        f"• r/opsdeck_test post {oops.fullname}: deleted on Reddit",
    }
    assert "Never sent" not in done["text"] and "Oops post" not in done["text"]
    # the refresh asked about the four published posts in one call (the cancelled one never;
    # the call before it is the look right after the chat post was submitted)
    info = reddit.requests_to("info")[-1]
    asked = set(info.query["id"].split(","))
    assert asked == {fresh.fullname, launch.fullname, weekly.fullname, oops.fullname}
    alert = await rapp.tg.wait_for_message(OPERATOR, "removed on Reddit", since=since)
    assert alert["text"] == (
        "🚫 1 post of u/team_main was removed on Reddit:\n"
        "• r/opsdeck_test: “Weekly thread” — removed by the subreddit's moderators\n"
        f"  https://www.reddit.com{weekly.permalink}"
    )
    # the deleted post keeps only ids and numbers on our side
    by_name = {p.fullname: p for p in await posts_in_db(rapp) if p.fullname}
    assert by_name[oops.fullname].title == "" and by_name[oops.fullname].content_deleted_at
    assert by_name[launch.fullname].score == 42 and by_name[launch.fullname].num_comments == 7

    # a second press: new numbers, the removal is not announced twice, the deleted post is
    # not asked for again
    reddit.set_post_stats(launch.fullname, score=50)
    since = rapp.tg.mark()
    _, again = await press_backfill(rapp, card, "Refresh stats", "stats")
    assert "“Launch notes”: 50 points" in again["text"]
    assert again["text"].splitlines()[0] == "u/team_main stats done: 3 posts from the last 7 days"
    assert oops.fullname not in reddit.requests_to("info")[-1].query["id"]
    await asyncio.sleep(1)
    alerts = [m for m in rapp.tg.messages(OPERATOR) if "removed on Reddit" in m.get("text", "")]
    assert len(alerts) == 1


async def test_inbox_stores_messages_and_announces_only_new_ones(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    # already read on Reddit before Opsdeck knew the account: stored, not announced
    reddit.add_inbox_message(
        "team_main", author="mod_team", subject="Welcome", body="Thanks for joining", new=False
    )
    reddit.add_inbox_message(
        "team_main",
        kind="t1",
        author="curious_cat",
        body="Where can I get this?",
        subreddit="opsdeck_test",
        link_title="Launch notes",
    )
    card = await account_card(rapp, OPERATOR)
    since = rapp.tg.mark()
    answer, done = await press_backfill(rapp, card, "Inbox", "inbox")
    assert answer["text"].startswith("u/team_main inbox: job #")
    assert done["text"] == "u/team_main inbox done: 2 read, 2 new, 1 announced"
    note = await rapp.tg.wait_for_message(OPERATOR, "📬", since=since)
    assert note["text"] == (
        "📬 u/team_main has 1 new message:\n"
        "• u/curious_cat replied in r/opsdeck_test: Where can I get this?"
    )
    # a new private message arrives; the next press announces that one only
    reddit.add_inbox_message(
        "team_main", author="partner_co", subject="Collab?", body="Would you like to team up"
    )
    since = rapp.tg.mark()
    _, done = await press_backfill(rapp, card, "Inbox", "inbox")
    assert done["text"].endswith(", 1 new, 1 announced")
    note = await rapp.tg.wait_for_message(OPERATOR, "📬", since=since)
    assert note["text"] == (
        "📬 u/team_main has 1 new message:\n• u/partner_co: “Collab?” — Would you like to team up"
    )
    # nothing new: no announcement at all
    since = rapp.tg.mark()
    _, done = await press_backfill(rapp, card, "Inbox", "inbox")
    assert done["text"].endswith(", 0 new")
    await asyncio.sleep(1)
    assert sum("📬" in m.get("text", "") for m in rapp.tg.messages(OPERATOR)) == 2
    async with rapp.app.sessionmaker() as session:
        stored = (await session.scalars(select(RedditInboxMessage))).all()
    assert sorted(m.author for m in stored) == ["curious_cat", "mod_team", "partner_co"]


async def test_viewers_are_refused_and_no_job_runs(rapp: Harness, reddit: FakeReddit) -> None:
    setup_reddit(reddit, "opsdeck_test")
    account_id = await add_account(rapp, "team_main")
    card = await account_card(rapp, VIEWER)
    for button in ("Refresh stats", "Inbox", "Backfill history"):
        assert button not in rapp.buttons_text(card)
    for act in ("stats", "inbox", "backfill"):
        refused = await rapp.forge(VIEWER, card, RedditAccountAct(act=act, id=account_id).pack())
        assert refused["text"] == "Your role (viewer) cannot run Reddit backfills; ask an owner."
        assert refused.get("show_alert") is True
    await asyncio.sleep(0.5)
    assert await jobs_of_kind(rapp, "reddit.refresh_stats") == 0
    assert await jobs_of_kind(rapp, "reddit.inbox") == 0
    assert not reddit.requests_to("info") and not reddit.requests_to("inbox")


async def test_stale_presses_say_why_and_change_nothing(rapp: Harness, reddit: FakeReddit) -> None:
    setup_reddit(reddit, "opsdeck_test")
    account_id = await add_account(rapp, "team_main")
    await add_account(rapp, "team_dry", dry_run=True)
    owner = await rapp.actor(OWNER)

    # a dry-run account has nothing on Reddit: the progress message says so
    dry_card = await account_card(rapp, OPERATOR, "team_dry")
    _, done = await press_backfill(rapp, dry_card, "Refresh stats", "stats")
    assert done["text"] == (
        "u/team_dry stats: skipped, a dry-run account without credentials has nothing on Reddit."
    )

    # queued, then the account is removed before it runs: the message does not stay "queued…"
    card = await account_card(rapp, OPERATOR)
    await rapp.say(OPERATOR, "/queue pause", "Queue paused")
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, card, rapp.button(card, "Inbox"))
    note = await rapp.tg.wait_for_message(OPERATOR, "inbox: queued", since=since)
    await rapp.app.services.reddit_accounts.remove(owner, account_id)
    await rapp.say(OPERATOR, "/queue resume", "Queue resumed")
    done = await rapp.becomes(note, lambda m: "skipped" in m["text"])
    assert done["text"] == f"Reddit account #{account_id} inbox: skipped, the account was removed."
    assert not reddit.requests_to("inbox")

    # the card still on screen: its buttons answer that the account is gone, and queue nothing
    before = await jobs_of_kind(rapp, "reddit.refresh_stats")
    for button in ("Refresh stats", "Inbox"):
        stale = await rapp.press(OPERATOR, card, rapp.button(card, button))
        assert stale["text"] == f"Reddit account #{account_id} does not exist in your workspace."
    assert await jobs_of_kind(rapp, "reddit.refresh_stats") == before
    assert not reddit.requests_to("info")


async def test_stats_with_nothing_published_says_so(rapp: Harness, reddit: FakeReddit) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    old = reddit.add_post(
        "team_main", "opsdeck_test", "Last year", created_utc=time.time() - 86400 * 30
    )
    card = await account_card(rapp, OPERATOR)
    await press_backfill(rapp, card, "Backfill history", "history")
    _, done = await press_backfill(rapp, card, "Refresh stats", "stats")
    assert done["text"] == "u/team_main stats: no published posts from the last 7 days to refresh."
    assert not reddit.requests_to("info")
    imported = [p for p in await posts_in_db(rapp) if p.fullname == old.fullname]
    assert len(imported) == 1  # it is known, only older than the window


async def test_reddit_down_is_said_in_the_progress_message_and_the_retry_finishes(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    reddit.add_inbox_message("team_main", author="partner_co", subject="Hi", body="Hello there")
    # every try of the first run gets a 503 (the client retries once in these tests)
    reddit.queue_error("inbox", status=503, times=2)
    card = await account_card(rapp, OPERATOR)
    since = rapp.tg.mark()
    answer = await rapp.press(OPERATOR, card, rapp.button(card, "Inbox"))
    job_id = int(re.search(r"job #(\d+)", answer["text"]).group(1))
    note = await rapp.tg.wait_for_message(OPERATOR, "inbox: queued", since=since, timeout=SLOW)
    stopped = await rapp.becomes(note, lambda m: "stopped" in m["text"], timeout=SLOW)
    assert stopped["text"] == (
        "u/team_main inbox: stopped, Reddit answered HTTP 503 to GET /message/inbox; "
        "it is tried again shortly."
    )
    # the job engine's retry (after its backoff) reads the inbox and edits the same message
    await rapp.wait_job(job_id, "failed")
    rapp.clock.advance(timedelta(minutes=5))
    done = await rapp.becomes(note, lambda m: "done" in m["text"], timeout=SLOW)
    assert done["text"] == "u/team_main inbox done: 1 read, 1 new, 1 announced"
    await rapp.tg.wait_for_message(OPERATOR, "📬 u/team_main has 1 new message", since=since)


async def test_a_subreddit_going_private_and_coming_back(rapp: Harness, reddit: FakeReddit) -> None:
    """Reddit leaves a private subreddit's posts out of /api/info: the post is "not visible
    to this account", our copy is kept, the operators are told once, /posts published says
    so, and it is live again once the subreddit is public."""
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Members only soon")
    await queue_it(rapp, OPERATOR, card)
    await rapp.tg.wait_until(lambda: len(reddit.posts) == 1, SLOW, "the chat post published")
    await wait_post(rapp, lambda p: p.status == "published")  # our row, after the first look
    (ours,) = reddit.posts
    reddit.set_subreddit_type("opsdeck_test", "private")

    account = await account_card(rapp, OPERATOR)
    since = rapp.tg.mark()
    _, done = await press_backfill(rapp, account, "Refresh stats", "stats")
    assert "“Members only soon”: not visible to this account" in done["text"]
    alert = await rapp.tg.wait_for_message(OPERATOR, "no longer visible", since=since)
    assert "“Members only soon”" in alert["text"] and "copies are kept" in alert["text"]
    listing = await rapp.say(VIEWER, "/posts published", "Published on Reddit")
    assert "Members only soon" in listing["text"]
    assert "not visible to this account" in listing["text"]
    (row,) = [p for p in await posts_in_db(rapp) if p.fullname == ours.fullname]
    assert row.title == "Members only soon" and row.content_deleted_at is None

    # a second refresh says nothing new
    since = rapp.tg.mark()
    account = await account_card(rapp, OPERATOR)
    await press_backfill(rapp, account, "Refresh stats", "stats")
    await asyncio.sleep(0.3)
    with pytest.raises(AssertionError):  # told once, not at every refresh
        await rapp.tg.wait_for_message(OPERATOR, "no longer visible", since=since, timeout=0.5)

    reddit.set_subreddit_type("opsdeck_test", "public")
    account = await account_card(rapp, OPERATOR)
    since = rapp.tg.mark()
    _, done = await press_backfill(rapp, account, "Refresh stats", "stats")
    assert "“Members only soon”: 1 point" in done["text"]
    await rapp.tg.wait_for_message(OPERATOR, "visible again to u/team_main", since=since)
    listing = await rapp.say(VIEWER, "/posts published", "Published on Reddit")
    assert "live · 1 point" in listing["text"]


async def test_posts_listing_takes_published_all_and_nothing_else(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    empty = await rapp.say(VIEWER, "/posts published", "Published on Reddit")
    assert "Nothing yet" in empty["text"]
    wrong = await rapp.say(VIEWER, "/posts yesterday", "Usage: /posts")
    assert "/posts published" in wrong["text"] and "/posts all" in wrong["text"]
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Later today", when="+3h")
    await queue_it(rapp, OPERATOR, card)
    everything = await rapp.say(VIEWER, "/posts all", "Reddit posts")
    assert "Later today" in everything["text"] and "queued" in everything["text"]
    published = await rapp.say(VIEWER, "/posts published", "Published on Reddit")
    assert "Later today" not in published["text"]
