"""Connect with Reddit (the OAuth code flow of a web app), end to end over HTTP: the button in
/accounts add → Reddit's consent page (the fake) → our /reddit/callback → the account active
→ a post published with the refresh token; and every way the callback can go wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from core.reddit_ops.oauth import CONNECT_SCOPES
from core.settings import RedditSettings
from storage.models import Role, Tenant
from storage.reddit_models import RedditAccount
from storage.repositories import audit as audit_repo
from storage.repositories import reddit as reddit_repo
from tests.e2e.conftest import OPERATOR, OWNER, VIEWER, Harness
from tests.e2e.test_reddit_posts import SLOW, compose, queue_it
from tests.fakes.reddit import FakeReddit

WEB_ID, WEB_SECRET = "opsdeckweb01", "web-app-secret-123"
SCRIPT_ID, SCRIPT_SECRET = "otherscript1", "script-secret"


@pytest.fixture
async def reddit() -> AsyncIterator[FakeReddit]:
    async with FakeReddit() as fake:
        yield fake


@pytest.fixture
async def wapp(start_app, reddit: FakeReddit) -> Harness:
    settings = RedditSettings(
        _env_file=None,
        oauth_url=reddit.oauth_url,
        www_url=reddit.www_url,
        web_client_id=WEB_ID,
        web_client_secret=WEB_SECRET,
    )
    harness = await start_app(reddit=settings)
    reddit.add_web_app(
        WEB_ID, WEB_SECRET, harness.app.settings.public_base_url + "/reddit/callback"
    )
    # the account has two-factor auth: a password login would need its code, this never does
    reddit.add_account("team_2fa", "never-seen", SCRIPT_ID, SCRIPT_SECRET, link_karma=7)
    reddit.browser_user = "team_2fa"
    return harness


async def connect_url(app: Harness, user: int = OPERATOR) -> tuple[dict, str]:
    intro = await app.say(user, "/accounts add", "Connect with Reddit")
    url = app.button(intro, "Connect with Reddit")
    assert url.startswith("http")
    return intro, url


async def browse(url: str) -> httpx.Response:
    """What the operator's browser does: open the link, follow Reddit's redirect back."""
    async with httpx.AsyncClient(follow_redirects=True, timeout=SLOW) as browser:
        return await browser.get(url)


async def account(app: Harness, username: str, tenant_id: int | None = None) -> RedditAccount:
    tenant = tenant_id or (await app.actor(OWNER)).tenant_id
    async with app.app.sessionmaker() as session:
        row = await reddit_repo.account_by_username(session, tenant, username)
    assert row is not None
    return row


async def test_full_code_flow_connects_and_publishes_with_the_refresh_token(
    wapp: Harness, reddit: FakeReddit
) -> None:
    _, url = await connect_url(wapp)
    query = parse_qs(urlparse(url).query)
    assert query["duration"] == ["permanent"] and query["response_type"] == ["code"]
    assert query["scope"][0].split() == list(CONNECT_SCOPES) and "vote" not in query["scope"][0]
    assert query["redirect_uri"] == [wapp.app.settings.public_base_url + "/reddit/callback"]

    since = wapp.tg.mark()
    page = await browse(url)
    assert page.status_code == 200 and "u/team_2fa is connected" in page.text
    assert page.headers["Cache-Control"] == "no-store"
    note = await wapp.tg.wait_for_message(OPERATOR, "is connected with Reddit", since=since)
    assert "u/team_2fa" in note["text"]

    row = await account(wapp, "team_2fa")
    assert (row.auth_kind, row.status, row.client_id, row.link_karma) == (
        "refresh_token",
        "active",
        WEB_ID,
        7,
    )
    assert row.password_enc is None and row.refresh_token_enc
    stored = "".join(str(v) for v in (row.refresh_token_enc, row.client_secret_enc))
    refresh = next(iter(reddit._web_refresh))
    assert refresh not in stored and WEB_SECRET not in stored  # sealed, not plaintext
    code_grants = [g for g in reddit.grants if g["grant_type"] == "authorization_code"]
    assert [g["ok"] for g in code_grants] == [True]
    async with wapp.app.sessionmaker() as session:
        entries = await audit_repo.latest(session, row.tenant_id, 20, 0)
    assert any(e.action == "reddit.account.connect" for e in entries)

    # the same link again: the state is spent
    again = await browse(url)
    assert again.status_code in (400, 409) and "Connected" not in again.text

    # a post goes out with the refresh token (no password anywhere)
    reddit.add_subreddit("opsdeck_oauth")
    card = await compose(wapp, OPERATOR, "team_2fa", "opsdeck_oauth", "Hello via OAuth")
    since = wapp.tg.mark()
    await queue_it(wapp, OPERATOR, card)
    await wapp.tg.wait_for_message(OPERATOR, "Published on r/", since=since, timeout=SLOW)
    assert [(p.author, p.title) for p in reddit.posts] == [("team_2fa", "Hello via OAuth")]
    refreshes = [g for g in reddit.grants if g["grant_type"] == "refresh_token" and g["ok"]]
    assert refreshes and all(g["client_id"] == WEB_ID for g in refreshes)
    assert not [g for g in reddit.grants if g["grant_type"] == "password"]


async def test_reconnect_updates_a_known_account(wapp: Harness, reddit: FakeReddit) -> None:
    actor = await wapp.actor(OWNER)
    svc = wapp.app.services.reddit_accounts
    view = await svc.add(
        actor,
        username="team_2fa",
        auth_kind="script",
        client_id=SCRIPT_ID,
        client_secret=SCRIPT_SECRET,
        password="wrong",
        check=False,
    )
    _, url = await connect_url(wapp)
    assert (await browse(url)).status_code == 200
    row = await account(wapp, "team_2fa")
    assert row.id == view.id and row.auth_kind == "refresh_token" and row.password_enc is None


async def test_declined_on_reddit(wapp: Harness, reddit: FakeReddit) -> None:
    reddit.browser_allows = False
    _, url = await connect_url(wapp)
    since = wapp.tg.mark()
    page = await browse(url)
    assert page.status_code == 200 and "declined" in page.text
    await wapp.tg.wait_for_message(OPERATOR, "you declined", since=since)
    async with wapp.app.sessionmaker() as session:
        assert await reddit_repo.list_accounts(session, (await wapp.actor(OWNER)).tenant_id) == []


async def test_forged_missing_and_expired_state(wapp: Harness, reddit: FakeReddit) -> None:
    base = wapp.app.settings.public_base_url + "/reddit/callback"
    async with httpx.AsyncClient(timeout=SLOW) as browser:
        forged = await browser.get(base, params={"state": "A" * 43, "code": "whatever"})
        assert forged.status_code == 400 and "not valid" in forged.text
        missing = await browser.get(base, params={"code": "whatever"})
        assert missing.status_code == 400
        hostile = await browser.get(base, params={"state": "<script>alert(1)</script>"})
        assert hostile.status_code == 400 and "<script>" not in hostile.text
    assert not [g for g in reddit.grants if g["grant_type"] == "authorization_code"]

    _, url = await connect_url(wapp)
    wapp.clock.advance(11 * 60)  # past the ten minutes a link lives
    since = wapp.tg.mark()
    page = await browse(url)
    assert page.status_code == 410 and "expired" in page.text
    await wapp.tg.wait_for_message(OPERATOR, "expired", since=since)
    assert not [g for g in reddit.grants if g["grant_type"] == "authorization_code"]


async def test_wrong_code_and_reddit_down(wapp: Harness, reddit: FakeReddit) -> None:
    # Reddit's consent page sends us back, but the code is refused (e.g. used elsewhere)
    _, url = await connect_url(wapp)
    async with httpx.AsyncClient(timeout=SLOW) as browser:
        to_us = (await browser.get(url)).headers["Location"]
    state = parse_qs(urlparse(to_us).query)["state"][0]
    wrong = to_us.split("?")[0] + f"?state={state}&code=not-the-code"
    since = wapp.tg.mark()
    page = await browse(wrong)
    assert page.status_code == 400 and "not accepted" in page.text
    await wapp.tg.wait_for_message(OPERATOR, "not accepted", since=since)

    # Reddit's token endpoint is down
    _, url = await connect_url(wapp)
    reddit.queue_error("token", status=503)
    since = wapp.tg.mark()
    page = await browse(url)
    assert page.status_code == 503 and "not answering" in page.text
    await wapp.tg.wait_for_message(OPERATOR, "not answering", since=since)
    async with wapp.app.sessionmaker() as session:
        assert await reddit_repo.list_accounts(session, (await wapp.actor(OWNER)).tenant_id) == []


async def test_viewer_cannot_start_and_demoted_operator_cannot_finish(
    wapp: Harness, reddit: FakeReddit
) -> None:
    answer = await wapp.say(VIEWER, "/accounts add")
    assert "cannot" in answer["text"] and not wapp.tg.buttons(answer)

    _, url = await connect_url(wapp, OPERATOR)
    async with wapp.app.sessionmaker() as session:
        from storage.repositories import operators as op_repo

        op = await op_repo.by_telegram_id(session, OPERATOR)
        op.role = Role.viewer
        await session.commit()
    page = await browse(url)
    assert page.status_code == 403
    async with wapp.app.sessionmaker() as session:
        assert await reddit_repo.list_accounts(session, (await wapp.actor(OWNER)).tenant_id) == []


async def test_account_lands_in_the_operators_own_workspace(
    wapp: Harness, reddit: FakeReddit
) -> None:
    async with wapp.app.sessionmaker() as session:
        other = Tenant(slug="other", name="other", created_at=wapp.clock.now())
        session.add(other)
        await session.flush()
        other_id = other.id
        await session.commit()
    await wapp.add_operator(3001, Role.operator, tenant_id=other_id)
    wapp.users[3001] = wapp.tg.user(3001, "Otto")
    _, url = await connect_url(wapp, 3001)
    assert (await browse(url)).status_code == 200
    row = await account(wapp, "team_2fa", tenant_id=other_id)
    assert row.tenant_id == other_id
    async with wapp.app.sessionmaker() as session:
        assert await reddit_repo.list_accounts(session, (await wapp.actor(OWNER)).tenant_id) == []


async def test_guessing_states_is_rate_limited(wapp: Harness, reddit: FakeReddit) -> None:
    base = wapp.app.settings.public_base_url + "/reddit/callback"
    async with httpx.AsyncClient(timeout=SLOW) as browser:
        answers = [
            (await browser.get(base, params={"state": f"{n:043d}", "code": "x"})).status_code
            for n in range(12)
        ]
        limited = await browser.get(base, params={"state": "B" * 43, "code": "x"})
    assert answers[:10] == [400] * 10 and answers[10:] == [429, 429]
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert "Too many tries" in limited.text


async def test_without_a_web_app_the_button_is_absent(start_app, reddit: FakeReddit) -> None:
    settings = RedditSettings(_env_file=None, oauth_url=reddit.oauth_url, www_url=reddit.www_url)
    app = await start_app(reddit=settings)
    intro = await app.say(OPERATOR, "/accounts add", "Which username")
    assert "REDDIT_WEB_CLIENT_ID" in intro["text"] and not app.tg.buttons(intro)
    page = await browse(app.app.settings.public_base_url + "/reddit/callback?state=x&code=y")
    assert page.status_code == 404
