"""The submit job against the fake Reddit: every outcome, and never a double post."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from core.jobs.registry import PermanentFailure, RetryLater
from core.reddit import RedditUnknownOutcome
from core.reddit_ops import REFRESH_STATS
from core.reddit_ops.backfill import refresh_stats
from core.reddit_ops.submit import submit_post
from storage.reddit_models import AccountStatus, PostStatus, RedditPost
from storage.vault_models import VaultItem
from tests.fakes.reddit import S3_PUBLIC
from tests.integration import test_reddit_helpers as helpers
from tests.integration.test_reddit_helpers import PNG, RedditWorld

vt, fake, world = helpers.vt, helpers.fake, helpers.world  # fixtures


async def test_self_post_is_published_with_its_permalink(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id, title="Hello", body="Body text")

    result = await world.run_job(submit_post, job_id)

    (made,) = world.fake.posts_by("alice")
    assert (made.kind, made.title, made.text, made.subreddit) == (
        "self",
        "Hello",
        "Body text",
        "testsub",
    )
    post = await world.post(post_id)
    assert post.status == PostStatus.published
    assert post.fullname == made.fullname
    assert post.permalink == f"https://www.reddit.com{made.permalink}"
    assert post.published_at is not None
    assert post.published_at.timestamp() == made.created_utc  # when Reddit answered
    assert result == {
        "post_id": post_id,
        "fullname": made.fullname,
        "permalink": post.permalink,
        "how": "sent",
    }
    (told,) = world.texts
    assert told.startswith("✅ Published on r/testsub as u/alice: “Hello”")
    assert post.permalink in told
    form = world.fake.requests_to("submit")[0].form
    assert form["validate_on_submit"] == "True" and form["api_type"] == "json"


async def test_an_unmarked_post_to_an_18_plus_subreddit_goes_out_marked_by_reddit(
    world: RedditWorld,
) -> None:
    world.fake.add_subreddit("grownups", over18=True)
    account_id = await world.add_account("alice")
    post_id = await world.draft(account_id, subreddit="grownups", nsfw=False)
    async with world.services() as (_, posts, _):
        report = await posts.preflight(world.operator, post_id)
    assert report.errors == []
    assert [f.code for f in report.warnings] == ["NSFW_MARKED_BY_REDDIT"]
    result = await world.queue(post_id)
    await world.run_job(submit_post, result.job_id)
    assert (await world.post(post_id)).status == PostStatus.published
    (made,) = world.fake.posts_by("alice")
    assert made.nsfw  # Reddit's doing, not ours


async def test_a_post_removed_at_once_says_so_at_once(world: RedditWorld) -> None:
    """Submit answers success, but AutoModerator removed the post the same moment: one look
    right after submit, and the operators read "published, but removed" now, not in an hour
    (and the hourly stats refresh does not tell it again)."""
    world.fake.add_subreddit("strictsub").removes_new = "automod_filtered"
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id, subreddit="strictsub", title="Hi")

    result = await world.run_job(submit_post, job_id)

    assert result["removed_by"] == "automod_filtered"
    post = await world.post(post_id)
    assert post.status == PostStatus.published and post.removed_by_category == "automod_filtered"
    (told,) = world.texts
    assert told.startswith(
        "⚠️ Published on r/strictsub as u/alice, but removed by AutoModerator's filter at once"
    )
    assert [r.path for r in world.fake.requests_to("info")] == ["/api/info"]
    async with world.services() as (_, posts, _):
        (entry,) = await posts.listed(world.viewer, "published", 5)
    assert entry.state == "removed by AutoModerator's filter"
    stats = await refresh_stats(world.ctx(REFRESH_STATS, {"account_id": account_id}))
    assert stats["removal_alerts"] == 0 and len(world.texts) == 1


async def test_link_post_with_flair_nsfw_and_spoiler(world: RedditWorld) -> None:
    flair_id = world.fake.subreddits["testsub"].flairs[0]["flair_template_id"]
    account_id = await world.add_account("alice")
    _, job_id = await world.queued_post(
        account_id,
        kind="link",
        url="https://example.com/article",
        title="A link",
        flair_id=flair_id,
        nsfw=True,
        spoiler=True,
    )

    await world.run_job(submit_post, job_id)

    (made,) = world.fake.posts_by("alice")
    assert (made.kind, made.url, made.flair_id, made.flair_text) == (
        "link",
        "https://example.com/article",
        flair_id,
        "News",
    )
    assert made.nsfw and made.spoiler
    assert "text" not in world.fake.requests_to("submit")[0].form


async def test_an_image_post_follows_the_media_websocket(world: RedditWorld) -> None:
    """Reddit processes the image a few seconds before the post appears anywhere; the lease's
    websocket says "success" with the post's URL, so nothing is polled."""
    stored = await world.blobs.put_bytes(PNG)
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(
        account_id, kind="image", title="Via the socket", image_blob_key=stored.key
    )
    await world.run_job(submit_post, job_id)
    (made,) = world.fake.posts_by("alice")
    post = await world.post(post_id)
    assert post.status == PostStatus.published and post.fullname == made.fullname
    assert post.permalink == f"https://www.reddit.com{made.permalink}"
    assert world.fake.media_sockets == [made.media_key]
    assert world.fake.requests_to("/user/alice/submitted") == []


