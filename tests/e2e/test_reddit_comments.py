"""/reply end to end through the fake Telegram and the fake Reddit: a comment composed in chat
joins the post queue — rate-limited, rescheduled, published once, looked for after a timeout —
and every wrong URL, thread, button and workspace gets a clear answer."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.callbacks import BrowseOpen, RedditPostAct, ReplyAccount, ReplyTo
from storage.models import Role, Tenant
from tests.e2e.conftest import OPERATOR, OWNER, VIEWER, Harness
from tests.e2e.test_reddit_accounts import CLIENT_ID, CLIENT_SECRET, PASSWORD, reddit
from tests.e2e.test_reddit_posts import (
    SLOW,
    add_account,
    posts_in_db,
    rapp,
    the_post,
    wait_post,
)
from tests.fakes.reddit import FakePost, FakeReddit

__all__ = ["rapp", "reddit"]  # fixtures


def thread(reddit: FakeReddit, title: str = "How do you deploy?") -> FakePost:
    reddit.add_account("team_main", PASSWORD, CLIENT_ID, CLIENT_SECRET)
    reddit.add_account("alice", "pw", "aliceapp01", "alice-secret")
    reddit.add_subreddit("opsdeck_talk")
    return reddit.add_post("alice", "opsdeck_talk", title, text="Curious how teams do it.")


def url(post: FakePost, comment_id: str | None = None) -> str:
    tail = f"{comment_id}/" if comment_id else ""
    return f"https://www.reddit.com{post.permalink}{tail}"


async def compose_reply(
    app: Harness, address: str, body: str = "We use **Opsdeck**.", when: str = "now"
) -> dict:
    """/reply <address> → (one account: no question) → text → when; the preview."""
    await app.say(OPERATOR, f"/reply {address}", "Send the comment's text", timeout=SLOW)
    ask = await app.say(OPERATOR, body, "When?", timeout=SLOW)
    since = app.tg.mark()
    await app.press(OPERATOR, ask, app.button(ask, when))
    return await app.tg.wait_for_message(OPERATOR, "Preview", since=since, timeout=SLOW)


async def test_comment_rate_limited_rescheduled_and_published_once(
    rapp: Harness, reddit: FakeReddit
) -> None:
    post = thread(reddit)
    await add_account(rapp, "team_main")
    reddit.queue_error("comment", ratelimit="you are doing that too much. try again in 9 minutes.")
    preview = await compose_reply(rapp, url(post))
    assert "We use **Opsdeck**." in preview["text"] and "How do you deploy?" in preview["text"]
    assert "u/team_main" in preview["text"] and "r/opsdeck_talk" in preview["text"]
    answer = await rapp.press(OPERATOR, preview, rapp.button(preview, "Queue"))
    assert "queued for" in answer["text"]

    row = await wait_post(rapp, lambda p: p.last_error_code == "RATELIMIT")
    assert row.kind == "comment" and row.status == "queued" and row.parent_fullname == post.fullname
    wait = row.scheduled_for - rapp.clock.now()
    assert timedelta(minutes=8) < wait <= timedelta(minutes=9)
    assert reddit.comments_by("team_main") == []

    since = rapp.tg.mark()
    rapp.clock.advance(timedelta(minutes=10))
    row = await wait_post(rapp, lambda p: p.status == "published")
    note = await rapp.tg.wait_for_message(OPERATOR, "Published on r/", since=since, timeout=SLOW)
    assert "comment on “How do you deploy?”" in note["text"]
    (made,) = reddit.comments_by("team_main")
    assert made.body == "We use **Opsdeck**." and made.parent_id == post.fullname
    assert row.fullname == made.fullname and made.id in (row.permalink or "")
    await asyncio.sleep(1)
    assert len(reddit.requests_to("/api/comment")) == 2 and len(reddit.comments) == 1

    # /posts published lists the comment beside the posts, with its own card
    listing = await rapp.say(OPERATOR, "/posts published", "Published on Reddit")
    assert "💬 We use **Opsdeck**." in listing["text"] and "published" in listing["text"]
    await rapp.press(OPERATOR, listing, rapp.button(listing, f"#{row.id}"))
    card = await rapp.becomes(listing, lambda m: "Comment #" in m["text"])
    assert made.id in card["text"]
    # the stats refresh leaves comments alone (no /api/info for t1_ ids)
    rapp.clock.advance(timedelta(hours=1, minutes=5))
    await asyncio.sleep(2)
    assert not [r for r in reddit.requests_to("/api/info") if "t1_" in r.query.get("id", "")]
    assert (await the_post(rapp)).status == "published"


async def test_timeout_after_send_looks_before_resending(rapp: Harness, reddit: FakeReddit) -> None:
    post = thread(reddit)
    theirs = reddit.add_comment("bob", post, "Kubernetes, obviously")
    await add_account(rapp, "team_main")
    reddit.queue_error("comment", hang=4, process=True)  # Reddit makes it, answers too late
    preview = await compose_reply(rapp, url(post, theirs.id), body="Same here.")
    assert "a comment" in preview["text"]
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, preview, rapp.button(preview, "Queue"))
    row = await wait_post(rapp, lambda p: p.status == "published")
    note = await rapp.tg.wait_for_message(OPERATOR, "Published on r/", since=since, timeout=SLOW)
    assert "not sent twice" in note["text"]
    (made,) = reddit.comments_by("team_main")
    assert made.parent_id == theirs.fullname and row.fullname == made.fullname
    await asyncio.sleep(1)
    assert len(reddit.requests_to("/api/comment")) == 1


async def test_approval_and_pacing_apply_to_comments(rapp: Harness, reddit: FakeReddit) -> None:
    post = thread(reddit)
    await add_account(rapp, "team_main")
    preview = await compose_reply(rapp, url(post))
    await rapp.press(OPERATOR, preview, rapp.button(preview, "Send for approval"))
    row = await wait_post(rapp, lambda p: p.status == "pending_approval")
    assert row.kind == "comment"
    # /posts lists it among the posts, marked as a comment, with its own card
    listing = await rapp.say(OPERATOR, "/posts", "Upcoming Reddit posts")
    assert f"#{row.id}" in listing["text"] and "💬 How do you deploy?" in listing["text"]
    await rapp.press(OPERATOR, listing, rapp.button(listing, f"#{row.id}"))
    card = await rapp.becomes(listing, lambda m: "Comment #" in m["text"])
    assert "We use **Opsdeck**." in card["text"] and "Edit" not in rapp.buttons_text(card)
    await asyncio.sleep(0.5)
    assert reddit.comments == []
    # a viewer cannot approve; an operator can
    denied = await rapp.forge(VIEWER, preview, RedditPostAct(act="approve", id=row.id).pack())
    assert "cannot" in denied["text"]
    await rapp.forge(OWNER, preview, RedditPostAct(act="approve", id=row.id).pack())
    await wait_post(rapp, lambda p: p.status == "published")
    assert len(reddit.comments_by("team_main")) == 1


async def test_closed_threads_and_bad_addresses(rapp: Harness, reddit: FakeReddit) -> None:
    post = thread(reddit)
    await add_account(rapp, "team_main")
    say = rapp.say
    assert "Usage: /reply" in (await say(OPERATOR, "/reply"))["text"]
    assert (
        "not a reddit.com address"
        in (await say(OPERATOR, "/reply https://example.com/r/x/comments/abc/"))["text"]
    )
    assert (
        "share link" in (await say(OPERATOR, "/reply https://reddit.com/r/python/s/AbC1"))["text"]
    )
    assert (
        "no such post"
        in (await say(OPERATOR, "/reply https://www.reddit.com/r/opsdeck_talk/comments/zzzzz/x/"))[
            "text"
        ]
    )
    assert "no such comment" in (await say(OPERATOR, f"/reply {url(post, 'zzzzz')}"))["text"]
    await say(OPERATOR, "/cancel")
    post.locked = True
    assert "locked" in (await say(OPERATOR, f"/reply {url(post)}"))["text"]
    await say(OPERATOR, "/cancel")
    post.locked, post.archived = False, True
    assert "archived" in (await say(OPERATOR, f"/reply {url(post)}"))["text"]
    await say(OPERATOR, "/cancel")
    post.archived = False
    gone = reddit.add_comment("bob", post, "[deleted]")
    assert "deleted" in (await say(OPERATOR, f"/reply {url(post, gone.id)}"))["text"]
    await say(OPERATOR, "/cancel")

    # inside the flow: a command is not taken for the text, an empty text is refused, /cancel
    await say(OPERATOR, f"/reply {url(post)}", "Send the comment's text")
    assert "looks like a command" in (await say(OPERATOR, "/nonsense"))["text"]
    await say(OPERATOR, "/cancel", "nothing was queued")
    assert reddit.comments_by("team_main") == [] and await posts_in_db(rapp) == []


async def test_deleted_between_queue_and_send_fails_clearly(
    rapp: Harness, reddit: FakeReddit
) -> None:
    post = thread(reddit)
    await add_account(rapp, "team_main")
    preview = await compose_reply(rapp, url(post), when="+1h")
    await rapp.press(OPERATOR, preview, rapp.button(preview, "Queue"))
    await wait_post(rapp, lambda p: p.status == "queued")
    post.locked = True  # the moderators lock the thread meanwhile
    since = rapp.tg.mark()
    rapp.clock.advance(timedelta(hours=1, minutes=1))
    row = await wait_post(rapp, lambda p: p.status == "failed")
    assert row.last_error_code == "THREAD_LOCKED"
    note = await rapp.tg.wait_for_message(OPERATOR, "Not published", since=since, timeout=SLOW)
    assert "locked" in note["text"] and "/reply" in note["text"]


async def test_viewers_stale_buttons_and_other_workspaces(
    rapp: Harness, reddit: FakeReddit
) -> None:
    post = thread(reddit)
    aid = await add_account(rapp, "team_main")
    assert "cannot" in (await rapp.say(VIEWER, f"/reply {url(post)}"))["text"]

    # from /browse: a viewer sees no Reply button, an operator does
    page = await rapp.say(VIEWER, "/browse r/opsdeck_talk", "r/opsdeck_talk")
    await rapp.press(VIEWER, page, rapp.button(page, "1"))
    shown = await rapp.becomes(page, lambda m: "No comments yet" in m["text"])
    assert "Reply" not in rapp.buttons_text(shown)
    forged = await rapp.forge(VIEWER, page, ReplyTo.of(post.fullname, "opsdeck_talk").pack())
    assert "cannot" in forged["text"]
    page = await rapp.say(OPERATOR, "/browse r/opsdeck_talk", "r/opsdeck_talk")
    await rapp.forge(OPERATOR, page, BrowseOpen(id=post.id, sr="opsdeck_talk", sort="hot").pack())
    shown = await rapp.becomes(page, lambda m: "Reply to the post" in rapp.buttons_text(m))
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, shown, rapp.button(shown, "Reply to the post"))
    await rapp.tg.wait_for_message(OPERATOR, "Send the comment's text", since=since, timeout=SLOW)
    await rapp.say(OPERATOR, "/cancel", "nothing was queued")

    # a stale account button after the flow ended, and another workspace's account id
    await add_account(rapp, "team_two", dry_run=True)
    ask = await rapp.say(OPERATOR, f"/reply {url(post)}", "Which account replies?")
    await rapp.say(OPERATOR, "/cancel", "nothing was queued")
    stale = await rapp.press(OPERATOR, ask, rapp.button(ask, "u/team_main"))
    assert "start again" in stale["text"]

    async with rapp.app.sessionmaker() as session:
        other = Tenant(slug="other", name="other", created_at=rapp.clock.now())
        session.add(other)
        await session.commit()
        other_id = other.id
    await rapp.add_operator(3001, Role.operator, tenant_id=other_id)
    rapp.users[3001] = rapp.tg.user(3001, "Otto")
    none_here = await rapp.say(3001, f"/reply {url(post)}")
    assert "/accounts add" in none_here["text"]
    ask = await rapp.say(OPERATOR, f"/reply {url(post)}", "Which account replies?")
    # Otto cannot make Oscar's flow pick an account, nor use our account id in his own
    intruder = await rapp.forge(3001, ask, ReplyAccount(id=aid).pack())
    assert "start again" in intruder["text"]
    await rapp.say(OPERATOR, "/cancel", "nothing was queued")
    assert reddit.comments == [] and await posts_in_db(rapp) == []
