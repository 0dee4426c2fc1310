"""The claim door's landing page, its cookie and its CSRF check, on SQLite and PostgreSQL:
a GET spends nothing (link previewers), a POST spends one use per browser, the same browser
again is free, a form without the browser's own token is refused, a tampered cookie is a new
browser and never someone else, and concurrent claims never overspend."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.web_claims import COOKIE_NAME, SECURE_COOKIE_NAME, ClaimRoutesConfig, add_claim_routes
from core.vault.browsers import BrowserIds, claimer_id
from storage.vault_models import VaultClaim
from tests.integration.test_vault_http import DATA, JSON, SECRET, World, make_world

PREVIEWERS = {
    "Telegram": "TelegramBot (like TwitterBot)",
    "Slack": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "WhatsApp": "WhatsApp/2.23.20.0 A",
    "Facebook": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Outlook": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/51.0.2704.103 Safari/537.36 Microsoft Office/16.0 (Windows NT 10.0; "
        "Microsoft Outlook 16.0.12026; Pro)"
    ),
}
CSRF = re.compile(r'<input type="hidden" name="csrf" value="([A-Za-z0-9_-]{43})">')


async def make_client(world: World, connections: int = 100, **config) -> TestClient:
    """A client that keeps no cookies: each request carries exactly the cookie a test gives
    it, so many browsers can share one client at once (over at most `connections`)."""
    app = web.Application()
    add_claim_routes(app, world.gateway, ClaimRoutesConfig(**config), secret_key=SECRET)
    client = TestClient(
        TestServer(app),
        cookie_jar=aiohttp.DummyCookieJar(),
        connector=aiohttp.TCPConnector(limit=connections),
    )
    await client.start_server()
    return client


async def access_log(world: World) -> list[VaultClaim]:
    async with world.sessionmaker() as session:
        return list((await session.scalars(select(VaultClaim).order_by(VaultClaim.id))).all())


class Visitor:
    """One browser: its own cookie, the CSRF token of the last page it loaded."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.cookie: str | None = None
        self.csrf: str | None = None

    def headers(self, extra: dict | None = None) -> dict:
        headers = dict(extra or {})
        if self.cookie:
            headers["Cookie"] = f"{COOKIE_NAME}={self.cookie}"
        return headers

    async def open(self, code: str) -> aiohttp.ClientResponse:
        resp = await self.client.get(f"/claim/{code}", headers=self.headers())
        if COOKIE_NAME in resp.cookies:
            self.cookie = resp.cookies[COOKIE_NAME].value
        if found := CSRF.search(await resp.text()):
            self.csrf = found.group(1)
        return resp

    async def download(self, code: str, csrf: str | None = "mine") -> aiohttp.ClientResponse:
        data = {"csrf": self.csrf if csrf == "mine" else csrf} if csrf is not None else {}
        return await self.client.post(
            f"/claim/{code}", data=data, headers=self.headers(), allow_redirects=False
        )


async def test_landing_page_shows_the_file_and_spends_nothing(
    world: World, client: TestClient
) -> None:
    new = await world.link(max_uses=5, name='Report <b>&</b> "Q3".pdf')
    resp = await Visitor(client).open(new.code)
    assert resp.status == 200
    html = await resp.text()
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    # autoescaped: what an operator named the file is text, never markup
    assert new.item.name.replace("&", "&amp;").replace('"', "&#34;") in html
    assert "<b>" not in html
    assert "1000.0 KB" in html and "Document" in html and "application/pdf" in html
    assert "5 of 5" in html and "in 1 hour<" in html
    assert f'<form method="post" action="/claim/{new.code}">' in html
    # previewers: a neutral title, no name in any meta tag, not indexed
    assert "<title>A shared file</title>" in html
    head = html.split("</head>")[0]
    assert "Report" not in head and "Q3" not in head
    assert '<meta name="robots" content="noindex, nofollow">' in html
    assert resp.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-store"
    csp = resp.headers["Content-Security-Policy"]
    for directive in (
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ):
        assert directive in csp, csp
    assert "unsafe" not in csp and "*" not in csp and "http" not in csp
    # no script, no inline style, nothing from another site
    assert "<script" not in html and "style=" not in html and "<style" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert await world.used(new.link.id) == 0
    assert await access_log(world) == []


