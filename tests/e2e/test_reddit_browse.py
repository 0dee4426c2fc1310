"""/browse end to end: the fake Telegram and the fake Reddit over HTTP. Read-only listings
with pages, a post with its top comments, and every wrong argument and button."""

from __future__ import annotations

import pytest

from bot.callbacks import STALE_BUTTON, BrowseOpen, BrowsePage
from core.reddit_ops.browse import MAX_PAGES, PAGE_SIZE
from storage.models import Role, Tenant
from tests.e2e.conftest import OPERATOR, VIEWER, Harness
from tests.e2e.test_reddit_accounts import CLIENT_ID, CLIENT_SECRET, PASSWORD, rapp, reddit
from tests.e2e.test_reddit_posts import add_account
from tests.fakes.reddit import FakeReddit

__all__ = ["rapp", "reddit"]  # fixtures


def seed(reddit: FakeReddit, n: int = PAGE_SIZE + 3) -> list:
    reddit.add_account("team_main", PASSWORD, CLIENT_ID, CLIENT_SECRET)
    reddit.add_account("alice", "pw", "aliceapp01", "alice-secret")
    reddit.add_subreddit("opsdeck_read")
    posts = []
    for i in range(n):
        post = reddit.add_post(
            "alice", "opsdeck_read", f"Thread number {i}", text=f"Body of thread {i}"
        )
        post.score, post.created_utc = 100 - i, reddit._now() - 3600 * (i + 1)
        posts.append(post)
    posts[0].flair_text = "Question"
    return posts


async def test_listing_pages_and_a_post_with_top_comments(
    rapp: Harness, reddit: FakeReddit
) -> None:
    posts = seed(reddit)
    reddit.add_comment("bob", posts[0], "First! a <b>bold</b> claim", score=9)
    reddit.add_comment("carol", posts[0], "Second, less liked", score=2)
    await add_account(rapp, "team_main")

    page = await rapp.say(VIEWER, "/browse r/opsdeck_read top", "r/opsdeck_read")
    text = page["text"]
    assert "Thread number 0" in text and f"Thread number {PAGE_SIZE - 1}" in text
    assert f"Thread number {PAGE_SIZE}" not in text
    assert "⬆ 100" in text and "💬 2" in text and "1h ago" in text and "[Question]" in text
    assert "u/alice" in text and "read as u/team_main" in text
    labels = [t for t, _ in rapp.tg.buttons(page)]
    assert labels[:PAGE_SIZE] == [str(n) for n in range(1, PAGE_SIZE + 1)]
    assert "Next ▶" in labels and not any("vote" in t.lower() for t in labels)

    await rapp.press(VIEWER, page, rapp.button(page, "Next ▶"))
    page = await rapp.becomes(page, lambda m: "page 2" in m["text"])
    assert f"{PAGE_SIZE + 1}. Thread number {PAGE_SIZE}" in page["text"]
    assert "Next ▶" not in rapp.buttons_text(page) and "First" in rapp.buttons_text(page)
    await rapp.press(VIEWER, page, rapp.button(page, "First"))
    page = await rapp.becomes(page, lambda m: "page 1" in m["text"])

    await rapp.press(VIEWER, page, rapp.button(page, "1"))
    post = await rapp.becomes(page, lambda m: "Top comments" in m["text"])
    text = post["text"]
    assert "Thread number 0" in text and "Body of thread 0" in text
    assert text.index("First!") < text.index("Second, less liked")
    assert "a <b>bold</b> claim" in text  # Reddit's text is shown as typed, not as HTML
    assert "Open on Reddit" in rapp.buttons_text(post)
    await rapp.press(VIEWER, post, rapp.button(post, "Back to the list"))
    await rapp.becomes(post, lambda m: "page 1" in m["text"])

    # every read went through the team's app, and Reddit never answered 429
    reads = [r for r in reddit.requests if r.host == "oauth"]
    assert reads and {r.client_id for r in reads} == {CLIENT_ID}
    assert reddit.throttled == 0
    assert not [r for r in reddit.requests if r.method == "POST" and r.host == "oauth"]


