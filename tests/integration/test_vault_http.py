"""The HTTP door against aiohttp's test server, a LocalBlobStore and both database backends:
JSON and redirect, Range, ETag, signatures, refusals, rate limit, Content-Disposition.
(The landing page, cookies and CSRF: tests/integration/test_claim_page.py.)"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import unquote, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.web_claims import (
    UNSATISFIABLE,
    ClaimRoutesConfig,
    add_claim_routes,
    content_disposition,
    parse_range,
)
from core.actor import Actor
from core.clock import OffsetClock
from core.services.operators import OperatorService, bootstrap_owners
from core.vault import IngestSource, NewLink, VaultConfig, VaultGateway, VaultService
from storage.blobs import LocalBlobStore
from storage.uow import UnitOfWork, over_session
from storage.vault_models import VaultClaim, VaultLink

OWNER = 1001
SECRET = b"test-secret-key-0123456789"
DATA = b"%PDF-1.7\n" + bytes(range(256)) * 4000  # ~1 MB, several chunks
SHA = hashlib.sha256(DATA).hexdigest()
JSON = {"Accept": "application/json"}


@dataclass
class World:
    sessionmaker: async_sessionmaker[AsyncSession]
    uow: UnitOfWork
    clock: OffsetClock
    blobs: LocalBlobStore
    actor: Actor
    gateway: VaultGateway

    def vault(self) -> VaultService:
        return VaultService(self.uow, self.clock, self.blobs)

    async def link(self, max_uses: int = 5, data: bytes | None = DATA, **kw) -> NewLink:
        async def content() -> AsyncIterator[bytes]:
            assert data is not None
            for i in range(0, len(data), 100_000):
                yield data[i : i + 100_000]

        values = {"kind": "document", "name": "report.pdf", "file_id": "F", "file_unique_id": "U"}
        values.update(kw)
        vault = self.vault()
        src = IngestSource(content=content() if data is not None else None, **values)
        item = (await vault.ingest(self.actor, src)).item
        return await vault.create_link(
            self.actor, item.id, lifetime_seconds=3600, max_uses=max_uses
        )

    async def used(self, link_id: int) -> int:
        async with self.sessionmaker() as session:
            link = await session.get(VaultLink, link_id)
            assert link is not None
            return link.used_count


@pytest.fixture
async def world(engine, sessionmaker, tmp_path) -> AsyncIterator[World]:
    async with make_world(engine, sessionmaker, tmp_path) as made:
        yield made


@asynccontextmanager
async def make_world(engine, sessionmaker, tmp_path) -> AsyncIterator[World]:
    clock = OffsetClock()
    async with sessionmaker() as session:
        await bootstrap_owners(session, clock, [OWNER])
        await session.commit()
        actor = await OperatorService(over_session(session), clock).resolve(OWNER)
    assert actor is not None
    blobs = LocalBlobStore(tmp_path / "blobs")
    uow = UnitOfWork(engine)
    gateway = VaultGateway(
        uow=uow,
        clock=clock,
        blobs=blobs,
        secret_key=SECRET,
        config=VaultConfig(download_ttl_seconds=600),
    )
    try:
        yield World(sessionmaker, uow, clock, blobs, actor, gateway)
    finally:
        await uow.dispose()


async def make_client(world: World, **config) -> TestClient:
    app = web.Application()
    add_claim_routes(
        app,
        world.gateway,
        ClaimRoutesConfig(chunk_size=64 * 1024, **config),
        secret_key=SECRET,
    )
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def client(world: World) -> AsyncIterator[TestClient]:
    client = await make_client(world)
    yield client
    await client.close()


async def post_json(client: TestClient, code: str, **headers):
    """A script's claim: JSON, no cookie (so a new claimer each time)."""
    client.session.cookie_jar.clear()
    return await client.post(f"/claim/{code}", headers=JSON | headers)


async def download_path(client: TestClient, code: str, **headers) -> str:
    resp = await post_json(client, code, **headers)
    assert resp.status == 200, await resp.text()
    return urlsplit((await resp.json())["download_url"]).path


