"""Composing and publishing Reddit posts in chat, through the fake Telegram and the fake Reddit,
both over real HTTP: /post → preview → Queue / Send for approval, /posts and its buttons, and
what the submit job does with Reddit's answers."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import timedelta

import pytest

from bot.callbacks import JobAct, RedditPostAct
from core.settings import RedditSettings
from storage.models import Role, Tenant
from storage.reddit_models import RedditPost
from storage.repositories import reddit as reddit_repo
from tests.e2e.conftest import OPERATOR, OWNER, VIEWER, Harness
from tests.e2e.test_reddit_accounts import CLIENT_ID, CLIENT_SECRET, PASSWORD, reddit
from tests.e2e.test_vault_in_chat import PNG
from tests.fakes.reddit import FakeReddit

__all__ = ["reddit"]  # fixture

SLOW = 30.0  # generous waits: these tests run on loaded machines too


@pytest.fixture
async def rapp(start_app, reddit: FakeReddit) -> Harness:
    # Image uploads go to the fake's S3 stand-in through the setting production uses.
    settings = RedditSettings(
        _env_file=None,
        oauth_url=reddit.oauth_url,
        www_url=reddit.www_url,
        media_upload_url=reddit.media_upload_url,
    )
    harness = await start_app(reddit=settings)
    clients = harness.app.reddit_clients
    assert clients.config.media_upload_url == reddit.media_upload_url
    # A short Reddit timeout so the "no answer after sending" case takes seconds, not 30, and
    # the new image post is looked for quickly.
    clients.config = dataclasses.replace(
        clients.config, timeout=1.5, max_retries=1, image_lookup_delay=0.2
    )
    return harness


async def add_account(app: Harness, username: str, *, dry_run: bool = False) -> int:
    actor = await app.actor(OWNER)
    svc = app.app.services.reddit_accounts
    if dry_run:
        view = await svc.add(actor, username=username, auth_kind="none", check=False)
    else:
        view = await svc.add(
            actor,
            username=username,
            auth_kind="script",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            password=PASSWORD,
            check=False,
        )
    return view.id


async def compose(
    app: Harness,
    user: int,
    username: str,
    sr: str,
    title: str,
    *,
    kind: str = "Text post",
    body: str = "Hello from the team.",
    when: str = "now",
) -> dict:
    """/post → account → subreddit → kind → title → body/link → (no flags) → when; the preview.

    `when` is a preset button's label or text typed in the operator's timezone."""
    start = await app.say(user, "/post", "Which account")
    since = app.tg.mark()
    await app.press(user, start, app.button(start, f"u/{username}"))
    await app.tg.wait_for_message(user, "Which subreddit", since=since, timeout=SLOW)
    kinds = await app.say(user, f"r/{sr}", "What kind of post", timeout=SLOW)
    since = app.tg.mark()
    await app.press(user, kinds, app.button(kinds, kind))
    await app.tg.wait_for_message(user, "The title", since=since, timeout=SLOW)
    ask = {"Link post": "The link", "Image post": "vault number"}.get(kind, "The text of the")
    await app.say(user, title, ask, timeout=SLOW)
    flags = await app.say(user, body, "NSFW or spoiler", timeout=SLOW)
    since = app.tg.mark()
    await app.press(user, flags, app.button(flags, "Continue"))
    ask_when = await app.tg.wait_for_message(user, "When?", since=since, timeout=SLOW)
    since = app.tg.mark()
    if when in [t for t, _ in app.tg.buttons(ask_when)]:
        await app.press(user, ask_when, app.button(ask_when, when))
    else:
        await app.tg.send_text(app.users[user], when)
    return await app.tg.wait_for_message(user, "Preview", since=since, timeout=SLOW)


async def posts_in_db(app: Harness) -> list[RedditPost]:
    actor = await app.actor(OWNER)
    async with app.app.sessionmaker() as session:
        return await reddit_repo.list_posts(
            session,
            actor.tenant_id,
            statuses=(
                "draft",
                "pending_approval",
                "queued",
                "publishing",
                "published",
                "failed",
                "cancelled",
            ),
            limit=100,
        )


async def the_post(app: Harness) -> RedditPost:
    (post,) = await posts_in_db(app)
    return post


async def wait_post(app: Harness, predicate, timeout: float = SLOW) -> RedditPost:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        post = await the_post(app)
        if predicate(post):
            return post
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"post #{post.id} is {post.status} ({post.last_error_code}: "
                f"{post.last_error_message})"
            )
        await asyncio.sleep(0.1)


async def queue_it(app: Harness, user: int, card: dict, button: str = "Queue") -> dict:
    return await app.press(user, card, app.button(card, button))


def setup_reddit(reddit: FakeReddit, *subs: str, **sub_kw) -> None:
    reddit.add_account("team_main", PASSWORD, CLIENT_ID, CLIENT_SECRET)
    for sr in subs:
        reddit.add_subreddit(sr, **sub_kw)


# -- compose and publish -----------------------------------------------------------------------


async def test_self_post_is_published_exactly_once(rapp: Harness, reddit: FakeReddit) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Our weekly update")
    assert "Our weekly update" in card["text"] and "✅ passes r/opsdeck_test" in card["text"]
    assert "Queue" in rapp.buttons_text(card)
    since = rapp.tg.mark()
    answer = await queue_it(rapp, OPERATOR, card)
    assert "queued for" in answer["text"]
    note = await rapp.tg.wait_for_message(OPERATOR, "Published on r/", since=since, timeout=SLOW)
    assert "/comments/" in note["text"]
    assert [(p.title, p.kind, p.text) for p in reddit.posts] == [
        ("Our weekly update", "self", "Hello from the team.")
    ]
    post = await wait_post(rapp, lambda p: p.status == "published")
    assert post.fullname == reddit.posts[0].fullname and "/comments/" in post.permalink
    # nothing more goes out later
    await asyncio.sleep(1)
    assert len(reddit.requests_to("/api/submit")) == 1 and len(reddit.posts) == 1


async def test_a_post_removed_at_once_is_told_at_once(rapp: Harness, reddit: FakeReddit) -> None:
    """AutoModerator removes the post the moment it is made (submit still says success):
    the operators read "published, but removed" now, and the card says so."""
    setup_reddit(reddit, "opsdeck_strict")
    reddit.subreddits["opsdeck_strict"].removes_new = "automod_filtered"
    await add_account(rapp, "team_main")
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_strict", "Filtered at once")
    since = rapp.tg.mark()
    await queue_it(rapp, OPERATOR, card)
    note = await rapp.tg.wait_for_message(OPERATOR, "Published on r/", since=since, timeout=SLOW)
    assert note["text"].startswith(
        "⚠️ Published on r/opsdeck_strict as u/team_main, but removed by AutoModerator's "
        "filter at once"
    )
    post = await wait_post(rapp, lambda p: p.status == "published")
    listing = await rapp.say(VIEWER, "/posts published", "Published on Reddit")
    assert "Filtered at once" in listing["text"]
    assert "removed by AutoModerator's filter" in listing["text"]
    opened = await rapp.press(VIEWER, listing, rapp.button(listing, f"#{post.id}"))
    assert opened is not None
    card = await rapp.becomes(listing, lambda m: "On Reddit:" in m["text"])
    assert "On Reddit: removed by AutoModerator's filter" in card["text"]


async def test_link_post_is_published_exactly_once(rapp: Harness, reddit: FakeReddit) -> None:
    setup_reddit(reddit, "opsdeck_links")
    await add_account(rapp, "team_main")
    card = await compose(
        rapp,
        OPERATOR,
        "team_main",
        "opsdeck_links",
        "Release notes",
        kind="Link post",
        body="https://example.org/notes",
    )
    assert "https://example.org/notes" in card["text"]
    await queue_it(rapp, OPERATOR, card)
    await wait_post(rapp, lambda p: p.status == "published")
    assert [(p.kind, p.url) for p in reddit.posts] == [("link", "https://example.org/notes")]


async def test_image_post_from_a_photo_in_the_vault(rapp: Harness, reddit: FakeReddit) -> None:
    setup_reddit(reddit, "opsdeck_pics")
    await add_account(rapp, "team_main")
    since = rapp.tg.mark()
    await rapp.tg.send_file(rapp.user(OPERATOR), "photo", PNG)
    item = await rapp.tg.wait_for_message(OPERATOR, "file #", since=since, timeout=SLOW)
    item_id = int(re.search(r"file #(\d+)", item["text"]).group(1))
    card = await compose(
        rapp,
        OPERATOR,
        "team_main",
        "opsdeck_pics",
        "Team photo",
        kind="Image post",
        body=f"#{item_id}",
    )
    assert f"vault item #{item_id}" in card["text"]
    await queue_it(rapp, OPERATOR, card)
    post = await wait_post(rapp, lambda p: p.status == "published")
    assert [(p.kind, p.title) for p in reddit.posts] == [("image", "Team photo")]
    assert post.fullname == reddit.posts[0].fullname
    assert len(reddit.requests_to("/api/media/asset.json")) == 1


async def test_an_image_rejected_over_the_websocket_is_reported(
    rapp: Harness, reddit: FakeReddit
) -> None:
    """Reddit accepts the submit, then fails to process the image and says so on the media
    websocket: the operators read that the image was rejected, at once, not minutes later
    as "removed at once?"."""
    setup_reddit(reddit, "opsdeck_pics")
    reddit.reject_images = True
    await add_account(rapp, "team_main")
    since = rapp.tg.mark()
    await rapp.tg.send_file(rapp.user(OPERATOR), "photo", PNG)
    item = await rapp.tg.wait_for_message(OPERATOR, "file #", since=since, timeout=SLOW)
    item_id = int(re.search(r"file #(\d+)", item["text"]).group(1))
    card = await compose(
        rapp,
        OPERATOR,
        "team_main",
        "opsdeck_pics",
        "Broken pixels",
        kind="Image post",
        body=f"#{item_id}",
    )
    since = rapp.tg.mark()
    await queue_it(rapp, OPERATOR, card)
    note = await rapp.tg.wait_for_message(OPERATOR, "Not published", since=since, timeout=SLOW)
    assert "Reddit rejected the image" in note["text"] and "removed at once" not in note["text"]
    post = await wait_post(rapp, lambda p: p.status == "failed")
    assert post.last_error_code == "MEDIA_REJECTED"
    assert len(reddit.media_sockets) == 1
    assert reddit.requests_to("/user/team_main/submitted") == []


async def test_required_flair_and_nsfw_reach_reddit(rapp: Harness, reddit: FakeReddit) -> None:
    setup_reddit(
        reddit, "flaired", flairs=["News", "Meta"], requirements={"is_flair_required": True}
    )
    await add_account(rapp, "team_main")
    start = await rapp.say(OPERATOR, "/post", "Which account")
    await rapp.press(OPERATOR, start, rapp.button(start, "u/team_main"))
    await rapp.tg.wait_for_message(OPERATOR, "Which subreddit", timeout=SLOW)
    kinds = await rapp.say(OPERATOR, "r/flaired", "What kind of post", timeout=SLOW)
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, kinds, rapp.button(kinds, "Text post"))
    await rapp.tg.wait_for_message(OPERATOR, "The title", since=since, timeout=SLOW)
    await rapp.say(OPERATOR, "Flaired news", "The text of the post", timeout=SLOW)
    flair = await rapp.say(OPERATOR, "Body", "required here", timeout=SLOW)
    assert "No flair" not in rapp.buttons_text(flair)
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, flair, rapp.button(flair, "News"))
    flags = await rapp.tg.wait_for_message(OPERATOR, "NSFW or spoiler", since=since, timeout=SLOW)
    await rapp.press(OPERATOR, flags, rapp.button(flags, "NSFW: off"))
    flags = await rapp.becomes(flags, lambda m: "NSFW: on" in rapp.buttons_text(m))
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, flags, rapp.button(flags, "Continue"))
    ask_when = await rapp.tg.wait_for_message(OPERATOR, "When?", since=since, timeout=SLOW)
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, ask_when, rapp.button(ask_when, "now"))
    card = await rapp.tg.wait_for_message(OPERATOR, "Preview", since=since, timeout=SLOW)
    assert "flair: News" in card["text"] and "NSFW" in card["text"]
    await queue_it(rapp, OPERATOR, card)
    await wait_post(rapp, lambda p: p.status == "published")
    (sent,) = reddit.posts
    assert sent.flair_text == "News" and sent.nsfw


async def test_bad_input_is_asked_again_and_cancel_aborts(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    start = await rapp.say(OPERATOR, "/post", "Which account")
    await rapp.press(OPERATOR, start, rapp.button(start, "u/team_main"))
    await rapp.tg.wait_for_message(OPERATOR, "Which subreddit", timeout=SLOW)
    missing = await rapp.say(OPERATOR, "r/no_such_place", "Which subreddit, then?", timeout=SLOW)
    assert "❌" in missing["text"]
    kinds = await rapp.say(OPERATOR, "r/opsdeck_test", "What kind of post", timeout=SLOW)
    typed = await rapp.say(OPERATOR, "a text post please", "buttons above")
    assert typed
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, kinds, rapp.button(kinds, "Link post"))
    await rapp.tg.wait_for_message(OPERATOR, "The title", since=since, timeout=SLOW)
    too_long = await rapp.say(OPERATOR, "x" * 301, "Reddit allows 300")
    assert "301" in too_long["text"]
    await rapp.say(OPERATOR, "A fine title", "The link")
    bad_link = await rapp.say(OPERATOR, "example.org", "starts with http")
    assert bad_link
    await rapp.say(OPERATOR, "/cancel", "Stopped")
    after = await rapp.say(OPERATOR, "https://example.org", None)
    assert "NSFW" not in after["text"]  # the flow is over: the link is not taken
    assert await posts_in_db(rapp) == [] and reddit.posts == []


async def test_preflight_failure_is_shown_and_blocks_queueing(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "strict", requirements={"title_blacklisted_strings": ["giveaway"]})
    await add_account(rapp, "team_main")
    card = await compose(rapp, OPERATOR, "team_main", "strict", "Big giveaway today")
    assert "❌" in card["text"] and "giveaway" in card["text"]
    assert "Queue" not in rapp.buttons_text(card) and "Cancel" in rapp.buttons_text(card)
    post = await the_post(rapp)
    assert post.status == "draft"
    answer = await rapp.press(OPERATOR, card, rapp.button(card, "Cancel"))
    assert "cancelled" in answer["text"]
    assert reddit.posts == [] and not reddit.requests_to("/api/submit")


# -- scheduling ----------------------------------------------------------------------------------


async def test_scheduled_post_goes_out_at_its_time(rapp: Harness, reddit: FakeReddit) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Later today", when="+2h")
    assert "Goes out:" in card["text"]
    answer = await queue_it(rapp, OPERATOR, card)
    assert "queued for" in answer["text"]
    post = await the_post(rapp)
    assert post.status == "queued"
    assert timedelta(minutes=115) < post.scheduled_for - rapp.clock.now() < timedelta(minutes=125)
    listing = await rapp.say(VIEWER, "/posts", "Upcoming Reddit posts")
    assert "Later today" in listing["text"] and "u/team_main" in listing["text"]
    await asyncio.sleep(1.5)
    assert reddit.posts == []
    rapp.clock.advance(timedelta(hours=2, minutes=1))
    await wait_post(rapp, lambda p: p.status == "published")
    assert [p.title for p in reddit.posts] == ["Later today"]


async def test_posts_buttons_reschedule_post_now_and_cancel(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Movable", when="+3h")
    await queue_it(rapp, OPERATOR, card)
    post = await the_post(rapp)
    listing = await rapp.say(OPERATOR, "/posts", "Upcoming Reddit posts")
    await rapp.press(OPERATOR, listing, rapp.button(listing, f"#{post.id}"))
    pcard = await rapp.becomes(listing, lambda m: "Reschedule" in rapp.buttons_text(m))
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, pcard, rapp.button(pcard, "Reschedule"))
    await rapp.tg.wait_for_message(OPERATOR, "New time for post", since=since, timeout=SLOW)
    bad = await rapp.say(OPERATOR, "someday", None)
    assert "+2h" in bad["text"] or "Say when" in bad["text"]
    moved = await rapp.say(OPERATOR, "+5h", f"Post #{post.id}", timeout=SLOW)
    assert "queued" in moved["text"]
    post = await the_post(rapp)
    assert post.scheduled_for - rapp.clock.now() > timedelta(hours=4, minutes=50)
    answer = await rapp.press(OPERATOR, moved, rapp.button(moved, "Post now"))
    assert answer["text"] == f"Post #{post.id} goes out now."
    await wait_post(rapp, lambda p: p.status == "published")
    assert len(reddit.posts) == 1
    # a stale Cancel on a published post changes nothing and says why
    stale = await rapp.forge(OPERATOR, moved, RedditPostAct(act="cancel", id=post.id).pack())
    assert "published" in stale["text"]


# -- approval and roles ------------------------------------------------------------------------


async def test_approval_then_publish_and_viewer_refused(rapp: Harness, reddit: FakeReddit) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    # viewers cannot start composing at all
    refused = await rapp.say(VIEWER, "/post", "cannot")
    assert "compose posts" in refused["text"]
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Needs a look")
    answer = await queue_it(rapp, OPERATOR, card, "Send for approval")
    assert "waits for an operator's approval" in answer["text"]
    post = await the_post(rapp)
    assert post.status == "pending_approval"
    # viewers see the queue but cannot approve, not even with forged data
    listing = await rapp.say(VIEWER, "/posts", "Upcoming Reddit posts")
    assert "Needs a look" in listing["text"] and "pending approval" in listing["text"]
    refused = await rapp.forge(VIEWER, listing, RedditPostAct(act="approve", id=post.id).pack())
    assert "cannot approve posts" in refused["text"]
    await asyncio.sleep(1)
    assert reddit.posts == []
    # the owner approves from the post card; it goes out once
    olist = await rapp.say(OWNER, "/posts", "Upcoming Reddit posts")
    await rapp.press(OWNER, olist, rapp.button(olist, f"#{post.id}"))
    ocard = await rapp.becomes(olist, lambda m: "Approve" in rapp.buttons_text(m))
    approved = await rapp.press(OWNER, ocard, rapp.button(ocard, "Approve"))
    assert approved["text"].endswith("approved.")
    await wait_post(rapp, lambda p: p.status == "published")
    assert len(reddit.posts) == 1
    again = await rapp.forge(OWNER, ocard, RedditPostAct(act="approve", id=post.id).pack())
    assert "cannot be approved" in again["text"]


async def test_approval_from_the_job_card_publishes_and_reject_cancels(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Via the job card")
    await queue_it(rapp, OPERATOR, card, "Send for approval")
    post = await the_post(rapp)
    answer = await rapp.forge(OWNER, card, JobAct(act="approve", id=post.job_id).pack())
    assert "approve" in answer["text"].lower()
    post = await wait_post(rapp, lambda p: p.status == "published")
    assert [p.title for p in reddit.posts] == ["Via the job card"]
    # a second one, rejected on its job card, ends cancelled (not pending forever)
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Rejected one")
    await queue_it(rapp, OPERATOR, card, "Send for approval")
    second = next(p for p in await posts_in_db(rapp) if p.title == "Rejected one")
    await rapp.forge(OWNER, card, JobAct(act="reject", id=second.job_id).pack())
    listing = await rapp.say(OWNER, "/posts", "Upcoming Reddit posts")
    assert "Rejected one" not in listing["text"]
    rejected = next(p for p in await posts_in_db(rapp) if p.title == "Rejected one")
    assert rejected.status == "cancelled"
    assert len(reddit.posts) == 1


async def test_forged_press_for_another_workspace_is_refused(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Ours only", when="+1h")
    await queue_it(rapp, OPERATOR, card)
    post = await the_post(rapp)
    async with rapp.app.sessionmaker() as session:
        other = Tenant(slug="other", name="Other", created_at=rapp.clock.now())
        session.add(other)
        await session.commit()
        other_id = other.id
    intruder = 3001
    rapp.users[intruder] = rapp.tg.user(intruder, "Ian")
    await rapp.add_operator(intruder, Role.owner, tenant_id=other_id)
    listing = await rapp.say(intruder, "/posts", "Upcoming Reddit posts")
    assert "Ours only" not in listing["text"]
    for act in ("card", "now", "approve", "cancel", "queue"):
        answer = await rapp.forge(intruder, listing, RedditPostAct(act=act, id=post.id).pack())
        assert "does not exist in your workspace" in answer["text"], (act, answer)
    assert (await the_post(rapp)).status == "queued"


# -- what Reddit answers -------------------------------------------------------------------------


async def test_ratelimit_reschedules_instead_of_failing(rapp: Harness, reddit: FakeReddit) -> None:
    setup_reddit(reddit, "opsdeck_test")
    reddit.queue_error("submit", ratelimit="you are doing that too much. try again in 9 minutes.")
    await add_account(rapp, "team_main")
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Rate limited")
    await queue_it(rapp, OPERATOR, card)
    post = await wait_post(rapp, lambda p: p.last_error_code == "RATELIMIT")
    assert post.status == "queued"
    wait = post.scheduled_for - rapp.clock.now()
    assert timedelta(minutes=8) < wait <= timedelta(minutes=9)
    assert reddit.posts == []
    rapp.clock.advance(timedelta(minutes=10))
    await wait_post(rapp, lambda p: p.status == "published")
    assert len(reddit.posts) == 1 and len(reddit.requests_to("/api/submit")) == 2


async def test_submit_timeout_does_not_double_post(rapp: Harness, reddit: FakeReddit) -> None:
    setup_reddit(reddit, "opsdeck_test")
    # Reddit creates the post but answers only after our timeout
    reddit.queue_error("submit", hang=4, process=True)
    await add_account(rapp, "team_main")
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Slow answer")
    since = rapp.tg.mark()
    await queue_it(rapp, OPERATOR, card)
    post = await wait_post(rapp, lambda p: p.status == "published")
    note = await rapp.tg.wait_for_message(OPERATOR, "Published on r/", since=since, timeout=SLOW)
    assert "not sent twice" in note["text"]
    assert len(reddit.posts) == 1 and post.fullname == reddit.posts[0].fullname
    await asyncio.sleep(1)
    assert len(reddit.requests_to("/api/submit")) == 1


async def test_dry_run_sends_nothing(rapp: Harness, reddit: FakeReddit) -> None:
    await add_account(rapp, "team_dry", dry_run=True)
    start = await rapp.say(OPERATOR, "/post", "Which account")
    assert "dry run" in rapp.buttons_text(start)
    card = await compose(rapp, OPERATOR, "team_dry", "anything", "Dry title")
    since = rapp.tg.mark()
    await queue_it(rapp, OPERATOR, card)
    note = await rapp.tg.wait_for_message(OPERATOR, "DRY RUN", since=since, timeout=SLOW)
    assert "t3_dryrun_" in note["text"] and "nothing was sent" in note["text"]
    post = await wait_post(rapp, lambda p: p.status == "published")
    assert post.fullname.startswith("t3_dryrun_") and post.dry_run
    assert reddit.posts == [] and reddit.requests == []


async def test_cancel_at_the_preview_cancels_the_draft(rapp: Harness, reddit: FakeReddit) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Second thoughts")
    post = await the_post(rapp)
    answer = await rapp.say(OPERATOR, "/cancel", "Stopped")
    assert f"draft #{post.id} is cancelled" in answer["text"]
    assert (await the_post(rapp)).status == "cancelled"
    stale = await rapp.press(OPERATOR, card, rapp.button(card, "Queue"))
    assert "cancelled" in stale["text"] and reddit.posts == []


# -- edit ----------------------------------------------------------------------------------------


async def _edit(app: Harness, card: dict, field: str, ask: str) -> None:
    """Press Edit on `card`, pick `field` from the menu, wait for the question `ask`."""
    since = app.tg.mark()
    await app.press(OPERATOR, card, app.button(card, "Edit"))
    menu = await app.tg.wait_for_message(OPERATOR, "what should change", since=since, timeout=SLOW)
    since = app.tg.mark()
    await app.press(OPERATOR, menu, app.button(menu, field))
    await app.tg.wait_for_message(OPERATOR, ask, since=since, timeout=SLOW)


async def test_edit_at_the_preview_and_a_queued_post_publishes_the_new_title_once(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    card = await compose(rapp, OPERATOR, "team_main", "opsdeck_test", "Old title", when="+2h")
    # at the preview: change the text; back to the preview with the pre-flight run again
    await _edit(rapp, card, "Text", "The text of the")
    card = await rapp.say(OPERATOR, "Edited body.", "Preview", timeout=SLOW)
    assert "Edited body." in card["text"] and "✅ passes r/opsdeck_test" in card["text"]
    await queue_it(rapp, OPERATOR, card)
    post = await the_post(rapp)
    assert post.status == "queued" and post.body == "Edited body."
    # the queued post's card: Edit → Title
    listing = await rapp.say(OPERATOR, "/posts", "Upcoming Reddit posts")
    await rapp.press(OPERATOR, listing, rapp.button(listing, f"#{post.id}"))
    pcard = await rapp.becomes(listing, lambda m: "Edit" in rapp.buttons_text(m))
    await _edit(rapp, pcard, "Title", "The new title")
    saved = await rapp.say(OPERATOR, "New   title", "Saved.", timeout=SLOW)
    assert "New title" in saved["text"] and "Pre-flight" in saved["text"]
    post = await the_post(rapp)
    assert post.title == "New title" and post.status == "queued"
    # an edit begun before it runs and finished after it ran is refused
    await _edit(rapp, saved, "Title", "The new title")
    rapp.clock.advance(timedelta(hours=2, minutes=1))
    await wait_post(rapp, lambda p: p.status == "published")
    late = await rapp.say(OPERATOR, "Too late", "can no longer be edited", timeout=SLOW)
    assert "published" in late["text"]
    await asyncio.sleep(1)
    assert [p.title for p in reddit.posts] == ["New title"]
    assert len(reddit.requests_to("/api/submit")) == 1
    # and a stale Edit button on the published post says why
    stale = await rapp.press(OPERATOR, saved, rapp.button(saved, "Edit"))
    assert "published" in stale["text"] and "can no longer be edited" in stale["text"]
    assert (await the_post(rapp)).title == "New title"