async def test_an_image_rejected_over_the_websocket_is_reported_as_such(
    world: RedditWorld,
) -> None:
    world.fake.reject_images = True
    stored = await world.blobs.put_bytes(PNG)
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(
        account_id, kind="image", title="Bad pixels", image_blob_key=stored.key
    )
    with pytest.raises(PermanentFailure):
        await world.run_job(submit_post, job_id)
    post = await world.post(post_id)
    assert post.status == PostStatus.failed and post.last_error_code == "MEDIA_REJECTED"
    assert "Reddit rejected the image" in (post.last_error_message or "")
    (told,) = world.texts
    assert "Reddit rejected the image" in told and "removed at once" not in told
    assert world.fake.requests_to("/user/alice/submitted") == []  # no polling for minutes


async def test_without_the_websocket_an_image_post_is_found_once_processed(
    world: RedditWorld,
) -> None:
    world.fake.websocket_enabled = False
    world.fake.image_processing_seconds = 1.5  # not in the first look, in the second
    stored = await world.blobs.put_bytes(PNG)
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(
        account_id, kind="image", title="Polled", image_blob_key=stored.key
    )
    await world.run_job(submit_post, job_id)
    assert (await world.post(post_id)).status == PostStatus.published
    assert len(world.fake.requests_to("/user/alice/submitted")) == 2


async def test_image_post_from_a_stored_blob(world: RedditWorld) -> None:
    stored = await world.blobs.put_bytes(PNG)
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(
        account_id,
        kind="image",
        title="A picture",
        image_blob_key=stored.key,
        image_name="cat.png",
        image_mime="image/png",
    )

    await world.run_job(submit_post, job_id)

    (made,) = world.fake.posts_by("alice")
    assert made.kind == "image"
    (upload,) = world.fake.uploads.values()
    assert (upload.data, upload.filename, upload.content_type) == (PNG, "cat.png", "image/png")
    assert world.fake.requests_to("submit")[0].form["url"] == f"{S3_PUBLIC}/{upload.key}"
    post = await world.post(post_id)
    assert (post.status, post.fullname) == (PostStatus.published, made.fullname)
    assert post.permalink == f"https://www.reddit.com{made.permalink}"


async def test_image_post_from_a_vault_item(world: RedditWorld) -> None:
    stored = await world.blobs.put_bytes(PNG)
    async with world.sessionmaker() as session:
        item = VaultItem(
            tenant_id=world.tenant_id,
            sha256=stored.sha256,
            size=stored.size,
            mime="image/png",
            kind="photo",
            name="vault.png",
            blob_key=stored.key,
            nsfw=False,
            created_at=world.vt.now(),
        )
        session.add(item)
        await session.commit()
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(
        account_id, kind="image", title="From the vault", vault_item_id=item.id
    )

    await world.run_job(submit_post, job_id)

    (upload,) = world.fake.uploads.values()
    assert (upload.data, upload.filename) == (PNG, "vault.png")
    assert (await world.post(post_id)).status == PostStatus.published