async def test_json_claim_then_download(world: World, client: TestClient) -> None:
    new = await world.link()
    resp = await post_json(client, new.code)
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["name"] == "report.pdf" and body["size"] == len(DATA)
    assert body["mime"] == "application/pdf" and body["kind"] == "document"
    assert body["sha256"] == SHA and body["uses_left"] == 4 and not body["redelivered"]
    assert body["expires_at"].endswith("Z") and body["link_expires_at"].endswith("Z")
    assert new.code not in body["download_url"]

    resp = await client.get(urlsplit(body["download_url"]).path)
    assert resp.status == 200
    assert await resp.read() == DATA
    assert resp.headers["Content-Type"] == "application/pdf"
    assert resp.headers["Content-Length"] == str(len(DATA))
    assert resp.headers["ETag"] == f'"{SHA}"'
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="report.pdf"')


async def browser_claim(client: TestClient, code: str, **kw):
    """What the landing page's Download button does: GET the page, POST its form."""
    page = await client.get(f"/claim/{code}")
    assert page.status == 200, await page.text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert csrf is not None
    return await client.post(f"/claim/{code}", data={"csrf": csrf.group(1)}, **kw)


async def test_browser_gets_a_redirect(world: World, client: TestClient) -> None:
    new = await world.link()
    resp = await browser_claim(client, new.code, allow_redirects=False)
    assert resp.status == 303
    location = resp.headers["Location"]
    assert "/files/" in location
    resp = await browser_claim(client, new.code)  # followed: the same browser re-receives
    assert resp.status == 200 and await resp.read() == DATA
    assert await world.used(new.link.id) == 1


async def test_public_base_url_is_used_for_download_urls(world: World) -> None:
    client = await make_client(world, public_base_url="http://files.example.org/")
    try:
        new = await world.link()
        resp = await browser_claim(client, new.code, allow_redirects=False)
        assert resp.headers["Location"].startswith("http://files.example.org/files/")
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=100-100", 100, 101),
        ("bytes=1000-", 1000, len(DATA)),
        ("bytes=-500", len(DATA) - 500, len(DATA)),
        ("bytes=-99999999", 0, len(DATA)),
        (f"bytes=10-{len(DATA) + 50}", 10, len(DATA)),
    ],
)
async def test_ranges(world: World, client: TestClient, header, start, end) -> None:
    path = await download_path(client, (await world.link()).code)
    resp = await client.get(path, headers={"Range": header})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(DATA)}"
    assert resp.headers["Content-Length"] == str(end - start)
    assert await resp.read() == DATA[start:end]


@pytest.mark.parametrize("header", [f"bytes={len(DATA)}-", "bytes=-0", f"bytes={10**12}-"])
async def test_unsatisfiable_range(world: World, client: TestClient, header) -> None:
    path = await download_path(client, (await world.link()).code)
    resp = await client.get(path, headers={"Range": header})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{len(DATA)}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=abc"])
async def test_ranges_we_ignore_send_everything(world: World, client: TestClient, header) -> None:
    path = await download_path(client, (await world.link()).code)
    resp = await client.get(path, headers={"Range": header})
    assert resp.status == 200 and await resp.read() == DATA


async def test_if_range_with_another_version_sends_everything(
    world: World, client: TestClient
) -> None:
    path = await download_path(client, (await world.link()).code)
    resp = await client.get(path, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert resp.status == 200
    resp = await client.get(path, headers={"Range": "bytes=0-9", "If-Range": f'"{SHA}"'})
    assert resp.status == 206 and await resp.read() == DATA[:10]


async def test_etag_gives_304(world: World, client: TestClient) -> None:
    path = await download_path(client, (await world.link()).code)
    for header in (f'"{SHA}"', f'W/"{SHA}"', f'"nope", "{SHA}"', "*"):
        resp = await client.get(path, headers={"If-None-Match": header})
        assert resp.status == 304, header
        assert resp.headers["ETag"] == f'"{SHA}"'
        assert await resp.read() == b""
    resp = await client.get(path, headers={"If-None-Match": '"something-else"'})
    assert resp.status == 200


async def test_head_sends_headers_only(world: World, client: TestClient) -> None:
    new = await world.link()
    # HEAD on the claim is the landing page's: it spends no use.
    assert (await client.head(f"/claim/{new.code}")).status == 200
    assert await world.used(new.link.id) == 0
    path = await download_path(client, new.code)
    resp = await client.head(path)
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(DATA))
    assert resp.headers["ETag"] == f'"{SHA}"'
    assert await resp.read() == b""


