"""RedditClient against the fake Reddit over real HTTP, one case per test.

Client and fake share a `VirtualTime`: pacing and retry sleeps move the virtual clock instead
of waiting, so what the tests assert are the computed waits.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from core.reddit import (
    DEFAULT_SCOPES,
    RateBudgetRegistry,
    RedditAPIError,
    RedditAuthError,
    RedditClient,
    RedditForbidden,
    RedditMediaError,
    RedditMediaTooLarge,
    RedditNotFound,
    RedditRateLimited,
    RedditUnavailable,
    RedditUnknownOutcome,
    RedditValidationError,
    RefreshTokenCredentials,
    ScriptCredentials,
)
from core.reddit.config import Credentials
from tests.fakes.reddit import S3_PUBLIC, FakeReddit, VirtualTime

APP = "app-one"
SECRET = "app-one-secret"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

MakeClient = Callable[..., RedditClient]


@pytest.fixture
def vt() -> VirtualTime:
    return VirtualTime()


@pytest.fixture
async def fake(vt: VirtualTime) -> AsyncIterator[FakeReddit]:
    async with FakeReddit(clock=vt) as fake:
        fake.add_account("alice", "alice-pw", APP, SECRET)
        fake.add_subreddit("testsub", flairs=["News", "Meta"], rules=["Be kind", "No spam"])
        yield fake


@pytest.fixture
def registry(vt: VirtualTime) -> RateBudgetRegistry:
    return RateBudgetRegistry(clock=vt, sleep=vt.sleep)


@pytest.fixture
async def make_client(
    fake: FakeReddit, vt: VirtualTime, registry: RateBudgetRegistry
) -> AsyncIterator[MakeClient]:
    clients: list[RedditClient] = []

    def make(credentials: Credentials | None = None, **config: Any) -> RedditClient:
        creds = credentials or ScriptCredentials(APP, SECRET, "alice", "alice-pw")
        client = RedditClient(
            fake.client_config(**config),
            creds,
            registry.get(creds.client_id),
            clock=vt,
            sleep=vt.sleep,
            rng=random.Random(7),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def alice(make_client: MakeClient) -> RedditClient:
    return make_client()


def statuses(fake: FakeReddit, path: str) -> list[int]:
    return [r.status for r in fake.requests_to(path)]


# -- OAuth -----------------------------------------------------------------------------------


async def test_script_grant_then_api_call(fake: FakeReddit, alice: RedditClient) -> None:
    me = await alice.me()

    assert me.name == "alice"
    assert me.is_suspended is False
    assert (me.link_karma, me.comment_karma, me.inbox_count) == (1, 0, 0)
    token_request = fake.requests_to("token")[0]
    assert token_request.authorization is not None
    assert token_request.authorization.startswith("Basic ")
    assert token_request.form["grant_type"] == "password"
    assert token_request.form["username"] == "alice"
    assert fake.grants[0]["scope"] == " ".join(DEFAULT_SCOPES)
    assert "vote" not in fake.grants[0]["scope"].split()
    api_request = fake.requests_to("me")[0]
    assert api_request.authorization is not None
    assert api_request.authorization.startswith("bearer ")
    assert api_request.user_agent == "test:opsdeck.tests:0.1 (by /u/opsdeck_tests)"
    assert token_request.user_agent == api_request.user_agent


async def test_refresh_token_grant(fake: FakeReddit, make_client: MakeClient) -> None:
    account = fake.accounts["alice"]
    client = make_client(RefreshTokenCredentials(APP, SECRET, account.refresh_token))

    assert (await client.me()).name == "alice"
    assert await client.username() == "alice"
    assert fake.grants[0]["grant_type"] == "refresh_token"
    assert fake.requests_to("token")[0].form["refresh_token"] == account.refresh_token


async def test_wrong_password_is_http_200_invalid_grant(
    fake: FakeReddit, make_client: MakeClient
) -> None:
    client = make_client(ScriptCredentials(APP, SECRET, "alice", "not-her-password"))

    with pytest.raises(RedditAuthError) as caught:
        await client.me()

    assert statuses(fake, "token") == [200]
    assert caught.value.data["error"] == "invalid_grant"
    assert "wrong username or password" in caught.value.message
    assert fake.requests_to("me") == []


async def test_invalid_grant_names_all_three_causes(
    fake: FakeReddit, make_client: MakeClient
) -> None:
    """Reddit answers the same invalid_grant to a wrong password, an account that is not a
    developer of the script app, and an account with two-factor auth: say all three, and
    point the last one at Connect with Reddit."""
    fake.add_account("carol", "carol-pw", "other-app", "other-secret")
    fake.accounts["alice"].otp = "123456"
    for username, password in (("carol", "carol-pw"), ("alice", "alice-pw")):
        client = make_client(ScriptCredentials(APP, SECRET, username, password))
        with pytest.raises(RedditAuthError) as caught:
            await client.me()
        assert caught.value.data["error"] == "invalid_grant"
        message = caught.value.message
        assert "wrong username or password" in message
        assert f"u/{username} is not a developer of the script app {APP}" in message
        assert "two-factor" in message and "Connect with Reddit" in message


async def test_a_web_app_with_a_password_is_unauthorized_client(
    fake: FakeReddit, make_client: MakeClient
) -> None:
    fake.add_web_app("web-app", "web-secret", "https://ops.example/reddit/callback")
    client = make_client(ScriptCredentials("web-app", "web-secret", "alice", "alice-pw"))
    with pytest.raises(RedditAuthError) as caught:
        await client.me()
    assert caught.value.data["error"] == "unauthorized_client"
    assert "only a script app" in caught.value.message


async def test_revoked_refresh_token_is_auth_error(
    fake: FakeReddit, make_client: MakeClient
) -> None:
    client = make_client(RefreshTokenCredentials(APP, SECRET, "revoked-token"))

    with pytest.raises(RedditAuthError, match="refresh token"):
        await client.me()
    assert statuses(fake, "token") == [400]


async def test_wrong_app_secret_is_auth_error(fake: FakeReddit, make_client: MakeClient) -> None:
    client = make_client(ScriptCredentials(APP, "wrong-secret", "alice", "alice-pw"))

    with pytest.raises(RedditAuthError, match="client id or secret"):
        await client.me()
    assert statuses(fake, "token") == [401]


async def test_token_is_renewed_a_minute_before_expiry(
    fake: FakeReddit, alice: RedditClient, vt: VirtualTime
) -> None:
    await alice.me()
    vt.advance(3000)
    await alice.me()
    assert len(fake.grants) == 1

    vt.advance(545)  # 3545 s after the grant: inside the last minute
    await alice.me()

    assert len(fake.grants) == 2
    assert 401 not in statuses(fake, "me")


async def test_401_refreshes_once_and_retries_once(fake: FakeReddit, alice: RedditClient) -> None:
    await alice.me()
    fake.expire_tokens()

    assert (await alice.me()).name == "alice"

    assert statuses(fake, "me") == [200, 401, 200]
    assert len(fake.grants) == 2
    assert fake.requests_to("me")[1].authorization != fake.requests_to("me")[2].authorization


async def test_second_401_in_a_row_is_auth_error(fake: FakeReddit, alice: RedditClient) -> None:
    fake.queue_error("me", status=401, times=2)

    with pytest.raises(RedditAuthError):
        await alice.me()

    assert statuses(fake, "me") == [401, 401]
    assert len(fake.grants) == 2


async def test_missing_scope_is_forbidden(fake: FakeReddit, make_client: MakeClient) -> None:
    account = fake.accounts["alice"]
    account.refresh_scopes = "read"
    client = make_client(RefreshTokenCredentials(APP, SECRET, account.refresh_token))

    with pytest.raises(RedditForbidden, match="scope"):
        await client.me()


# -- rate limits -----------------------------------------------------------------------------


async def test_rate_limit_headers_are_read(fake: FakeReddit, alice: RedditClient) -> None:
    await alice.me()

    assert alice.budget.used == 1
    assert alice.budget.remaining == 999.0  # sent as "999.0"
    assert alice.budget.seconds_to_reset == pytest.approx(600)


async def test_pacing_spreads_requests_over_the_window(
    vt: VirtualTime, registry: RateBudgetRegistry
) -> None:
    async with FakeReddit(clock=vt, ratelimit_quota=10, ratelimit_window=20) as fake:
        fake.add_account("alice", "alice-pw", APP, SECRET)
        client = RedditClient(
            fake.client_config(),
            ScriptCredentials(APP, SECRET, "alice", "alice-pw"),
            registry.get(APP),
            clock=vt,
            sleep=vt.sleep,
        )
        async with client:
            for _ in range(3):
                await client.me()

    # after 1 of 10 used with 20 s left: 20/9 s; then 2 used, 18 s left: 18/8 s
    assert vt.sleeps == [pytest.approx(20 / 9), pytest.approx(18 / 8)]
    assert client.budget.total_wait_seconds == pytest.approx(20 / 9 + 18 / 8)


async def test_two_accounts_on_one_client_id_share_one_budget(
    fake: FakeReddit, make_client: MakeClient
) -> None:
    fake.add_account("bob", "bob-pw", APP, SECRET)
    fake.add_account("carol", "carol-pw", "app-two", "app-two-secret")
    alice = make_client()
    bob = make_client(ScriptCredentials(APP, SECRET, "bob", "bob-pw"))
    carol = make_client(ScriptCredentials("app-two", "app-two-secret", "carol", "carol-pw"))

    await alice.me()
    await bob.me()
    await carol.me()

    assert alice.budget is bob.budget
    assert carol.budget is not alice.budget
    assert alice.budget.used == 2  # Reddit counted alice + bob against app-one
    assert alice.budget.total_requests == 2
    assert carol.budget.used == 1
    assert fake.requests_per_client == {APP: 2, "app-two": 1}


def test_budget_must_belong_to_the_credentials_client_id(
    fake: FakeReddit, registry: RateBudgetRegistry
) -> None:
    with pytest.raises(ValueError, match="client id"):
        RedditClient(
            fake.client_config(),
            ScriptCredentials(APP, SECRET, "alice", "alice-pw"),
            registry.get("another-app"),
        )


async def test_429_with_html_body_honours_retry_after(
    fake: FakeReddit, alice: RedditClient, vt: VirtualTime
) -> None:
    fake.queue_error("me", status=429, retry_after=7)

    assert (await alice.me()).name == "alice"

    assert statuses(fake, "me") == [429, 200]
    assert vt.sleeps == [pytest.approx(7)]
    assert fake.throttled == 1
    assert alice.budget.throttled == 1


async def test_5xx_is_retried_with_jittered_backoff(
    fake: FakeReddit, alice: RedditClient, vt: VirtualTime
) -> None:
    fake.queue_error("me", status=502, times=2)

    assert (await alice.me()).name == "alice"

    assert statuses(fake, "me") == [502, 502, 200]
    first, second = vt.sleeps
    assert 0.5 <= first <= 1.0
    assert 1.0 <= second <= 2.0


async def test_5xx_forever_is_unavailable(fake: FakeReddit, make_client: MakeClient) -> None:
    client = make_client(max_retries=2)
    fake.queue_error("me", status=503, times=10)

    with pytest.raises(RedditUnavailable, match="503"):
        await client.me()

    assert statuses(fake, "me") == [503, 503, 503]


async def test_read_timeout_is_retried_for_reads(fake: FakeReddit, make_client: MakeClient) -> None:
    client = make_client(timeout=0.2)
    fake.queue_error("me", hang=5)

    assert (await client.me()).name == "alice"
    assert len(fake.requests_to("me")) == 2


async def test_cancelled_request_frees_its_budget_slot(
    fake: FakeReddit, alice: RedditClient
) -> None:
    fake.queue_error("me", hang=5)
    task = asyncio.create_task(alice.me())
    for _ in range(300):  # until the request is at the fake, hanging
        if fake.requests_to("me"):
            break
        await asyncio.sleep(0.01)
    assert alice.budget.in_flight == 1

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert alice.budget.in_flight == 0


async def test_150_calls_under_a_100_per_minute_limit_see_no_429(
    fake: FakeReddit, make_client: MakeClient, vt: VirtualTime
) -> None:
    fake.ratelimit_quota = 100_000  # headers allow a lot; only the hard ceiling holds back
    fake.enforce_limit(100, per_seconds=60)
    fake.add_account("bob", "bob-pw", APP, SECRET)
    alice = make_client()
    bob = make_client(ScriptCredentials(APP, SECRET, "bob", "bob-pw"))
    start = vt.timestamp()

    async def calls(client: RedditClient) -> None:
        for _ in range(75):
            await client.me()

    await asyncio.gather(calls(alice), calls(bob))

    assert fake.throttled == 0
    assert len(fake.requests_to("me")) == 150
    assert vt.timestamp() - start >= 60  # the 101st call had to wait for the window


async def test_without_the_ceiling_the_same_load_is_throttled(
    fake: FakeReddit, vt: VirtualTime
) -> None:
    """Control for the test above: the fake really enforces its limit."""
    fake.ratelimit_quota = 100_000
    fake.enforce_limit(100, per_seconds=60)
    loose = RateBudgetRegistry(max_requests=10_000, clock=vt, sleep=vt.sleep)
    client = RedditClient(
        fake.client_config(),
        ScriptCredentials(APP, SECRET, "alice", "alice-pw"),
        loose.get(APP),
        clock=vt,
        sleep=vt.sleep,
    )
    async with client:
        for _ in range(150):
            await client.me()  # still completes: each 429 is waited out

    assert fake.throttled > 0
    assert client.budget.throttled == fake.throttled


# -- errors from answers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sr", "kind", "code", "message"),
    [
        ("nosuchsub", "self", "SUBREDDIT_NOEXIST", "r/nosuchsub does not exist"),
        ("linksonly", "self", "NO_SELFS", "this subreddit does not allow text posts"),
        ("textonly", "link", "NO_LINKS", "this subreddit does not allow link posts"),
    ],
)
async def test_json_errors_are_classified(
    fake: FakeReddit, alice: RedditClient, sr: str, kind: str, code: str, message: str
) -> None:
    fake.add_subreddit("linksonly", submission_type="link")
    fake.add_subreddit("textonly", submission_type="self")
    url = "https://example.com/" if kind == "link" else None

    with pytest.raises(RedditAPIError) as caught:
        await alice.submit(sr, kind, "A title", text="body", url=url)

    assert caught.value.code == code
    assert caught.value.message == message
    assert fake.count_posts() == 0


async def test_queued_json_errors_list(fake: FakeReddit, alice: RedditClient) -> None:
    fake.queue_error(
        "submit",
        errors=[["SUBREDDIT_NOTALLOWED", "you aren't allowed to post there.", "sr"]],
    )

    with pytest.raises(RedditAPIError) as caught:
        await alice.submit("testsub", "self", "Hello", text="x")

    assert caught.value.items == [
        ("SUBREDDIT_NOTALLOWED", "you aren't allowed to post there.", "sr")
    ]
    assert caught.value.message == "this account is not allowed to post in r/testsub"


@pytest.mark.parametrize(
    ("reddit_message", "seconds"),
    [
        ("you are doing that too much. try again in 9 minutes.", 540),
        (
            "Looks like you've been doing that a lot. Take a break for 14 minutes before trying "
            "again.",
            840,
        ),
        ("you are doing that too much. try again in 5 seconds.", 5),
        ("you are doing that too much. try again in 500 milliseconds.", 1),
    ],
)
async def test_ratelimit_answer_becomes_seconds(
    fake: FakeReddit, alice: RedditClient, reddit_message: str, seconds: int
) -> None:
    fake.queue_error("submit", ratelimit=reddit_message)

    with pytest.raises(RedditRateLimited) as caught:
        await alice.submit("testsub", "self", "Hello", text="x")

    assert caught.value.seconds == seconds
    assert caught.value.reddit_message == reddit_message
    assert fake.count_posts() == 0
    assert len(fake.requests_to("submit")) == 1  # a RATELIMIT is not retried


async def test_submit_validation_400_blacklisted_title(
    fake: FakeReddit, alice: RedditClient
) -> None:
    fake.add_subreddit("strict", requirements={"title_blacklisted_strings": ["dfgfdgfdgdf"]})

    with pytest.raises(RedditValidationError) as caught:
        await alice.submit("strict", "link", "dfgfdgfdgdf", url="https://www.google.com")

    err = caught.value
    assert statuses(fake, "submit") == [400]
    assert err.reason == "SUBMIT_VALIDATION_TITLE_BLACKLISTED_STRING"
    assert err.explanation == 'You may not have "dfgfdgfdgdf" in your title. '
    assert err.fields == ["title"]
    assert err.message == 'You may not have "dfgfdgfdgdf" in your title.'


async def test_submit_validation_flair_required(fake: FakeReddit, alice: RedditClient) -> None:
    fake.add_subreddit("flairy", requirements={"is_flair_required": True}, flairs=["Q"])

    with pytest.raises(RedditValidationError) as caught:
        await alice.submit("flairy", "self", "Question", text="?")

    assert caught.value.reason == "SUBMIT_VALIDATION_FLAIR_REQUIRED"


async def test_subreddit_lookups(fake: FakeReddit, alice: RedditClient) -> None:
    fake.add_subreddit(
        "pics_only",
        submission_type="link",
        over18=True,
        requirements={"title_text_max_length": 120, "domain_blacklist": ["spam.example"]},
    )

    about = await alice.subreddit_about("r/pics_only")
    assert (about.name, about.submission_type, about.over18) == ("pics_only", "link", True)
    assert about.allows_images and not about.allows_self

    reqs = await alice.post_requirements("pics_only")
    assert reqs.title_text_max_length == 120
    assert reqs.domain_blacklist == ["spam.example"]
    assert reqs.body_restriction_policy == "none"

    flairs = await alice.flair_choices("testsub")
    assert [f.text for f in flairs] == ["News", "Meta"]
    assert all(f.template_id for f in flairs)
    flair_request = fake.requests_to("/r/testsub/api/flairselector")[0]
    assert flair_request.method == "POST"
    assert flair_request.form["is_newlink"] == "true"

    rules = await alice.subreddit_rules("testsub")
    assert [r.short_name for r in rules] == ["Be kind", "No spam"]


async def test_missing_private_and_redirected_subreddits(
    fake: FakeReddit, alice: RedditClient
) -> None:
    fake.add_subreddit("hidden", subreddit_type="private")
    fake.queue_error(
        "/r/ghost/about", status=302, headers={"location": "/subreddits/search?q=ghost"}
    )

    with pytest.raises(RedditNotFound, match="r/nosuch does not exist"):
        await alice.subreddit_about("nosuch")
    with pytest.raises(RedditNotFound, match="r/nosuch does not exist"):
        await alice.post_requirements("nosuch")
    with pytest.raises(RedditNotFound, match="r/ghost does not exist"):
        await alice.subreddit_about("ghost")
    with pytest.raises(RedditForbidden, match="r/hidden is private"):
        await alice.subreddit_about("hidden")


# -- posting ---------------------------------------------------------------------------------


async def test_submit_self_post(fake: FakeReddit, alice: RedditClient) -> None:
    result = await alice.submit("testsub", "self", "Test Title", text="Test text.")

    [post] = fake.posts
    assert result.fullname == post.fullname == f"t3_{result.id}"
    assert result.url == f"https://www.reddit.com/r/testsub/comments/{post.id}/test_title/"
    assert (post.author, post.kind, post.text) == ("alice", "self", "Test text.")
    form = fake.requests_to("submit")[0].form
    assert form["api_type"] == "json"
    assert form["validate_on_submit"] == "True"
    assert form["resubmit"] == "True"
    assert form["sendreplies"] == "True"
    assert (form["nsfw"], form["spoiler"]) == ("False", "False")


async def test_submit_link_post_with_flair(fake: FakeReddit, alice: RedditClient) -> None:
    [news, _] = await alice.flair_choices("testsub")

    result = await alice.submit(
        "testsub",
        "link",
        "A link",
        url="https://example.com/article",
        flair_id=news.template_id,
        nsfw=True,
        sendreplies=False,
    )

    post = fake.post(result.fullname or "")
    assert post.url == "https://example.com/article"
    assert post.flair_text == "News"
    assert post.nsfw is True
    assert fake.requests_to("submit")[0].form["sendreplies"] == "False"


async def test_submit_image_uploads_then_finds_the_post(
    fake: FakeReddit, alice: RedditClient
) -> None:
    fake.add_post("alice", "testsub", "Older post")

    result = await alice.submit_image("testsub", "My cat", PNG, filename="cat.png")

    post = fake.post(result.fullname or "")
    assert (post.title, post.kind, post.subreddit) == ("My cat", "image", "testsub")
    assert result.permalink == post.permalink
    [upload] = fake.uploads.values()
    assert upload.data == PNG
    assert upload.content_type == "image/png"
    lease_form = fake.requests_to("media")[0].form
    assert (lease_form["filepath"], lease_form["mimetype"]) == ("cat.png", "image/png")
    s3 = fake.requests_to("upload")[0]
    assert s3.status == 201
    assert s3.authorization is None  # no Reddit token goes to S3
    assert fake.requests_to("submit")[0].form["url"] == f"{S3_PUBLIC}/{upload.key}"
    # the lease's websocket said where the post is: nothing was polled
    assert fake.media_sockets == [upload.key]
    assert fake.requests_to("/user/alice/submitted") == []


async def test_submit_image_without_the_websocket_looks_the_post_up(
    fake: FakeReddit, alice: RedditClient
) -> None:
    fake.websocket_enabled = False
    fake.image_processing_seconds = 0.0
    result = await alice.submit_image("testsub", "My dog", PNG, filename="dog.png")
    assert fake.post(result.fullname or "").title == "My dog"
    assert fake.requests_to("/user/alice/submitted")  # looked the post up


async def test_an_image_rejected_in_processing_raises_media_rejected(
    fake: FakeReddit, alice: RedditClient
) -> None:
    fake.reject_images = True
    with pytest.raises(RedditMediaError) as caught:
        await alice.submit_image("testsub", "Broken", PNG, filename="broken.png")
    assert caught.value.code == "MEDIA_REJECTED"
    assert "rejected the image" in caught.value.message


async def test_upload_too_large_is_a_clear_error(fake: FakeReddit, alice: RedditClient) -> None:
    fake.media_max_size = 100

    with pytest.raises(RedditMediaTooLarge) as caught:
        await alice.upload_media(b"x" * 200, "big.png", "image/png")

    assert (caught.value.actual, caught.value.maximum) == (200, 100)
    assert "Reddit accepts at most" in caught.value.message
    assert fake.requests_to("upload")[0].status == 400
    assert fake.uploads == {}


async def test_upload_from_a_path(fake: FakeReddit, alice: RedditClient, tmp_path: Any) -> None:
    image = tmp_path / "dog.jpg"
    image.write_bytes(b"\xff\xd8\xff" + b"\x01" * 10)

    upload = await alice.upload_media(image)

    assert fake.uploads[upload.key].filename == "dog.jpg"
    assert fake.uploads[upload.key].content_type == "image/jpeg"
    assert upload.url == f"{S3_PUBLIC}/{upload.key}"


async def test_submit_timeout_is_unknown_outcome_and_lookup_prevents_double_post(
    fake: FakeReddit, make_client: MakeClient
) -> None:
    client = make_client(timeout=0.3)
    fake.queue_error("submit", hang=5, process=True)  # Reddit creates the post, answers late

    with pytest.raises(RedditUnknownOutcome):
        await client.submit("testsub", "self", "Exactly once", text="hi")

    assert len(fake.requests_to("submit")) == 1  # never resent by the client
    found = await client.recent_submission("Exactly once", "testsub", within_seconds=600)
    assert found is not None
    assert found.fullname == fake.posts_by("alice")[0].fullname
    assert fake.count_posts(title="Exactly once") == 1


async def test_submit_timeout_before_processing_finds_nothing(
    fake: FakeReddit, make_client: MakeClient
) -> None:
    client = make_client(timeout=0.3)
    fake.queue_error("submit", hang=5)

    with pytest.raises(RedditUnknownOutcome):
        await client.submit("testsub", "self", "Lost in transit", text="hi")

    assert await client.recent_submission("Lost in transit", "testsub") is None
    result = await client.submit("testsub", "self", "Lost in transit", text="hi")
    assert fake.count_posts(title="Lost in transit") == 1
    assert result.fullname == fake.posts[0].fullname


async def test_submit_5xx_is_unknown_outcome_not_retried(
    fake: FakeReddit, alice: RedditClient
) -> None:
    fake.queue_error("submit", status=502)

    with pytest.raises(RedditUnknownOutcome):
        await alice.submit("testsub", "self", "Once", text="x")

    assert statuses(fake, "submit") == [502]


async def test_recent_submission_ignores_old_and_other_subreddits(
    fake: FakeReddit, alice: RedditClient, vt: VirtualTime
) -> None:
    fake.add_subreddit("othersub")
    fake.add_post("alice", "testsub", "Same title", created_utc=vt.timestamp() - 7200)
    fake.add_post("alice", "othersub", "Same title")

    assert await alice.recent_submission("Same title", "testsub", within_seconds=3600) is None
    found = await alice.recent_submission("Same title", "othersub")
    assert found is not None and found.subreddit == "othersub"


# -- reading back ----------------------------------------------------------------------------


async def test_inbox_paginates_with_after(
    fake: FakeReddit, alice: RedditClient, vt: VirtualTime
) -> None:
    for i in range(7):
        fake.add_inbox_message("alice", subject=f"m{i}", kind="t1" if i % 2 else "t4")
        vt.advance(1)

    pages = []
    after = None
    while True:
        page = await alice.inbox(limit=3, after=after)
        pages.append(page)
        after = page.after
        if after is None:
            break

    assert [len(p) for p in pages] == [3, 3, 1]
    subjects = [m.subject for p in pages for m in p.items]
    assert subjects[0] == "m6" and subjects[-1] == "m0"  # newest first
    assert len({m.fullname for p in pages for m in p.items}) == 7
    assert {m.kind for p in pages for m in p.items} == {"t1", "t4"}
    assert [r.query.get("after") for r in fake.requests_to("inbox")] == [
        None,
        pages[0].after,
        pages[1].after,
    ]


async def test_user_submitted_paginates_with_after(
    fake: FakeReddit, alice: RedditClient, vt: VirtualTime
) -> None:
    for i in range(5):
        fake.add_post("alice", "testsub", f"Post {i}")
        vt.advance(1)

    first = await alice.user_submitted("alice", limit=2)
    second = await alice.user_submitted("alice", limit=2, after=first.after)
    third = await alice.user_submitted("alice", limit=2, after=second.after)

    assert [p.title for p in [*first, *second, *third]] == [f"Post {i}" for i in range(4, -1, -1)]
    assert third.after is None


async def test_me_reports_suspension(fake: FakeReddit, make_client: MakeClient) -> None:
    fake.add_account("gone", "gone-pw", APP, SECRET, suspended=True)
    client = make_client(ScriptCredentials(APP, SECRET, "gone", "gone-pw"))

    me = await client.me()

    assert me.name == "gone"
    assert me.is_suspended is True
    assert me.link_karma == 0


async def test_info_asks_in_batches_of_100(fake: FakeReddit, alice: RedditClient) -> None:
    posts = [fake.add_post("alice", "testsub", f"P{i}") for i in range(150)]
    fake.set_post_stats(
        posts[3].fullname, score=42, num_comments=5, removed_by_category="moderator"
    )

    found = await alice.info(p.fullname for p in posts)

    assert len(found) == 150
    batches = [r.query["id"].split(",") for r in fake.requests_to("info")]
    assert [len(b) for b in batches] == [100, 50]
    stats = {p.fullname: p for p in found}[posts[3].fullname]
    assert (stats.score, stats.num_comments, stats.removed_by_category) == (42, 5, "moderator")
    assert {p.fullname: p for p in found}[posts[4].fullname].removed_by_category is None


async def test_defaults_run_on_real_time() -> None:
    """No injected clock or sleep: the system clock on both sides (as end-to-end runs use)."""
    async with FakeReddit() as fake:
        fake.add_account("alice", "alice-pw", APP, SECRET)
        fake.add_subreddit("testsub")
        registry = RateBudgetRegistry()
        creds = ScriptCredentials(APP, SECRET, "alice", "alice-pw")
        async with RedditClient(fake.client_config(), creds, registry.get(APP)) as client:
            result = await client.submit("testsub", "self", "Real time", text="x")
            assert (await client.recent_submission("Real time", "testsub")) is not None
    assert result.fullname == fake.posts[0].fullname


# -- the fake as Reddit answers (recordings, prawcore) -----------------------------------------


async def test_an_unknown_subreddit_is_a_redirect_to_the_search(
    fake: FakeReddit, alice: RedditClient
) -> None:
    """Reddit answers /r/<unknown>/about with 302 to /subreddits/search (prawcore's Redirect),
    not 404: the client must read the redirect as "does not exist"."""
    with pytest.raises(RedditNotFound, match="r/nosuchsub does not exist"):
        await alice.subreddit_about("nosuchsub")
    assert statuses(fake, "/r/nosuchsub/about") == [302]


async def test_ratelimit_takes_reddits_number_over_the_words(
    fake: FakeReddit, alice: RedditClient
) -> None:
    """RATELIMIT bodies carry `json.ratelimit` in seconds; the words round it up."""
    fake.queue_error(
        "submit",
        ratelimit="you are doing that too much. try again in 9 minutes.",
        ratelimit_seconds=517.3,
    )
    with pytest.raises(RedditRateLimited) as caught:
        await alice.submit("testsub", "self", "Too soon", text="x")
    assert caught.value.seconds == 518


async def test_a_5xx_without_rate_headers_keeps_the_budgets_figures(
    fake: FakeReddit, alice: RedditClient
) -> None:
    """Reddit's edge answers 5xx without x-ratelimit-* headers (recorded 502/503/520): the
    budget keeps what the last real answer said, and the retry goes through."""
    await alice.me()
    before = (alice.budget.used, alice.budget.remaining)
    assert before[0] is not None
    fake.queue_error("me", status=503)
    await alice.me()
    assert statuses(fake, "me") == [200, 503, 200]
    assert alice.budget.used is not None and alice.budget.used >= before[0]
