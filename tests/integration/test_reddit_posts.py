"""The post queue: drafts, pre-flight, pacing, approval, edits, reschedule, cancel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from core.errors import Conflict, Forbidden, InvalidInput
from core.reddit_ops import SUBMIT
from core.reddit_ops.post_fields import IMAGE_MAX_BYTES, image_file_problem
from core.reddit_ops.submit import submit_post
from storage.models import AuditEntry, Job, JobStatus
from storage.reddit_models import PostStatus, RedditPost
from tests.integration import test_reddit_helpers as helpers
from tests.integration.test_reddit_helpers import RedditWorld

vt, fake, world = helpers.vt, helpers.fake, helpers.world  # fixtures


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


async def test_draft_fields_are_checked(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    cases = [
        ({"subreddit": "r/not a name"}, "valid subreddit"),
        ({"kind": "video"}, "text (self), link or image"),
        ({"title": "   "}, "title is empty"),
        ({"title": "x" * 301}, "Reddit allows 300"),
        ({"kind": "link", "url": None}, "needs a link"),
        ({"kind": "link", "url": "example.com"}, "http://"),
        ({"kind": "image"}, "needs an image"),
        ({"kind": "image", "vault_item_id": 999}, "does not exist"),
        ({"flair_text": "f" * 65}, "64 characters"),
    ]
    for values, words in cases:
        with pytest.raises(InvalidInput) as caught:
            await world.draft(account_id, **values)
        assert words in caught.value.message, values
    async with world.services() as (_, posts, _):
        with pytest.raises(Forbidden):
            await posts.create_draft(
                world.viewer, account_id=account_id, subreddit="x1", kind="self", title="t"
            )


async def test_draft_normalises_and_is_audited(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id = await world.draft(account_id, subreddit="/r/TestSub/", kind="text", title=" A  b ")
    post = await world.post(post_id)
    assert (post.subreddit, post.subreddit_key, post.kind, post.title) == (
        "TestSub",
        "testsub",
        "self",
        "A b",
    )
    assert post.status == PostStatus.draft
    async with world.sessionmaker() as session:
        actions = (await session.execute(select(AuditEntry.action))).scalars().all()
    assert "reddit.post.draft" in actions


async def test_queue_creates_the_submit_job_at_the_scheduled_time(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id = await world.draft(account_id)
    when = world.vt.now() + timedelta(hours=3)

    result = await world.queue(post_id, when)

    assert not result.decision.moved and result.decision.reason is None
    assert result.post.status == PostStatus.queued
    assert result.post.scheduled_for == when
    job = await world.job(result.job_id)
    assert (job.kind, job.status, job.run_at, job.payload) == (
        SUBMIT,
        JobStatus.queued,
        when,
        {"post_id": post_id},
    )
    assert result.post.job_id == job.id
    with pytest.raises(Conflict):  # a second press queues nothing
        await world.queue(post_id, when)
    assert len(await world.jobs_of_kind(SUBMIT)) == 1


async def test_a_time_in_the_past_means_now(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    result = await world.queue(await world.draft(account_id), world.vt.now() - timedelta(days=1))
    assert result.post.scheduled_for == world.vt.now()


async def test_account_gap_moves_a_post_and_says_why(world: RedditWorld) -> None:
    account_id = await world.add_account("alice", min_gap_minutes=30)
    now = world.vt.now()
    await world.queue(await world.draft(account_id, title="first"), now)

    second = await world.queue(await world.draft(account_id, title="second"), now + minutes(10))

    assert second.decision.moved
    assert second.decision.scheduled_for == now + minutes(30)
    assert second.decision.requested_for == now + minutes(10)
    assert "u/alice keeps 30 min between posts" in (second.decision.reason or "")
    assert second.post.pacing_note == second.decision.reason
    assert (await world.job(second.job_id)).run_at == now + minutes(30)


async def test_daily_limit_and_subreddit_gap(world: RedditWorld) -> None:
    alice = await world.add_account("alice", posts_per_day=2)
    bob = await world.add_account("bob")
    now = world.vt.now()
    async with world.services() as (_, posts, _):
        await posts.set_subreddit_gap(world.operator, "r/testsub", 60)
        assert await posts.subreddit_gaps(world.viewer) == {"testsub": 60}
    await world.queue(await world.draft(alice, subreddit="other1"), now)
    await world.queue(await world.draft(alice, subreddit="other2"), now + minutes(1))

    third = await world.queue(await world.draft(alice, subreddit="other3"), now + minutes(2))
    assert third.decision.scheduled_for == now + timedelta(hours=24)
    assert "at most 2 posts in any 24 hours" in (third.decision.reason or "")

    # the subreddit gap holds across accounts of the workspace
    await world.queue(await world.draft(alice, subreddit="testsub"), now + timedelta(hours=30))
    bobs = await world.queue(await world.draft(bob), now + timedelta(hours=30, minutes=5))
    assert bobs.decision.scheduled_for == now + timedelta(hours=31)
    assert "between posts to r/testsub" in (bobs.decision.reason or "")


async def test_plan_previews_without_changing_anything(world: RedditWorld) -> None:
    account_id = await world.add_account("alice", min_gap_minutes=60)
    now = world.vt.now()
    await world.queue(await world.draft(account_id), now)
    post_id = await world.draft(account_id)
    async with world.services() as (_, posts, _):
        decision = await posts.plan(world.viewer, post_id, now)
    assert decision.scheduled_for == now + minutes(60)
    assert (await world.post(post_id)).status == PostStatus.draft


async def test_approval_flow(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id = await world.draft(account_id)

    result = await world.queue(post_id, requires_approval=True)

    assert result.post.status == PostStatus.pending_approval
    job = await world.job(result.job_id)
    assert job.status == JobStatus.pending_approval and job.requires_approval
    assert ("approval", world.tenant_id, job.id) in world.notifier.events
    async with world.services() as (_, posts, _):
        approved = await posts.approve(world.owner, post_id)
        with pytest.raises(Conflict):
            await posts.approve(world.owner, post_id)
    assert approved.status == PostStatus.queued
    job = await world.job(result.job_id)
    assert (job.status, job.approved_by) == (JobStatus.queued, world.owner.user_id)


async def test_reject(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id = await world.draft(account_id)
    result = await world.queue(post_id, requires_approval=True)
    async with world.services() as (_, posts, _):
        rejected = await posts.reject(world.owner, post_id)
    assert rejected.status == PostStatus.cancelled
    assert rejected.last_error_message == "rejected by Olga"
    assert (await world.job(result.job_id)).status == JobStatus.cancelled


async def test_edit_while_queued_but_not_once_publishing(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id)
    async with world.services() as (_, posts, _):
        edited = await posts.update(world.operator, post_id, title="Better title", nsfw=True)
        assert (edited.title, edited.nsfw, edited.status) == ("Better title", True, "queued")
        with pytest.raises(InvalidInput):
            await posts.update(world.operator, post_id, fullname="t3_x")
        with pytest.raises(InvalidInput, match="break the post"):
            await posts.update(world.operator, post_id, kind="link")  # no link given
    assert (await world.post(post_id)).kind == "self"

    await world.run_job(submit_post, job_id)  # published: editing is over
    async with world.services() as (_, posts, _):
        with pytest.raises(Conflict, match="no longer be edited"):
            await posts.update(world.operator, post_id, title="Too late")


async def test_editing_the_subreddit_of_a_queued_post_replans_it(world: RedditWorld) -> None:
    alice = await world.add_account("alice")
    bob = await world.add_account("bob")
    now = world.vt.now()
    async with world.services() as (_, posts, _):
        await posts.set_subreddit_gap(world.operator, "busy", 120)
    await world.queue(await world.draft(bob, subreddit="busy"), now)
    result = await world.queue(await world.draft(alice, subreddit="quiet"), now)
    assert not result.decision.moved

    async with world.services() as (_, posts, _):
        edited = await posts.update(world.operator, result.post.id, subreddit="busy")

    assert edited.scheduled_for == now + timedelta(hours=2)
    assert "r/busy" in (edited.pacing_note or "")
    assert (await world.job(result.job_id)).run_at == now + timedelta(hours=2)


async def test_reschedule_and_post_now_move_the_job(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id = await world.draft(account_id)
    later = world.vt.now() + timedelta(days=2)
    result = await world.queue(post_id, later)
    async with world.services() as (_, posts, _):
        moved = await posts.reschedule(world.operator, post_id, later + timedelta(hours=1))
        assert moved.post.scheduled_for == later + timedelta(hours=1)
        assert moved.job_id == result.job_id
        assert (await world.job(result.job_id)).run_at == later + timedelta(hours=1)
        now = await posts.post_now(world.operator, post_id)
    assert now.post.scheduled_for == world.vt.now()
    assert (await world.job(result.job_id)).run_at == world.vt.now()


async def test_reschedule_replaces_a_job_that_is_gone(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id)
    async with world.uow.write() as session:  # pruned by maintenance, say
        await session.execute(delete(Job).where(Job.id == job_id))
    async with world.services() as (_, posts, _):
        result = await posts.post_now(world.operator, post_id)
    assert result.job_id is not None  # a new row (SQLite may give it the old id)
    job = await world.job(result.job_id)
    assert (job.status, job.kind, job.payload) == (JobStatus.queued, SUBMIT, {"post_id": post_id})
    assert (await world.post(post_id)).job_id == result.job_id


async def test_the_job_card_steers_the_post_in_the_same_write(world: RedditWorld) -> None:
    """Approve, reject and cancel on /jobs move the post too: one path per state change."""
    account_id = await world.add_account("alice")
    approved, approved_job = await _pending(world, account_id, "one")
    rejected, rejected_job = await _pending(world, account_id, "two")
    cancelled, cancelled_job = await world.queued_post(account_id, title="three")
    async with world.services() as (_, _, jobs):
        await jobs.approve(world.owner, approved_job)
        await jobs.reject(world.owner, rejected_job)
        await jobs.cancel(world.owner, cancelled_job)
    assert (await world.post(approved)).status == PostStatus.queued
    assert (await world.post(rejected)).status == PostStatus.cancelled
    assert (await world.post(rejected)).last_error_message == "rejected by Olga"
    assert (await world.post(cancelled)).status == PostStatus.cancelled
    async with world.sessionmaker() as session:
        rows = (await session.execute(select(AuditEntry.action, AuditEntry.target))).all()
    for action, post_id in (
        ("reddit.post.approve", approved),
        ("reddit.post.reject", rejected),
        ("reddit.post.cancel", cancelled),
    ):
        assert (action, f"reddit_post:{post_id}") in rows


async def test_a_job_whose_post_is_publishing_cannot_be_cancelled(world: RedditWorld) -> None:
    """Cancelling the job of a post whose outcome is being looked into would strand the post:
    both stay as they are, and the operator is told why."""
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id)
    async with world.uow.write() as session:
        await session.execute(
            update(RedditPost).where(RedditPost.id == post_id).values(status="publishing")
        )
    async with world.services() as (_, _, jobs):
        with pytest.raises(Conflict, match="publishing"):
            await jobs.cancel(world.owner, job_id)
    assert (await world.job(job_id)).status == JobStatus.queued
    assert (await world.post(post_id)).status == PostStatus.publishing


async def _pending(world: RedditWorld, account_id: int, title: str) -> tuple[int, int]:
    post_id = await world.draft(account_id, title=title)
    result = await world.queue(post_id, requires_approval=True)
    assert result.job_id is not None
    return post_id, result.job_id


async def test_cancel(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id)
    async with world.services() as (_, posts, _):
        cancelled = await posts.cancel(world.operator, post_id)
        with pytest.raises(Conflict, match="cancelled"):
            await posts.cancel(world.operator, post_id)
    assert cancelled.status == PostStatus.cancelled
    assert (await world.job(job_id)).status == JobStatus.cancelled
    assert await world.run_job(submit_post, job_id) == {"skipped": f"post #{post_id} is cancelled"}
    assert world.fake.requests_to("submit") == []


async def test_upcoming_lists_per_account_soonest_first(world: RedditWorld) -> None:
    alice = await world.add_account("alice")
    bob = await world.add_account("bob")
    now = world.vt.now()
    late = await world.draft(alice, title="late")
    soon = await world.draft(alice, title="soon")
    bobs = await world.draft(bob, title="bob's")
    await world.queue(late, now + timedelta(hours=5))
    await world.queue(soon, now + timedelta(hours=1))
    await world.queue(bobs, now + timedelta(hours=2), requires_approval=True)
    await world.draft(alice, title="still a draft")
    async with world.services() as (_, posts, _):
        everyone = await posts.upcoming(world.viewer)
        only_alice = await posts.upcoming(world.viewer, account_id=alice)
        assert await posts.count_upcoming(world.viewer) == 3
        assert [p.title for p in await posts.drafts(world.viewer)] == ["still a draft"]
        assert await posts.upcoming(world.stranger) == []
    assert [p.title for p in everyone] == ["soon", "bob's", "late"]
    assert [p.username for p in everyone] == ["alice", "bob", "alice"]
    assert [p.title for p in only_alice] == ["soon", "late"]


async def test_preflight_reads_the_subreddit_through_the_account(world: RedditWorld) -> None:
    world.fake.add_subreddit(
        "strict",
        submission_type="self",
        requirements={"title_blacklisted_strings": ["free"], "is_flair_required": True},
        flairs=["Discussion"],
    )
    account_id = await world.add_account("alice")
    post_id = await world.draft(account_id, subreddit="strict", title="Free stuff")
    elsewhere = await world.draft(account_id, subreddit="nowhere")
    async with world.services() as (_, posts, _):
        report = await posts.preflight(world.operator, post_id)
        facts = await posts.subreddit_facts(world.operator, account_id, "strict")
        missing = await posts.preflight(world.operator, elsewhere)
        # no transaction (SQLite: the write lock) is held while Reddit is asked
        await world.draft(account_id, title="written meanwhile")
    assert [f.code for f in report.errors] == ["TITLE_BLACKLISTED_STRING", "FLAIR_REQUIRED"]
    assert "“Discussion”" in report.errors[1].text
    assert facts.about is not None and facts.about.submission_type == "self"
    assert [f.text for f in facts.flairs or []] == ["Discussion"]
    assert [f.code for f in missing.errors] == ["SUBREDDIT_NOEXIST"]
    assert world.fake.requests_to("submit") == []


async def test_a_vault_image_must_be_an_image_reddit_takes(world: RedditWorld) -> None:
    from storage.vault_models import VaultItem

    account_id = await world.add_account("alice")
    rows = {
        "big": ("image/png", IMAGE_MAX_BYTES + 1, "blobs/big"),
        "pdf": ("application/pdf", 1000, "blobs/pdf"),
        "remote": ("image/png", 1000, None),  # Telegram holds the only copy
        "fine": ("image/png", IMAGE_MAX_BYTES, "blobs/fine"),
    }
    ids = {}
    async with world.sessionmaker() as session:
        for name, (mime, size, key) in rows.items():
            item = VaultItem(
                tenant_id=world.tenant_id,
                sha256=None,
                size=size,
                mime=mime,
                kind="document",
                name=f"{name}.bin",
                blob_key=key,
                nsfw=False,
                created_at=world.vt.now(),
            )
            session.add(item)
            await session.flush()
            ids[name] = item.id
        await session.commit()
    for name, words in (
        ("big", "Reddit takes pictures up to 20.0 MB"),
        ("pdf", "is application/pdf, not an image"),
        ("remote", "no stored copy"),
    ):
        with pytest.raises(InvalidInput) as caught:
            await world.draft(account_id, kind="image", vault_item_id=ids[name])
        assert words in caught.value.message, name
    post_id = await world.draft(account_id, kind="image", vault_item_id=ids["fine"])
    assert (await world.post(post_id)).vault_item_id == ids["fine"]


def test_image_file_problem_judges_what_telegram_declares() -> None:
    assert image_file_problem(mime="image/jpeg", size=10) is None
    assert image_file_problem(mime=None, size=None) is None  # unknown: fetch and sniff
    assert image_file_problem(mime="application/octet-stream", size=10) is None
    assert image_file_problem(mime="video/mp4", size=10) == "This file is video/mp4, not a picture."
    assert image_file_problem(mime="image/png", size=IMAGE_MAX_BYTES) is None
    too_big = image_file_problem(mime="image/png", size=IMAGE_MAX_BYTES + 1, what="This photo")
    assert too_big == "This photo is over 20.0 MB; Reddit takes pictures up to 20.0 MB."
    bigger = image_file_problem(mime=None, size=25 * 1024 * 1024)
    assert bigger == "This file is 25.0 MB; Reddit takes pictures up to 20.0 MB."