async def test_forged_and_expired_signatures_are_403(world: World, client: TestClient) -> None:
    path = await download_path(client, (await world.link()).code)
    token = path.rsplit("/", 1)[1]
    body, mac = token.split(".")
    forged = f"{body[:-2]}{'AA' if body[-2:] != 'AA' else 'BB'}.{mac}"
    for bad in (forged, f"{body}.{mac[:-3]}xyz", "garbage", "a.b"):
        resp = await client.get(f"/files/{bad}")
        assert resp.status == 403, bad
        assert "not valid" in await resp.text()
    world.clock.advance(timedelta(seconds=601))
    resp = await client.get(path)
    assert resp.status == 403
    assert "expired" in await resp.text()


async def test_token_of_another_purpose_is_refused(world: World, client: TestClient) -> None:
    from core.crypto import Signer

    other = Signer(SECRET, "something-else").sign({"i": 1, "l": 1}, 600)
    assert (await client.get(f"/files/{other}")).status == 403


async def test_unknown_and_malformed_codes_are_404(world: World, client: TestClient) -> None:
    await world.link()
    for code in ("A" * 43, "short"):
        resp = await client.get(f"/claim/{code}", headers=JSON)
        assert resp.status == 404
        assert (await resp.json())["error"] in ("denied:unknown", "denied:malformed")
    resp = await client.get(f"/claim/{'B' * 43}")
    assert resp.status == 404 and "does not exist" in await resp.text()


async def test_used_up_revoked_expired_are_410(world: World, client: TestClient) -> None:
    used = await world.link(max_uses=1)
    assert (await post_json(client, used.code)).status == 200
    resp = await post_json(client, used.code)  # another claimer
    assert resp.status == 410
    assert (await resp.json())["error"] == "denied:used_up"
    resp = await client.get(f"/claim/{used.code}")
    assert resp.status == 410 and "used as many times as allowed" in await resp.text()

    revoked = await world.link(data=DATA + b"r")
    await world.vault().revoke(world.actor, revoked.link.id)
    resp = await client.get(f"/claim/{revoked.code}")
    assert resp.status == 410 and "withdrawn" in await resp.text()
    assert (await post_json(client, revoked.code)).status == 410

    expiring = await world.link(data=DATA + b"e")
    world.clock.advance(timedelta(hours=2))
    resp = await client.get(f"/claim/{expiring.code}")
    assert resp.status == 410 and "expired" in await resp.text()
    assert (await post_json(client, expiring.code)).status == 410


async def test_revoked_or_deleted_after_the_claim_stops_the_download(
    world: World, client: TestClient
) -> None:
    new = await world.link()
    path = await download_path(client, new.code)
    await world.vault().delete(world.actor, new.item.id)
    resp = await client.get(path)
    assert resp.status == 410
    assert "no longer available" in await resp.text()


async def test_telegram_only_item_is_refused_clearly(world: World, client: TestClient) -> None:
    new = await world.link(data=None, size=50_000_000, file_unique_id="BIG")
    resp = await client.get(f"/claim/{new.code}")
    assert resp.status == 409
    assert "open the Telegram link instead" in await resp.text()
    resp = await client.get(f"/claim/{new.code}", headers=JSON)
    assert (await resp.json())["error"] == "denied:telegram_only"
    resp = await post_json(client, new.code)
    assert resp.status == 409 and (await resp.json())["error"] == "denied:telegram_only"
    assert await world.used(new.link.id) == 0


