"""Pacing, end to end: a post that would break a rule (the account's gap between posts, its
posts per day, the team's gap per subreddit) moves to the earliest allowed time, the operator
is told why in their timezone, Reschedule and Post now on the post card keep the same rules,
and the submit job publishes at the moved times. Fake Telegram and fake Reddit over HTTP."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from storage.reddit_models import RedditPost
from tests.e2e.conftest import OPERATOR, OWNER, Harness
from tests.e2e.test_reddit_accounts import CLIENT_ID, CLIENT_SECRET, PASSWORD
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

NY = "America/New_York"


def local(dt: datetime, tz: str = NY) -> str:
    """`2026-11-24 09:00 EST`: how a time must read for an operator in `tz`."""
    there = dt.astimezone(ZoneInfo(tz))
    return f"{there:%Y-%m-%d %H:%M} {there.tzname()}"


async def set_tz(app: Harness, user: int, tz: str = NY) -> None:
    await app.say(user, f"/tz {tz}", "Timezone set")


async def set_account_pacing(app: Harness, account_id: int, **rules: int) -> None:
    actor = await app.actor(OWNER)
    accounts = app.app.services.reddit_accounts
    await accounts.set_pacing(actor, account_id, **rules)


async def set_subreddit_gap(app: Harness, subreddit: str, minutes: int) -> None:
    actor = await app.actor(OWNER)
    posts = app.app.services.reddit_posts
    await posts.set_subreddit_gap(actor, subreddit, minutes)


async def post_titled(app: Harness, title: str) -> RedditPost:
    (post,) = [p for p in await posts_in_db(app) if p.title == title]
    return post


async def open_card(app: Harness, user: int, post_id: int) -> dict:
    listing = await app.say(user, "/posts", "Upcoming Reddit posts")
    await app.press(user, listing, app.button(listing, f"#{post_id}"))
    return await app.becomes(listing, lambda m: "Reschedule" in app.buttons_text(m))


async def test_account_gap_moves_a_post_and_says_why_in_the_operators_timezone(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")  # the default rule: 30 min between posts
    await set_tz(rapp, OPERATOR)
    # 09:00 tomorrow in New York, typed as the operator thinks of it
    first = await compose(
        rapp, OPERATOR, "team_main", "opsdeck_test", "First", when="tomorrow 09:00"
    )
    assert "Moved by pacing" not in first["text"]
    await queue_it(rapp, OPERATOR, first)
    a = await post_titled(rapp, "First")
    assert local(a.scheduled_for).endswith(("09:00 EST", "09:00 EDT"))

    second = await compose(
        rapp, OPERATOR, "team_main", "opsdeck_test", "Second", when="tomorrow 09:10"
    )
    want = a.scheduled_for + timedelta(minutes=30)
    assert f"Goes out: {local(want)}" in second["text"]
    reason = f"u/team_main keeps 30 min between posts (another post is at {local(a.scheduled_for)})"
    assert f"⏩ Moved by pacing: {reason}" in second["text"]
    answer = await queue_it(rapp, OPERATOR, second)
    assert answer["text"].startswith("Post #") and f"queued for {local(want)}" in answer["text"]
    assert "Pacing moved it: u/team_main keeps 30 min" in answer["text"]
    b = await post_titled(rapp, "Second")
    assert b.status == "queued" and b.scheduled_for == want
    assert b.requested_for == a.scheduled_for + timedelta(minutes=10)
    # the card, edited in place, carries the reason too (a toast can be missed)
    card = await rapp.becomes(second, lambda m: "Status: queued" in m["text"])
    assert f"When: {local(want)}" in card["text"]
    assert f"⏩ Moved by pacing: {reason}" in card["text"]


async def test_posts_per_day_moves_the_extra_post_a_day_later(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_test")
    account_id = await add_account(rapp, "team_main")
    await set_account_pacing(rapp, account_id, posts_per_day=2, min_gap_minutes=0)
    await set_tz(rapp, OPERATOR)
    for title, when in (("One", "+1h"), ("Two", "+2h")):
        card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", title, when=when)
        assert "Moved by pacing" not in card["text"]
        await queue_it(rapp, OPERATOR, card)
    one = await post_titled(rapp, "One")
    third = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Three", when="+3h")
    want = one.scheduled_for + timedelta(hours=24)
    assert f"Goes out: {local(want)}" in third["text"]
    assert "u/team_main makes at most 2 posts in any 24 hours" in third["text"]
    answer = await queue_it(rapp, OPERATOR, third)
    assert f"queued for {local(want)}" in answer["text"]
    assert (await post_titled(rapp, "Three")).scheduled_for == want
    # the first two go out at their times; the third does not go with them
    rapp.clock.advance(timedelta(hours=1, minutes=1))
    await rapp.tg.wait_until(lambda: len(reddit.posts) == 1, SLOW, "one post published")
    rapp.clock.advance(timedelta(hours=1))
    await rapp.tg.wait_until(lambda: len(reddit.posts) == 2, SLOW, "two posts published")
    await asyncio.sleep(1.5)
    three = await post_titled(rapp, "Three")
    assert three.status == "queued" and three.scheduled_for == want
    assert sorted(p.title for p in reddit.posts) == ["One", "Two"]


async def test_subreddit_gap_holds_across_accounts_and_the_job_keeps_it(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_test", "elsewhere_ok")
    reddit.add_account("team_alt", PASSWORD, CLIENT_ID, CLIENT_SECRET)
    main = await add_account(rapp, "team_main")
    alt = await add_account(rapp, "team_alt")
    for account_id in (main, alt):  # only the subreddit's rule is in play
        await set_account_pacing(rapp, account_id, posts_per_day=0, min_gap_minutes=0)
    await set_subreddit_gap(rapp, "opsdeck_test", 120)
    await set_tz(rapp, OPERATOR)
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "From main", when="+1h")
    await queue_it(rapp, OPERATOR, card)
    a = await post_titled(rapp, "From main")
    card = await compose(rapp, OPERATOR, "team_alt", "opsdeck_test", "From alt", when="+1h")
    want = a.scheduled_for + timedelta(hours=2)
    reason = (
        "the team keeps 2 hours between posts to r/opsdeck_test "
        f"(another is at {local(a.scheduled_for)})"
    )
    assert f"⏩ Moved by pacing: {reason}" in card["text"]
    assert f"Goes out: {local(want)}" in card["text"]
    await queue_it(rapp, OPERATOR, card)
    # another subreddit is not held back by this one's rule
    other = await compose(rapp, OPERATOR, "team_alt", "elsewhere_ok", "Elsewhere", when="+1h")
    assert "Moved by pacing" not in other["text"]
    # at the first post's time only it goes out; the moved one waits for its own time
    rapp.clock.advance(timedelta(hours=1, minutes=1))
    await rapp.tg.wait_until(lambda: len(reddit.posts) == 1, SLOW, "the first post published")
    await asyncio.sleep(1.5)  # a moment in which a wrongly early second post would go
    assert [p.title for p in reddit.posts] == ["From main"]
    assert (await post_titled(rapp, "From alt")).status == "queued"
    rapp.clock.advance(timedelta(hours=2))
    await rapp.tg.wait_until(lambda: len(reddit.posts) == 2, SLOW, "the second post published")
    published = {p.title: p for p in await posts_in_db(rapp) if p.status == "published"}
    gap = published["From alt"].published_at - published["From main"].published_at
    assert gap >= timedelta(hours=2)


async def test_reschedule_into_a_clash_moves_and_says_why(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    await set_tz(rapp, OPERATOR)
    for title, when in (("Anchor", "+2h"), ("Mover", "+6h")):
        await queue_it(
            rapp,
            OPERATOR,
            await compose(rapp, OPERATOR, "team_main", "opsdeck_test", title, when=when),
        )
    anchor, mover = await post_titled(rapp, "Anchor"), await post_titled(rapp, "Mover")
    card = await open_card(rapp, OPERATOR, mover.id)
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, card, rapp.button(card, "Reschedule"))
    ask = await rapp.tg.wait_for_message(OPERATOR, "New time for post", since=since)
    assert NY in ask["text"]
    typed = anchor.scheduled_for.astimezone(ZoneInfo(NY)) + timedelta(minutes=5)
    moved = await rapp.say(OPERATOR, f"{typed:%Y-%m-%d %H:%M}", f"Post #{mover.id}", timeout=SLOW)
    want = anchor.scheduled_for + timedelta(minutes=30)
    assert f"When: {local(want)}" in moved["text"]
    assert (
        "⏩ Moved by pacing: u/team_main keeps 30 min between posts "
        f"(another post is at {local(anchor.scheduled_for)})"
    ) in moved["text"]
    assert (await post_titled(rapp, "Mover")).scheduled_for == want
    # a time that breaks nothing is taken as typed, and the old reason is gone
    free = anchor.scheduled_for.astimezone(ZoneInfo(NY)) + timedelta(hours=3)
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, moved, rapp.button(moved, "Reschedule"))
    await rapp.tg.wait_for_message(OPERATOR, "New time for post", since=since)
    kept = await rapp.say(OPERATOR, f"{free:%Y-%m-%d %H:%M}", f"Post #{mover.id}", timeout=SLOW)
    assert f"When: {local(free)}" in kept["text"] and "pacing" not in kept["text"]


async def test_post_now_waits_for_the_gap_and_says_until_when(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    await set_tz(rapp, OPERATOR)
    for title, when in (("Soon", "+20m"), ("Later", "+5h")):
        await queue_it(
            rapp,
            OPERATOR,
            await compose(rapp, OPERATOR, "team_main", "opsdeck_test", title, when=when),
        )
    soon, later = await post_titled(rapp, "Soon"), await post_titled(rapp, "Later")
    card = await open_card(rapp, OPERATOR, later.id)
    answer = await rapp.press(OPERATOR, card, rapp.button(card, "Post now"))
    want = soon.scheduled_for + timedelta(minutes=30)
    assert answer["text"].startswith(f"Post #{later.id} goes out at {local(want)}.")
    assert "Pacing moved it: u/team_main keeps 30 min" in answer["text"]
    assert answer.get("show_alert") is True
    card = await rapp.becomes(card, lambda m: local(want) in m["text"])
    assert f"another post is at {local(soon.scheduled_for)}" in card["text"]
    assert (await post_titled(rapp, "Later")).scheduled_for == want
    # nothing went out early
    assert reddit.posts == []
    rapp.clock.advance(timedelta(minutes=21))
    await rapp.tg.wait_until(lambda: len(reddit.posts) == 1, SLOW, "the first post published")
    await asyncio.sleep(1.5)  # a moment in which a wrongly early second post would go
    assert [p.title for p in reddit.posts] == ["Soon"]
    rapp.clock.advance(timedelta(minutes=31))
    await rapp.tg.wait_until(lambda: len(reddit.posts) == 2, SLOW, "the second post published")
    assert [p.title for p in reddit.posts] == ["Soon", "Later"]


def test_local_formats_like_the_bot() -> None:
    # guards the helper the assertions above lean on (no bot code involved)
    moment = datetime(2026, 1, 5, 14, 0, tzinfo=ZoneInfo("UTC"))
    assert local(moment) == "2026-01-05 09:00 EST"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d [A-Z]+", local(moment))


async def test_post_now_says_what_holds_a_post_back(rapp: Harness, reddit: FakeReddit) -> None:
    setup_reddit(reddit, "opsdeck_test")
    account_id = await add_account(rapp, "team_main")
    await set_tz(rapp, OPERATOR)
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Needs a yes", when="+4h")
    await queue_it(rapp, OPERATOR, card, "Send for approval")
    post = await post_titled(rapp, "Needs a yes")
    # waiting for approval: Post now brings the time forward, the approval is still needed
    card = await open_card(rapp, OPERATOR, post.id)
    answer = await rapp.press(OPERATOR, card, rapp.button(card, "Post now"))
    post = await post_titled(rapp, "Needs a yes")
    assert answer["text"] == (
        f"Post #{post.id} goes out at {local(post.scheduled_for)} once an operator approves it."
    )
    assert post.status == "pending_approval" and answer.get("show_alert") is True
    # a paused account: nothing goes out, and the answer says why
    owner = await rapp.actor(OWNER)
    await rapp.app.services.reddit_accounts.pause(owner, account_id)
    card = await rapp.becomes(card, lambda m: "Approve" in rapp.buttons_text(m))
    await rapp.press(OPERATOR, card, rapp.button(card, "Approve"))
    card = await rapp.becomes(card, lambda m: "Status: queued" in m["text"])
    # its job ran, found the account paused and waits (queued again) before the next press
    await wait_post(rapp, lambda p: p.last_error_code == "ACCOUNT_PAUSED")
    await rapp.wait_job(post.job_id, "queued")
    answer = await rapp.press(OPERATOR, card, rapp.button(card, "Post now"))
    assert answer["text"] == (
        f"Post #{post.id} waits: u/team_main is paused; it goes out once the account is "
        "active again."
    )
    await asyncio.sleep(1.5)
    assert reddit.posts == []