async def test_the_claimer_cookie(world: World, client: TestClient) -> None:
    new = await world.link()
    resp = await client.get(f"/claim/{new.code}")
    header = resp.headers["Set-Cookie"]
    assert header.startswith(f"{COOKIE_NAME}=")
    lowered = header.lower()
    assert "httponly" in lowered and "samesite=lax" in lowered and "path=/" in lowered
    assert "max-age=31536000" in lowered
    assert "secure" not in lowered  # plain http: a Secure cookie would never come back
    value = resp.cookies[COOKIE_NAME].value
    assert BrowserIds(SECRET).read(value) is not None
    # a browser that has a good cookie is not given another
    again = await client.get(f"/claim/{new.code}", headers={"Cookie": f"{COOKIE_NAME}={value}"})
    assert "Set-Cookie" not in again.headers
    # one that does not verify is replaced by a new browser's
    tampered = ("B" if value[0] != "B" else "C") + value[1:]
    fresh = await client.get(f"/claim/{new.code}", headers={"Cookie": f"{COOKIE_NAME}={tampered}"})
    replaced = fresh.cookies[COOKIE_NAME].value
    assert replaced not in (value, tampered) and BrowserIds(SECRET).read(replaced) is not None


async def test_over_https_the_cookie_is_secure_and_host_only(world: World) -> None:
    client = await make_client(world, public_base_url="https://files.example.org")
    try:
        new = await world.link()
        resp = await client.get(f"/claim/{new.code}")
        header = resp.headers["Set-Cookie"]
        assert header.startswith(f"{SECURE_COOKIE_NAME}=") and "Secure" in header
        assert "Domain" not in header
        csp = resp.headers["Content-Security-Policy"]
        assert "form-action 'self' https://files.example.org;" in csp
    finally:
        await client.close()


async def test_refusal_pages_say_what_happened(world: World, client: TestClient) -> None:
    expired = await world.link(data=DATA + b"e")
    used = await world.link(max_uses=1, data=DATA + b"u")
    assert (await Visitor(client).download(used.code, csrf=None)).status == 403
    first = Visitor(client)
    await first.open(used.code)
    assert (await first.download(used.code)).status == 303
    revoked = await world.link(data=DATA + b"r")
    await world.vault().revoke(world.actor, revoked.link.id)
    cases = [
        ("A" * 43, 404, "Link not found", "does not exist"),
        ("short", 404, "Link not found", "not valid"),
        (used.code, 410, "No downloads left", "used as many times as allowed"),
        (revoked.code, 410, "Link withdrawn", "withdrawn by the sender"),
        (expired.code, 410, "Link expired", "expired"),
    ]
    for code, status, heading, words in cases:
        if code == expired.code:
            world.clock.advance(timedelta(hours=2))
        resp = await Visitor(client).open(code)
        html = await resp.text()
        assert resp.status == status, code
        assert f"<h1>{heading}</h1>" in html and words in html, html
        assert "<title>Link not available</title>" in html
        assert "report.pdf" not in html  # a dead link tells nothing about its file
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Robots-Tag"] == "noindex, nofollow"
        json_resp = await client.get(f"/claim/{code}", headers=JSON)
        assert json_resp.status == status
        assert (await json_resp.json())["error"].startswith("denied:")


async def test_link_previewers_spend_no_use(world: World) -> None:
    """20 fetches by the previewers of Telegram, Slack, WhatsApp, Facebook and Outlook (GET,
    HEAD, any Accept) before anyone clicks: no use spent, nothing in the access log."""
    client = await make_client(world, claim_limit=100)
    try:
        new = await world.link(max_uses=1)
        statuses = []
        for agent in PREVIEWERS.values():
            for method, accept in (
                ("GET", "text/html"),
                ("HEAD", "*/*"),
                ("GET", "*/*"),
                ("GET", "application/json"),
            ):
                resp = await client.request(
                    method,
                    f"/claim/{new.code}",
                    headers={"User-Agent": agent, "Accept": accept},
                )
                statuses.append(resp.status)
        assert statuses == [200] * 20
        assert await world.used(new.link.id) == 0
        assert await access_log(world) == []
        # and the person it was meant for still gets it
        person = Visitor(client)
        await person.open(new.code)
        assert (await person.download(new.code)).status == 303
        assert await world.used(new.link.id) == 1
    finally:
        await client.close()


async def test_one_browser_posting_100_times_spends_one_use(world: World) -> None:
    client = await make_client(world, claim_limit=1000)
    try:
        new = await world.link(max_uses=3)
        browser = Visitor(client)
        await browser.open(new.code)
        answers = await asyncio.gather(*(browser.download(new.code) for _ in range(100)))
        assert [r.status for r in answers] == [303] * 100
        assert await world.used(new.link.id) == 1
        outcomes = Counter(c.outcome for c in await access_log(world))
        assert outcomes == {"delivered": 1, "redelivered": 99}
        # the page now says a second download is free, and still offers it
        page = await browser.open(new.code)
        assert "Downloading it again is free" in await page.text()
        assert "3 of 3" not in await page.text() and "2 of 3" in await page.text()
    finally:
        await client.close()