async def test_rate_limit_per_address(world: World) -> None:
    client = await make_client(world, claim_limit=3, claim_window_seconds=60)
    try:
        assert (await client.get(f"/claim/{'A' * 43}")).status == 404  # spends, logs nothing
        for _ in range(2):
            assert (await post_json(client, "A" * 43)).status == 404
        resp = await post_json(client, "A" * 43)
        assert resp.status == 429
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        assert (await resp.json())["error"] == "rate_limited"
    finally:
        await client.close()
    # Refused requests never reached the database; landing pages write no access log.
    async with world.sessionmaker() as session:
        assert len((await session.execute(select(VaultClaim))).scalars().all()) == 2


async def test_forwarded_for_is_ignored_unless_trusted(world: World) -> None:
    """Untrusted, X-Forwarded-For keys no limit; trusted, it keys only the limit."""
    client = await make_client(world, claim_limit=2)
    try:
        for address in ("1.1.1.1", "2.2.2.2"):
            resp = await client.get(f"/claim/{'A' * 43}", headers={"X-Forwarded-For": address})
            assert resp.status == 404
        resp = await client.get(f"/claim/{'A' * 43}", headers={"X-Forwarded-For": "3.3.3.3"})
        assert resp.status == 429  # all three were 127.0.0.1
    finally:
        await client.close()


async def test_a_forged_forwarded_for_never_redownloads_a_used_up_link(world: World) -> None:
    """Behind one trusted proxy, a client that writes an earlier claimer's address into
    X-Forwarded-For is still a new claimer: the address is no identity."""
    client = await make_client(world, trusted_proxy_hops=1)
    try:
        new = await world.link(max_uses=1)
        first = await post_json(client, new.code, **{"X-Forwarded-For": "203.0.113.7"})
        assert first.status == 200
        for forged in ("203.0.113.7", "192.0.2.1, 203.0.113.7"):
            resp = await post_json(client, new.code, **{"X-Forwarded-For": forged})
            assert resp.status == 410, forged
            assert (await resp.json())["error"] == "denied:used_up"
        assert await world.used(new.link.id) == 1
        async with world.sessionmaker() as session:
            ids = (await session.execute(select(VaultClaim.claimer_id))).scalars().all()
        assert all(i.startswith("browser:") and "203.0.113.7" not in i for i in ids), ids
        assert len(set(ids)) == 3  # three cookie-less scripts: three claimers
    finally:
        await client.close()


async def test_nasty_filename_in_content_disposition(world: World, client: TestClient) -> None:
    nasty = 'C:\\fake\\..\\"évil"\r\n; filename=x.exe 報告\u202etxt.pdf'
    new = await world.link(name=nasty)
    assert "\r" not in new.item.name and "\u202e" not in new.item.name
    path = await download_path(client, new.code)
    resp = await client.get(path)
    assert resp.status == 200
    disposition = resp.headers["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition
    plain, star = disposition.split("; filename*=UTF-8''")
    assert plain.startswith('attachment; filename="') and plain.endswith('"')
    assert plain.count('"') == 2 and plain.isascii()
    assert unquote(star) == new.item.name
    assert star.isascii() and ";" not in star and " " not in star


def test_content_disposition_escapes_what_sanitising_left() -> None:
    header = content_disposition('a"b\\c d.txt')
    assert header == ("attachment; filename=\"a_b_c d.txt\"; filename*=UTF-8''a%22b%5Cc%20d.txt")
    assert content_disposition("報告.pdf").startswith('attachment; filename="download.pdf"')


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-0", 10, (0, 1)),
        ("bytes=5-", 10, (5, 10)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-3", 0, UNSATISFIABLE),
        ("bytes=0-", 0, UNSATISFIABLE),
        ("bytes=10-", 10, UNSATISFIABLE),
        ("bytes=²-", 10, None),
        ("bytes = 2 - 4", 10, (2, 5)),
        ("BYTES=1-2", 10, (1, 3)),
        ("bytes=-", 10, None),
    ],
)
def test_parse_range(header, size, expected) -> None:
    assert parse_range(header, size) == expected