async def test_ratelimit_reschedules_at_reddits_time_not_a_failure(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id)
    world.fake.queue_error(
        "submit", ratelimit="you are doing that too much. try again in 9 minutes."
    )
    now = world.vt.now()

    with pytest.raises(RetryLater) as caught:
        await world.run_job(submit_post, job_id)

    assert caught.value.seconds == 540
    assert "9 minutes" in caught.value.message
    post = await world.post(post_id)
    assert post.status == PostStatus.queued
    assert post.scheduled_for == now + timedelta(seconds=540)
    assert post.last_error_code == "RATELIMIT"
    assert (await world.account(account_id)).cooldown_until == now + timedelta(seconds=540)
    assert world.texts == []  # not a failure: nobody is alarmed
    # the account's next post is planned after Reddit's wait, and says why
    later = await world.queue(await world.draft(account_id, title="next"))
    assert later.decision.scheduled_for == now + timedelta(seconds=540)
    assert "Reddit asked u/alice to wait" in (later.decision.reason or "")

    world.vt.advance(540)
    await world.run_job(submit_post, job_id)
    assert world.fake.count_posts(username="alice") == 1
    assert (await world.post(post_id)).status == PostStatus.published


@pytest.mark.parametrize(
    ("subreddit", "requirements", "values", "code", "words"),
    [
        (
            "strict",
            {"title_blacklisted_strings": ["free"]},
            {"title": "Free stuff"},
            "SUBMIT_VALIDATION_TITLE_BLACKLISTED_STRING",
            'You may not have "free" in your title.',
        ),
        (
            "strict",
            {"is_flair_required": True},
            {},
            "SUBMIT_VALIDATION_FLAIR_REQUIRED",
            "Your post must contain post flair.",
        ),
        ("nowhere", None, {}, "SUBREDDIT_NOEXIST", "r/nowhere does not exist"),
    ],
)
async def test_rule_errors_fail_at_once_with_the_reason(
    world: RedditWorld,
    subreddit: str,
    requirements: dict | None,
    values: dict,
    code: str,
    words: str,
) -> None:
    if requirements is not None:
        world.fake.add_subreddit(subreddit, requirements=requirements)
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id, subreddit=subreddit, **values)

    with pytest.raises(PermanentFailure) as caught:
        await world.run_job(submit_post, job_id)

    assert code in caught.value.message
    post = await world.post(post_id)
    assert post.status == PostStatus.failed
    assert (post.last_error_code, post.last_error_message) == (code, words.strip())
    (told,) = world.texts
    assert told.startswith(f"❌ Not published on r/{subreddit} as u/alice")
    assert words.strip() in told
    assert world.fake.posts == []


async def test_json_errors_in_plain_words(world: RedditWorld) -> None:
    world.fake.add_subreddit("linksonly", submission_type="link")
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id, subreddit="linksonly")

    with pytest.raises(PermanentFailure):
        await world.run_job(submit_post, job_id)

    post = await world.post(post_id)
    assert post.last_error_code == "NO_SELFS"
    assert post.last_error_message == "this subreddit does not allow text posts"


async def test_failed_post_can_be_fixed_and_queued_again(world: RedditWorld) -> None:
    world.fake.add_subreddit("strict", requirements={"title_blacklisted_strings": ["free"]})
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id, subreddit="strict", title="Free")
    with pytest.raises(PermanentFailure):
        await world.run_job(submit_post, job_id)
    async with world.services() as (_, posts, _):
        await posts.update(world.operator, post_id, title="Gratis")
    result = await world.queue(post_id)
    await world.run_job(submit_post, result.job_id)
    assert (await world.post(post_id)).status == PostStatus.published


async def test_timeout_after_reddit_processed_it_is_found_not_resent(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id, title="Exactly once")
    world.fake.queue_error("submit", hang=3, process=True)  # Reddit creates it, answers late

    result = await world.run_job(submit_post, job_id)

    assert result["how"] == "found"
    assert world.fake.count_posts(title="Exactly once") == 1
    assert len(world.fake.requests_to("submit")) == 1
    post = await world.post(post_id)
    assert (post.status, post.fullname) == (PostStatus.published, world.fake.posts[0].fullname)
    assert "not sent twice" in world.texts[-1]