@pytest.mark.slow
async def test_1000_browsers_on_a_50_use_link_get_exactly_50_files(world: World) -> None:
    # All 1,000 claims are sent at once; like a reverse proxy's upstream pool, the client
    # carries them over 50 connections, so a loaded SQLite machine does not time requests
    # out waiting for the database pool (what is tested is the count, not the throughput).
    client = await make_client(world, connections=50, claim_limit=5000, download_limit=1000)
    try:
        new = await world.link(max_uses=50, data=b"fifty of them")
        browsers = [Visitor(client) for _ in range(1000)]
        lanes = asyncio.Semaphore(50)

        async def visit(browser: Visitor) -> None:
            async with lanes:
                assert (await browser.open(new.code)).status == 200

        await asyncio.gather(*(visit(b) for b in browsers))
        assert len({b.cookie for b in browsers}) == 1000
        answers = await asyncio.gather(*(b.download(new.code) for b in browsers))
        statuses = Counter(r.status for r in answers)
        assert statuses == {303: 50, 410: 950}, statuses
        files = [
            await client.get(urlsplit(r.headers["Location"]).path)
            for r in answers
            if r.status == 303
        ]
        assert [await f.read() for f in files] == [b"fifty of them"] * 50
        assert await world.used(new.link.id) == 50
        log = await access_log(world)
        assert Counter(c.outcome for c in log) == {"delivered": 50, "denied:used_up": 950}
        assert len({c.claimer_id for c in log if c.outcome == "delivered"}) == 50
    finally:
        await client.close()


async def test_csrf_missing_wrong_or_another_browsers_is_403(
    world: World, client: TestClient
) -> None:
    new = await world.link(max_uses=5)
    alice, bob = Visitor(client), Visitor(client)
    await alice.open(new.code)
    await bob.open(new.code)
    other = await world.link(max_uses=5, data=DATA + b"other")
    carol = Visitor(client)
    await carol.open(other.code)
    attempts = {
        "missing": await alice.download(new.code, csrf=None),
        "empty": await alice.download(new.code, csrf=""),
        "wrong": await alice.download(new.code, csrf="A" * 43),
        "not base64": await alice.download(new.code, csrf="<script>" * 5),
        "bob's": await alice.download(new.code, csrf=bob.csrf),
        "another link's": await carol.download(new.code),
        "header, bob's": await client.post(
            f"/claim/{new.code}",
            headers=alice.headers({"X-CSRF-Token": bob.csrf or "", **JSON}),
        ),
    }
    for what, resp in attempts.items():
        assert resp.status == 403, what
        if resp.content_type == "text/html":
            html = await resp.text()
            assert "Download not started" in html
            assert f'href="/claim/{new.code}"' in html  # a way back to a fresh page
    no_cookie = await client.post(f"/claim/{new.code}", data={"csrf": alice.csrf})
    assert no_cookie.status == 403  # cookies off or a cross-site form: no claim in any name
    assert await world.used(new.link.id) == 0
    assert await access_log(world) == []
    assert (await alice.download(new.code)).status == 303


async def test_a_tampered_cookie_is_a_new_browser_never_someone_else(world: World) -> None:
    client = await make_client(world, claim_limit=1000)
    try:
        await tampered_cookies(world, client)
    finally:
        await client.close()


async def tampered_cookies(world: World, client: TestClient) -> None:
    new = await world.link(max_uses=1)
    alice = Visitor(client)
    await alice.open(new.code)
    assert (await alice.download(new.code)).status == 303
    assert alice.cookie is not None
    browser_id, mac = alice.cookie.split(".")
    ids = BrowserIds(SECRET)
    _, mallory_cookie = ids.new()
    flipped = ("B" if browser_id[0] != "B" else "C") + browser_id[1:]
    tampered = [
        f"{flipped}.{mac}",  # another id under Alice's MAC
        f"{browser_id}.{mallory_cookie.split('.')[1]}",  # Alice's id under another MAC
        f"{browser_id}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",  # one character off
        f"{browser_id}.{mac}=",  # base64 padding: the same bytes, other text
        f"{browser_id}",
        f"{browser_id}.{mac}.{mac}",
        BrowserIds(b"another deployment's key").new()[1],
    ]
    for cookie in tampered:
        assert ids.read(cookie) is None, cookie
        mallory = Visitor(client)
        mallory.cookie = cookie
        page = await mallory.open(new.code)
        assert page.status == 410  # used up: Alice's free re-download is not theirs
        # the form Alice's page had, with the tampered cookie: refused
        forged = Visitor(client)
        forged.cookie, forged.csrf = cookie, alice.csrf
        assert (await forged.download(new.code)).status == 403
        # a script sending the tampered cookie and no token: a new claimer, who finds it used up
        resp = await client.post(
            f"/claim/{new.code}", headers={"Cookie": f"{COOKIE_NAME}={cookie}", **JSON}
        )
        assert resp.status == 410 and (await resp.json())["error"] == "denied:used_up"
    log = await access_log(world)
    assert [c.outcome for c in log] == ["delivered"] + ["denied:used_up"] * len(tampered)
    assert log[0].claimer_id == claimer_id(browser_id)
    assert all(c.claimer_id != log[0].claimer_id for c in log[1:])
    assert (await alice.download(new.code)).status == 303  # Alice herself still can


