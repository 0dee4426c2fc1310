"""Backfills: history (resumable), stats refresh in batches of 100, the inbox."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from core.reddit import RedditUnavailable
from core.reddit_ops import BACKFILL_SUBMISSIONS, INBOX, REFRESH_STATS
from core.reddit_ops.backfill import (
    backfill_submissions,
    inbox,
    inbox_all,
    refresh_stats,
    refresh_stats_all,
)
from core.reddit_ops.submit import submit_post
from storage.reddit_models import RedditCursor, RedditInboxMessage, RedditPost
from tests.integration import test_reddit_helpers as helpers
from tests.integration.test_reddit_helpers import RedditWorld

vt, fake, world = helpers.vt, helpers.fake, helpers.world  # fixtures

HOUR = 3600


def seed_history(world: RedditWorld, count: int, *, user: str = "alice") -> None:
    start = world.vt.timestamp() - count * HOUR
    for n in range(count):
        world.fake.add_post(user, "testsub", f"Old post {n}", created_utc=start + n * HOUR)


async def count_rows(world: RedditWorld, model: type, **where: object) -> int:
    async with world.sessionmaker() as session:
        stmt = select(func.count()).select_from(model)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        return (await session.execute(stmt)).scalar_one()


async def cursor(world: RedditWorld, kind: str) -> RedditCursor | None:
    async with world.sessionmaker() as session:
        stmt = select(RedditCursor).where(RedditCursor.kind == kind)
        return (await session.execute(stmt)).scalar_one_or_none()


# -- submission history -------------------------------------------------------------------


async def test_history_backfill_resumes_from_its_cursor(world: RedditWorld) -> None:
    seed_history(world, 250)
    account_id = await world.add_account("alice")
    path = "/user/alice/submitted"

    def fail_after_first_page(job: int, text: str) -> None:
        if len(world.progress) == 1:  # Reddit goes down right after page 1 was stored
            world.fake.queue_error(path, status=503, times=4)

    world.on_progress = fail_after_first_page
    ctx = world.ctx(BACKFILL_SUBMISSIONS, {"account_id": account_id}, job_id=5)
    with pytest.raises(RedditUnavailable):  # the engine would retry the job later
        await backfill_submissions(ctx)
    # the progress message says it stopped, not the last count as if it were still going
    assert world.progress[-1][1].startswith(
        "u/alice history: stopped, Reddit answered HTTP 503 to GET /user/alice/submitted; "
    )
    saved = await cursor(world, "submitted")
    assert saved is not None and saved.cursor is not None and saved.progress == 100
    assert await count_rows(world, RedditPost, source="history") == 100

    world.on_progress = None
    result = await backfill_submissions(ctx)

    assert result["imported"] == 150 and result["read"] == 250
    assert await count_rows(world, RedditPost, source="history") == 250
    ok = [r for r in world.fake.requests_to(path) if r.status == 200]
    assert [r.query.get("after") for r in ok] == [
        None,
        saved.cursor,
        ok[2].query["after"],
    ]  # the second run went on from the saved cursor, not from the top
    done = await cursor(world, "submitted")
    assert done is not None and (done.cursor, done.passes) == (None, 1)
    assert world.progress[-1][1] == "u/alice history done: 250 posts read, 150 new"


async def test_after_a_full_pass_only_new_posts_are_read(world: RedditWorld) -> None:
    seed_history(world, 150)
    account_id = await world.add_account("alice")
    ctx = world.ctx(BACKFILL_SUBMISSIONS, {"account_id": account_id})
    await backfill_submissions(ctx)
    world.fake.add_post("alice", "testsub", "Brand new")
    before = len(world.fake.requests_to("/user/alice/submitted"))

    result = await backfill_submissions(ctx)

    assert (result["imported"], result["pages"]) == (1, 1)
    assert len(world.fake.requests_to("/user/alice/submitted")) == before + 1


async def test_history_does_not_duplicate_our_own_posts(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id, title="Ours")
    await world.run_job(submit_post, job_id)
    seed_history(world, 3)

    await backfill_submissions(world.ctx(BACKFILL_SUBMISSIONS, {"account_id": account_id}))

    assert await count_rows(world, RedditPost) == 4
    assert (await world.post(post_id)).source == "opsdeck"


# -- stats refresh ------------------------------------------------------------------------


async def published_history(world: RedditWorld, count: int) -> int:
    seed_history(world, count)
    account_id = await world.add_account("alice")
    await backfill_submissions(world.ctx(BACKFILL_SUBMISSIONS, {"account_id": account_id}))
    return account_id


async def test_stats_refresh_asks_in_batches_of_100(world: RedditWorld) -> None:
    account_id = await published_history(world, 150)  # one post an hour: 150 h ≈ 6.25 days
    for post in world.fake.posts:
        world.fake.set_post_stats(post.fullname, score=7, num_comments=3, upvote_ratio=0.9)

    result = await refresh_stats(
        world.ctx(REFRESH_STATS, {"account_id": account_id, "days": 7}, job_id=9)
    )

    sizes = [len(r.query["id"].split(",")) for r in world.fake.requests_to("info")]
    assert sizes == [100, 50]
    assert result == {
        "account_id": account_id,
        "posts": 150,
        "updated": 150,
        "wiped": 0,
        "removal_alerts": 0,
        "not_visible": 0,
        "not_visible_alerts": 0,
        "visible_again": 0,
    }
    async with world.sessionmaker() as session:
        scores = set((await session.execute(select(RedditPost.score))).scalars().all())
    assert scores == {7}
    assert [text for _, text in world.progress[-3:-1]] == [
        "u/alice stats: 100/150 posts",
        "u/alice stats: 150/150 posts",
    ]
    # the last word: every post with Reddit's numbers, the list cut at 15
    summary = world.progress[-1][1].splitlines()
    assert summary[0] == "u/alice stats done: 150 posts from the last 7 days"
    assert len(summary) == 1 + 15 + 1 and summary[-1] == "…and 135 more"
    assert all(line.endswith(": 7 points · 3 comments · 90% upvoted") for line in summary[1:16])


async def test_only_the_last_n_days_are_refreshed(world: RedditWorld) -> None:
    account_id = await published_history(world, 72)  # three days
    await refresh_stats(world.ctx(REFRESH_STATS, {"account_id": account_id, "days": 1}))
    (request,) = world.fake.requests_to("info")
    assert len(request.query["id"].split(",")) == 24


async def test_a_removal_is_told_once(world: RedditWorld) -> None:
    account_id = await published_history(world, 5)
    target = world.fake.posts[2]
    world.fake.set_post_stats(target.fullname, removed_by_category="moderator")
    ctx = world.ctx(REFRESH_STATS, {"account_id": account_id})

    first = await refresh_stats(ctx)
    second = await refresh_stats(ctx)

    assert (first["removal_alerts"], second["removal_alerts"]) == (1, 0)
    (told,) = world.texts
    assert "u/alice was removed on Reddit" in told
    assert "“Old post 2” — removed by the subreddit's moderators" in told


async def test_content_deleted_on_reddit_is_wiped_from_our_copy(world: RedditWorld) -> None:
    """Deleted only on Reddit's evidence: `removed_by_category` "deleted", or the author
    `[deleted]` (Reddit still returns a deleted post from /api/info)."""
    account_id = await published_history(world, 3)
    deleted, by_author = world.fake.posts[0], world.fake.posts[1]
    world.fake.set_post_stats(deleted.fullname, removed_by_category="deleted")
    world.fake.delete_post(by_author.fullname)

    result = await refresh_stats(world.ctx(REFRESH_STATS, {"account_id": account_id}))

    assert result["wiped"] == 2 and result["not_visible"] == 0
    async with world.sessionmaker() as session:
        rows = (await session.execute(select(RedditPost).order_by(RedditPost.id))).scalars().all()
    wiped = {r.fullname: r for r in rows if r.content_deleted_at is not None}
    assert set(wiped) == {deleted.fullname, by_author.fullname}
    for row in wiped.values():
        assert (row.title, row.body, row.url, row.permalink) == ("", None, None, None)
    assert world.texts == []  # a deletion by the author is not a removal alert
    # wiped posts are not asked about again
    await refresh_stats(world.ctx(REFRESH_STATS, {"account_id": account_id}))
    assert len(world.fake.requests_to("info")[-1].query["id"].split(",")) == 1


async def test_a_post_missing_from_info_is_not_visible_not_deleted(world: RedditWorld) -> None:
    """The subreddit goes private: Reddit leaves its posts out of /api/info. Our copy is
    kept, the operators are told once, and told again when it comes back."""
    world.fake.add_subreddit("lounge")
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id, subreddit="lounge", title="Ours")
    await world.run_job(submit_post, job_id)
    world.notifier.events.clear()
    world.fake.set_subreddit_type("lounge", "private")
    ctx = world.ctx(REFRESH_STATS, {"account_id": account_id})

    first = await refresh_stats(ctx)
    world.vt.advance(3600)
    second = await refresh_stats(ctx)

    assert (first["not_visible"], first["not_visible_alerts"], first["wiped"]) == (1, 1, 0)
    assert (second["not_visible"], second["not_visible_alerts"]) == (1, 0)
    post = await world.post(post_id)
    assert post.title == "Ours" and post.content_deleted_at is None and post.permalink
    assert post.hidden_since == world.vt.now() - timedelta(seconds=3600)
    (told,) = world.texts
    assert told.startswith("👁 no longer visible to u/alice on Reddit")
    assert "“Ours”" in told and "copies are kept" in told
    async with world.services() as (_, posts, _):
        (entry,) = await posts.listed(world.viewer, "published", 10)
    assert entry.state.startswith("not visible to this account")

    # eight days later, out of the 7-day window, it is still looked at, and comes back
    world.vt.advance(8 * 86400)
    world.fake.set_subreddit_type("lounge", "public")
    third = await refresh_stats(ctx)
    assert (third["visible_again"], third["not_visible"]) == (1, 0)
    post = await world.post(post_id)
    assert post.hidden_since is None and not post.hidden_notified
    assert world.texts[-1].startswith("👁 visible again to u/alice on Reddit")
    async with world.services() as (_, posts, _):
        (entry,) = await posts.listed(world.viewer, "published", 10)
    assert entry.state.startswith("live")


async def test_dry_run_posts_are_not_refreshed(world: RedditWorld) -> None:
    account_id = await world.add_account("alice", dry_run=True)
    _, job_id = await world.queued_post(account_id)
    await world.run_job(submit_post, job_id)

    result = await refresh_stats(world.ctx(REFRESH_STATS, {"account_id": account_id}))

    assert result["posts"] == 0
    assert world.fake.requests_to("info") == []


# -- inbox --------------------------------------------------------------------------------


def seed_inbox(world: RedditWorld, count: int, *, unread: int = 0) -> None:
    start = world.vt.timestamp() - count * 60
    for n in range(count):
        world.fake.add_inbox_message(
            "alice",
            author=f"user{n}",
            subject=f"Subject {n}",
            body=f"Body {n}",
            new=n >= count - unread,
            created_utc=start + n * 60,
        )


async def test_inbox_first_pass_announces_only_unread_then_each_new_message_once(
    world: RedditWorld,
) -> None:
    seed_inbox(world, 130, unread=2)
    account_id = await world.add_account("alice")
    ctx = world.ctx(INBOX, {"account_id": account_id})

    first = await inbox(ctx)

    assert (first["read"], first["stored"], first["announced"]) == (130, 130, 2)
    (told,) = world.texts
    assert told.startswith("📬 u/alice has 2 new messages:")
    assert "u/user129: “Subject 129” — Body 129" in told

    world.vt.advance(600)
    world.fake.add_inbox_message("alice", author="carol", subject="Hi", body="Are you there?")
    world.fake.add_inbox_message(
        "alice", author="dave", body="Nice post", kind="t1", subreddit="testsub"
    )
    second = await inbox(ctx)
    third = await inbox(ctx)

    assert (second["stored"], second["announced"]) == (2, 2)
    assert (third["stored"], third["announced"]) == (0, 0)
    assert len(world.texts) == 2
    assert "u/dave replied in r/testsub: Nice post" in world.texts[1]
    assert await count_rows(world, RedditInboxMessage) == 132
    assert await count_rows(world, RedditInboxMessage, notified=True) == 4
    # later runs read from the top down to the first stored message: one page each
    assert [r.query.get("after") for r in world.fake.requests_to("inbox")][-2:] == [None, None]


async def test_inbox_backfill_resumes_from_its_cursor(world: RedditWorld) -> None:
    seed_inbox(world, 250)
    account_id = await world.add_account("alice")

    def fail_after_first_page(job: int, text: str) -> None:
        if len(world.progress) == 1:
            world.fake.queue_error("inbox", status=503, times=4)

    world.on_progress = fail_after_first_page
    ctx = world.ctx(INBOX, {"account_id": account_id})
    with pytest.raises(RedditUnavailable):
        await inbox(ctx)
    saved = await cursor(world, "inbox")
    assert saved is not None and saved.cursor is not None
    world.on_progress = None

    result = await inbox(ctx)

    assert result["stored"] == 150
    assert await count_rows(world, RedditInboxMessage) == 250
    ok = [r for r in world.fake.requests_to("inbox") if r.status == 200]
    assert ok[1].query.get("after") == saved.cursor


async def test_periodic_fan_out_covers_active_and_paused_accounts(world: RedditWorld) -> None:
    alice = await world.add_account("alice")
    bob = await world.add_account("bob")
    await world.add_account("ghost", credentials=False)
    async with world.services() as (accounts, _, _):
        await accounts.pause(world.operator, bob)

    stats = await refresh_stats_all(world.ctx("reddit.refresh_stats_all", {"days": 3}, job_id=1))
    mail = await inbox_all(world.ctx("reddit.inbox_all", {}, job_id=2))

    assert stats == {"queued": 2} and mail == {"queued": 2}
    jobs = await world.jobs_of_kind(REFRESH_STATS)
    assert sorted(j.payload["account_id"] for j in jobs) == [alice, bob]
    assert all(j.payload["days"] == 3 for j in jobs)
    assert len(await world.jobs_of_kind(INBOX)) == 2


async def test_backfills_skip_accounts_without_credentials(world: RedditWorld) -> None:
    ghost = await world.add_account("ghost", credentials=False)
    for handler, kind in (
        (backfill_submissions, BACKFILL_SUBMISSIONS),
        (refresh_stats, REFRESH_STATS),
        (inbox, INBOX),
    ):
        result = await handler(world.ctx(kind, {"account_id": ghost}))
        assert "skipped" in result
    assert world.fake.requests == []