async def test_locked_and_deleted_threads_say_no_replies(rapp: Harness, reddit: FakeReddit) -> None:
    posts = seed(reddit, 2)
    posts[0].locked = True
    await add_account(rapp, "team_main")
    page = await rapp.say(OPERATOR, "/browse r/opsdeck_read", "r/opsdeck_read")
    post_id = posts[0].id
    await rapp.forge(OPERATOR, page, BrowseOpen(id=post_id, sr="opsdeck_read", sort="hot").pack())
    shown = await rapp.becomes(page, lambda m: "No replies possible" in m["text"])
    assert "locked" in shown["text"]


async def test_bad_arguments_and_forged_buttons(rapp: Harness, reddit: FakeReddit) -> None:
    seed(reddit, 2)
    reddit.add_subreddit("secret_club", subreddit_type="private")
    none_yet = await rapp.say(OPERATOR, "/browse r/opsdeck_read")
    assert "/accounts add" in none_yet["text"]
    await add_account(rapp, "team_main")
    assert "Usage: /browse" in (await rapp.say(OPERATOR, "/browse"))["text"]
    assert "not a subreddit name" in (await rapp.say(OPERATOR, "/browse r/!!bad"))["text"]
    assert "hot, new or top" in (await rapp.say(OPERATOR, "/browse r/python sideways"))["text"]
    assert "does not exist" in (await rapp.say(OPERATOR, "/browse r/no_such_sub"))["text"]
    assert "private" in (await rapp.say(OPERATOR, "/browse r/secret_club"))["text"]

    page = await rapp.say(OPERATOR, "/browse r/opsdeck_read", "r/opsdeck_read")
    gone = await rapp.forge(OPERATOR, page, BrowseOpen(id="zzzzzz", sr="x", sort="hot").pack())
    assert "no such post" in gone["text"]
    # data no button carries fails the class's constraints: the fallback's answer
    bad_id = await rapp.forge(OPERATOR, page, "bo:../x:x:hot")
    assert bad_id["text"] == STALE_BUTTON
    deep = await rapp.forge(
        OPERATOR,
        page,
        BrowsePage(sr="opsdeck_read", sort="hot", page=MAX_PAGES, after="t3_zz").pack(),
    )
    assert f"after {MAX_PAGES} pages" in deep["text"]
    sort = await rapp.forge(OPERATOR, page, "bp:opsdeck_read:vote:0:")
    assert sort["text"] == STALE_BUTTON
    name = await rapp.forge(OPERATOR, page, "bp:no/pe:hot:0:")
    assert name["text"] == STALE_BUTTON


async def test_another_workspace_reads_only_through_its_own_accounts(
    rapp: Harness, reddit: FakeReddit
) -> None:
    seed(reddit, 2)
    await add_account(rapp, "team_main")
    async with rapp.app.sessionmaker() as session:
        other = Tenant(slug="other", name="other", created_at=rapp.clock.now())
        session.add(other)
        await session.commit()
        other_id = other.id
    await rapp.add_operator(3001, Role.operator, tenant_id=other_id)
    rapp.users[3001] = rapp.tg.user(3001, "Otto")
    answer = await rapp.say(3001, "/browse r/opsdeck_read")
    assert "/accounts add" in answer["text"]
    assert not [r for r in reddit.requests if r.path.startswith("/r/opsdeck_read")]


@pytest.mark.parametrize("who", [9999])
async def test_strangers_cannot_browse(rapp: Harness, reddit: FakeReddit, who: int) -> None:
    rapp.users[who] = rapp.tg.user(who, "Nobody")
    since = rapp.tg.mark()
    await rapp.tg.send_text(rapp.users[who], "/browse r/opsdeck_read")
    await rapp.tg.wait_for_message(who, None, since=since)
    assert not [r for r in reddit.requests if r.host == "oauth"]