async def test_timeout_before_processing_retries_after_looking(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id, title="Lost in transit")
    world.fake.queue_error("submit", hang=3)  # nothing happens at Reddit

    with pytest.raises(RedditUnknownOutcome):
        await world.run_job(submit_post, job_id)

    post = await world.post(post_id)
    assert post.status == PostStatus.publishing  # unsure: the next attempt looks first
    assert post.last_error_code == "UNKNOWN_OUTCOME"
    looks = len(world.fake.requests_to("/user/alice/submitted"))
    assert looks == 1

    await world.run_job(submit_post, job_id, attempt=2)

    assert len(world.fake.requests_to("/user/alice/submitted")) == looks + 1  # looked again
    assert world.fake.count_posts(title="Lost in transit") == 1
    assert len(world.fake.requests_to("submit")) == 2
    assert (await world.post(post_id)).status == PostStatus.published


async def test_a_worker_that_died_mid_submit_never_posts_twice(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id, title="Crash")
    # The first worker sent the post and died before writing anything down.
    world.fake.add_post("alice", "testsub", "Crash")
    async with world.sessionmaker() as session:
        await session.execute(
            update(RedditPost)
            .where(RedditPost.id == post_id)
            .values(status=PostStatus.publishing, attempted_at=world.vt.now())
        )
        await session.commit()
    world.vt.advance(60)

    result = await world.run_job(submit_post, job_id, attempt=2)

    assert result["how"] == "found"
    assert world.fake.requests_to("submit") == []
    assert world.fake.count_posts(title="Crash") == 1


async def test_an_old_post_with_the_same_title_does_not_count(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    world.fake.add_post(
        "alice", "testsub", "Weekly thread", created_utc=world.vt.timestamp() - 8 * 86400
    )
    post_id, job_id = await world.queued_post(account_id, title="Weekly thread")
    world.fake.queue_error("submit", hang=3)

    with pytest.raises(RedditUnknownOutcome):
        await world.run_job(submit_post, job_id)
    await world.run_job(submit_post, job_id, attempt=2)

    assert world.fake.count_posts(title="Weekly thread") == 2  # last week's and this one
    post = await world.post(post_id)
    assert post.fullname == world.fake.posts[-1].fullname


async def test_accepted_image_that_cannot_be_seen_yet_is_never_resent(world: RedditWorld) -> None:
    stored = await world.blobs.put_bytes(PNG)
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(
        account_id, kind="image", title="Shy picture", image_blob_key=stored.key
    )
    # No media websocket, and Reddit accepts the submit but its listing fails a while.
    world.fake.websocket_enabled = False
    world.fake.queue_error("/user/alice/submitted", status=503, times=12)

    with pytest.raises(RedditUnknownOutcome) as caught:
        await world.run_job(submit_post, job_id)

    assert caught.value.accepted
    post = await world.post(post_id)
    assert post.status == PostStatus.publishing and post.reddit_accepted
    world.fake._faults.clear()
    await world.run_job(submit_post, job_id, attempt=2)

    assert len(world.fake.requests_to("submit")) == 1
    assert world.fake.count_posts(title="Shy picture") == 1
    post = await world.post(post_id)
    assert (post.status, post.fullname) == (PostStatus.published, world.fake.posts[0].fullname)


async def test_accepted_but_never_seen_fails_with_advice_at_the_last_attempt(
    world: RedditWorld,
) -> None:
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id, title="Vanished")
    async with world.sessionmaker() as session:
        await session.execute(
            update(RedditPost)
            .where(RedditPost.id == post_id)
            .values(status=PostStatus.publishing, reddit_accepted=True, attempted_at=world.vt.now())
        )
        await session.commit()

    with pytest.raises(RedditUnknownOutcome):
        await world.run_job(submit_post, job_id, attempt=2)
    with pytest.raises(PermanentFailure):
        await world.run_job(submit_post, job_id, attempt=6)

    assert world.fake.requests_to("submit") == []
    post = await world.post(post_id)
    assert post.status == PostStatus.failed
    assert post.last_error_code == "ACCEPTED_NOT_FOUND"
    assert "check the profile" in (post.last_error_message or "")


async def test_dry_run_without_credentials_sends_nothing(world: RedditWorld) -> None:
    account_id = await world.add_account("ghost", credentials=False)
    post_id, job_id = await world.queued_post(account_id, title="Pretend")

    result = await world.run_job(submit_post, job_id)

    assert result == {"post_id": post_id, "fullname": f"t3_dryrun_{post_id}", "dry_run": True}
    assert world.fake.requests == []
    post = await world.post(post_id)
    assert (post.status, post.dry_run, post.fullname) == (
        PostStatus.published,
        True,
        f"t3_dryrun_{post_id}",
    )
    (told,) = world.texts
    assert told.startswith("🧪 DRY RUN — nothing was sent to Reddit.")
    assert "rules cannot be read" in told  # says what could not be checked


