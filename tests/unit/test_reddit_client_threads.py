"""RedditClient's thread calls against the fake over real HTTP: subreddit listings, a post
with its comments, one comment by fullname, `/api/comment` and the look before resending."""

from __future__ import annotations

import pytest

from core.reddit import (
    RedditAPIError,
    RedditClient,
    RedditForbidden,
    RedditNotFound,
    RedditRateLimited,
    RedditUnknownOutcome,
)
from tests.fakes.reddit import FakeReddit
from tests.unit.test_reddit_client import alice, fake, make_client, registry, vt

__all__ = ["alice", "fake", "make_client", "registry", "vt"]  # fixtures


def seed(fake: FakeReddit, n: int = 5):
    fake.add_account("bob", "pw", "bobsapp", "bobsecret")
    posts = []
    for i in range(n):
        post = fake.add_post("bob", "testsub", f"thread {i}", text=f"body {i}")
        post.score = 10 * (i + 1)
        post.created_utc -= 60 * (n - i)
        posts.append(post)
    return posts


async def test_listing_pages_with_cursor_and_sorts(fake: FakeReddit, alice: RedditClient) -> None:
    seed(fake)
    first = await alice.subreddit_listing("r/testsub", "top", limit=2)
    assert [p.post.title for p in first] == ["thread 4", "thread 3"] and first.after
    second = await alice.subreddit_listing("testsub", "top", limit=2, after=first.after)
    assert [p.post.title for p in second] == ["thread 2", "thread 1"]
    assert fake.requests_to("/r/testsub/top")[0].query["t"] == "day"
    newest = await alice.subreddit_listing("testsub", "new", limit=1)
    assert newest.items[0].post.title == "thread 4" and newest.items[0].selftext == "body 4"
    with pytest.raises(ValueError):
        await alice.subreddit_listing("testsub", "controversial")


async def test_unknown_and_private_subreddits(fake: FakeReddit, alice: RedditClient) -> None:
    fake.add_subreddit("closedclub", subreddit_type="private")
    with pytest.raises(RedditNotFound, match="does not exist"):
        await alice.subreddit_listing("nosuchsub", "hot")
    with pytest.raises(RedditForbidden, match="private"):
        await alice.subreddit_listing("closedclub", "hot")


async def test_thread_comment_info_and_closed_reasons(
    fake: FakeReddit, alice: RedditClient
) -> None:
    (post,) = seed(fake, 1)
    low = fake.add_comment("carol", post, "meh", score=1)
    high = fake.add_comment("dave", post, "great", score=50)
    thread = await alice.thread(post.id, limit=5)
    assert thread.post.post.fullname == post.fullname and thread.post.closed_reason is None
    assert [c.fullname for c in thread.comments] == [high.fullname, low.fullname]
    found = await alice.comment_info(low.fullname)
    assert found is not None and found.body == "meh" and found.link_id == post.fullname
    assert await alice.comment_info("t1_zzzzz") is None
    post.locked = True
    assert "locked" in ((await alice.thread(post.id)).post.closed_reason or "")
    post.locked, post.archived = False, True
    assert "archived" in ((await alice.thread(post.id)).post.closed_reason or "")
    with pytest.raises(RedditNotFound):
        await alice.thread("zzzzz")
    with pytest.raises(ValueError):
        await alice.thread("../etc")


async def test_comment_then_look_for_it(fake: FakeReddit, alice: RedditClient) -> None:
    (post,) = seed(fake, 1)
    made = await alice.comment(post.fullname, "Hello **there**")
    assert made.fullname.startswith("t1_") and made.parent_id == post.fullname
    sent = fake.requests_to("/api/comment")[0]
    assert sent.form == {"api_type": "json", "thing_id": post.fullname, "text": "Hello **there**"}
    again = await alice.recent_comment(post.fullname, "Hello **there**")
    assert again is not None and again.fullname == made.fullname
    assert await alice.recent_comment(post.fullname, "something else") is None
    reply = await alice.comment(made.fullname, "and a reply")
    assert reply.parent_id == made.fullname
    with pytest.raises(ValueError):
        await alice.comment("t5_abc", "no")


async def test_comment_errors(fake: FakeReddit, alice: RedditClient) -> None:
    (post,) = seed(fake, 1)
    fake.queue_error("comment", ratelimit="you are doing that too much. try again in 9 minutes.")
    with pytest.raises(RedditRateLimited) as limited:
        await alice.comment(post.fullname, "hi")
    assert limited.value.seconds == 540
    post.locked = True
    with pytest.raises(RedditAPIError) as locked:
        await alice.comment(post.fullname, "hi")
    assert locked.value.code == "THREAD_LOCKED" and "locked" in locked.value.message
    post.locked = False
    with pytest.raises(RedditAPIError) as deleted:
        await alice.comment("t1_zzzzz", "hi")
    assert deleted.value.code == "DELETED_COMMENT"
    assert len(fake.requests_to("/api/comment")) == 3


async def test_a_lost_answer_is_never_retried(fake: FakeReddit, make_client) -> None:
    (post,) = seed(fake, 1)
    impatient = make_client(timeout=0.5)
    fake.queue_error("comment", hang=3, process=True)  # Reddit makes it, answers too late
    with pytest.raises(RedditUnknownOutcome):
        await impatient.comment(post.fullname, "made, answer lost")
    assert [c.body for c in fake.comments_by("alice")] == ["made, answer lost"]
    assert len(fake.requests_to("/api/comment")) == 1  # the client never resends it
    found = await impatient.recent_comment(post.fullname, "made, answer lost")
    assert found is not None