async def test_scripts_speak_json(world: World, client: TestClient) -> None:
    new = await world.link(max_uses=5)
    meta = await client.get(f"/claim/{new.code}", headers=JSON)
    assert meta.status == 200
    body = await meta.json()
    assert body["name"] == "report.pdf" and body["size"] == len(DATA)
    assert body["uses_left"] == 5 and body["max_uses"] == 5 and not body["received_before"]
    assert body["expires_at"].endswith("Z") and "download_url" not in body
    assert await world.used(new.link.id) == 0

    first = await client.post(f"/claim/{new.code}", headers=JSON)
    assert first.status == 200
    claimed = await first.json()
    assert set(claimed) >= {"download_url", "expires_at", "name", "size", "mime", "uses_left"}
    assert claimed["uses_left"] == 4 and not claimed["redelivered"]
    cookie = first.cookies[COOKIE_NAME].value
    # the cookie back with the token the answer gave: free
    again = await client.post(
        f"/claim/{new.code}",
        headers={"Cookie": f"{COOKIE_NAME}={cookie}", "X-CSRF-Token": claimed["csrf_token"]} | JSON,
    )
    assert again.status == 200 and (await again.json())["redelivered"]
    # the cookie back without the token: refused, it could be a forged request
    bare = await client.post(
        f"/claim/{new.code}", headers={"Cookie": f"{COOKIE_NAME}={cookie}"} | JSON
    )
    assert bare.status == 403 and (await bare.json())["error"] == "csrf"
    assert await world.used(new.link.id) == 1
    log = await access_log(world)
    assert [(c.channel, c.claimer_kind) for c in log] == [("http", "http")] * 2
    assert log[0].claimer_id == log[1].claimer_id
    assert log[0].claimer_id.startswith("browser:") and "127.0.0.1" not in log[0].claimer_id


async def test_static_files_are_ours_and_only_ours(client: TestClient) -> None:
    css = await client.get("/claim-assets/claim.css")
    assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
    assert "prefers-color-scheme: dark" in await css.text()
    icon = await client.get("/claim-assets/document.svg")
    assert icon.status == 200 and icon.headers["Content-Type"] == "image/svg+xml"
    assert icon.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/claim-assets/nope.css", "/claim-assets/..%2fweb_claims.py", "/claim-assets/"):
        assert (await client.get(path)).status == 404, path


@pytest.fixture
async def world(engine, sessionmaker, tmp_path) -> AsyncIterator[World]:
    async with make_world(engine, sessionmaker, tmp_path) as made:
        yield made


@pytest.fixture
async def client(world: World):
    client = await make_client(world)
    yield client
    await client.close()


async def test_a_link_can_hide_the_name_from_its_page(world: World, client: TestClient) -> None:
    """The page and its JSON show kind and size, not the name; the download still has it."""
    item = (await world.link()).item
    new = await world.vault().create_link(
        world.actor, item.id, lifetime_seconds=3600, max_uses=2, hide_name=True
    )
    page = await Visitor(client).open(new.code)
    html = await page.text()
    assert page.status == 200 and "report" not in html
    assert '<h1 class="name">Name not shown</h1>' in html and "chose not to show" in html
    assert "Document · 1000.0 KB" in html
    meta = await (await client.get(f"/claim/{new.code}", headers=JSON)).json()
    assert meta["name"] is None and meta["size"] == len(DATA)
    claimed = await client.post(f"/claim/{new.code}", headers=JSON)
    body = await claimed.json()
    assert body["name"] is None
    download = await client.get(urlsplit(body["download_url"]).path)
    assert 'filename="report.pdf"' in download.headers["Content-Disposition"]