async def test_dry_run_with_credentials_checks_the_rules_but_never_submits(
    world: RedditWorld,
) -> None:
    world.fake.add_subreddit("strict", requirements={"title_blacklisted_strings": ["free"]})
    account_id = await world.add_account("alice", dry_run=True)
    good, good_job = await world.queued_post(account_id, title="Fine")
    bad, bad_job = await world.queued_post(account_id, subreddit="strict", title="Free")

    await world.run_job(submit_post, good_job)
    with pytest.raises(PermanentFailure, match="DRY_RUN_PREFLIGHT"):
        await world.run_job(submit_post, bad_job)

    assert world.fake.requests_to("submit") == [] and world.fake.uploads == {}
    assert world.fake.requests_to("/r/testsub/about")  # the rules were read
    assert (await world.post(good)).fullname == f"t3_dryrun_{good}"
    bad_post = await world.post(bad)
    assert bad_post.status == PostStatus.failed
    assert "does not allow “free” in the title" in (bad_post.last_error_message or "")


async def test_login_refused_at_submit_pauses_the_account_and_keeps_the_post(
    world: RedditWorld,
) -> None:
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id)
    world.fake.accounts["alice"].password = "changed"

    with pytest.raises(RetryLater):
        await world.run_job(submit_post, job_id)

    assert (await world.account(account_id)).status == AccountStatus.auth_failed
    post = await world.post(post_id)
    assert (post.status, post.last_error_code) == (PostStatus.queued, "ACCOUNT_AUTH_FAILED")
    assert "refused the login for u/alice" in world.texts[-1]


async def test_suspended_at_submit_pauses_the_account(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id)
    world.fake.accounts["alice"].suspended = True  # the fake answers the submit with 403

    with pytest.raises(RetryLater):
        await world.run_job(submit_post, job_id)

    assert (await world.account(account_id)).status == AccountStatus.suspended
    assert (await world.post(post_id)).status == PostStatus.queued
    assert "suspended" in world.texts[-1]


async def test_pacing_is_checked_again_when_the_job_runs(world: RedditWorld) -> None:
    account_id = await world.add_account("alice", min_gap_minutes=30)
    _, first_job = await world.queued_post(account_id, title="first")
    second, second_job = await world.queued_post(account_id, title="second")
    # Someone forced the second one to now (e.g. retried it from /jobs).
    async with world.sessionmaker() as session:
        await session.execute(
            update(RedditPost).where(RedditPost.id == second).values(scheduled_for=world.vt.now())
        )
        await session.commit()
    await world.run_job(submit_post, first_job)
    world.vt.advance(60)

    with pytest.raises(RetryLater) as caught:
        await world.run_job(submit_post, second_job)

    # 30 min after the first went out; the look right after it took the budget's pacing
    assert caught.value.seconds == pytest.approx(29 * 60, abs=2)
    post = await world.post(second)
    assert post.status == PostStatus.queued
    assert "keeps 30 min between posts" in (post.pacing_note or "")
    assert world.fake.count_posts(username="alice") == 1


async def test_a_job_that_runs_early_waits_for_its_time(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id = await world.draft(account_id)
    result = await world.queue(post_id, world.vt.now() + timedelta(hours=1))

    with pytest.raises(RetryLater) as caught:
        await world.run_job(submit_post, result.job_id)

    assert caught.value.seconds == pytest.approx(3600)
    assert world.fake.requests == []


async def test_one_submit_at_a_time_per_account(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    busy, _ = await world.queued_post(account_id, title="busy")
    _, job_id = await world.queued_post(account_id, title="waiting")
    async with world.sessionmaker() as session:
        await session.execute(
            update(RedditPost)
            .where(RedditPost.id == busy)
            .values(status=PostStatus.publishing, attempted_at=world.vt.now())
        )
        await session.commit()

    with pytest.raises(RetryLater, match="another post is being sent"):
        await world.run_job(submit_post, job_id)
    assert world.fake.requests_to("submit") == []
