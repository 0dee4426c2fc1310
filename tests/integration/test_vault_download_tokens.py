"""Download tokens die with their link (issue 12 item 3), on SQLite and PostgreSQL.

A `/files/<token>` URL works until the earlier of its own TTL and its link's expiry, and
stops at once when the link is revoked or the file deleted (each request re-reads both).
Its text is decoded strictly: any altered character, characters inserted (`~~~~`), a
trailing `=` or another final character with the same decoded bytes is a 403."""

from __future__ import annotations

import string
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.web_claims import ClaimRoutesConfig, add_claim_routes
from core.actor import Actor
from core.clock import OffsetClock
from core.crypto import Signer
from core.services.operators import OperatorService, bootstrap_owners
from core.vault import (
    Claimer,
    ClaimService,
    IngestSource,
    NewLink,
    VaultConfig,
    VaultGateway,
    VaultService,
)
from core.vault.gateway import DOWNLOAD_PURPOSE
from storage.blobs import LocalBlobStore
from storage.uow import UnitOfWork, over_session

OWNER = 1001
SECRET = b"test-secret-key-0123456789"
DATA = b"%PDF-1.7\n" + b"token me " * 300
ALPHABET = string.ascii_letters + string.digits + "-_"


@dataclass
class World:
    uow: UnitOfWork
    clock: OffsetClock
    blobs: LocalBlobStore
    actor: Actor
    gateway: VaultGateway
    client: TestClient

    @property
    def vault(self) -> VaultService:
        return VaultService(self.uow, self.clock, self.blobs)

    async def link(self, lifetime: int = 3600, data: bytes = DATA) -> NewLink:
        async def content() -> AsyncIterator[bytes]:
            yield data

        src = IngestSource(kind="document", name="report.pdf", content=content())
        item = (await self.vault.ingest(self.actor, src)).item
        return await self.vault.create_link(
            self.actor, item.id, lifetime_seconds=lifetime, max_uses=5
        )

    async def token(self, new: NewLink) -> str:
        """What the HTTP door's claim hands out for `new`."""
        result = await ClaimService(self.uow, self.clock).claim(
            new.code, Claimer.browser("a-browser"), "http", require_blob=True
        )
        assert result.delivers, result.outcome
        return self.gateway.sign_download(result).token

    async def fetch(self, token: str) -> tuple[int, bytes]:
        resp = await self.client.get(f"/files/{token}")
        return resp.status, await resp.read()


@pytest.fixture
async def world(engine, sessionmaker, tmp_path) -> AsyncIterator[World]:
    clock = OffsetClock()
    async with sessionmaker() as session:
        await bootstrap_owners(session, clock, [OWNER])
        await session.commit()
        actor = await OperatorService(over_session(session), clock).resolve(OWNER)
    assert actor is not None
    uow = UnitOfWork(engine)
    blobs = LocalBlobStore(tmp_path / "blobs")
    gateway = VaultGateway(
        uow=uow,
        clock=clock,
        blobs=blobs,
        secret_key=SECRET,
        config=VaultConfig(download_ttl_seconds=600),
    )
    app = web.Application()
    add_claim_routes(app, gateway, ClaimRoutesConfig(download_limit=10_000), secret_key=SECRET)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield World(uow, clock, blobs, actor, gateway, client)
    finally:
        await client.close()
        await uow.dispose()


async def test_a_token_dies_when_its_link_expires(world: World) -> None:
    """The reported case: 200 seven seconds after the link expired. The token's own TTL
    (600 s) is longer than what is left of the link (60 s): the link's expiry wins."""
    new = await world.link(lifetime=60)
    token = await world.token(new)
    assert await world.fetch(token) == (200, DATA)
    world.clock.advance(timedelta(seconds=55))
    assert (await world.fetch(token))[0] == 200
    world.clock.advance(timedelta(seconds=5 + 7))
    status, body = await world.fetch(token)
    assert status == 403 and b"expired" in body


async def test_a_token_signed_past_its_link_is_checked_against_the_database(
    world: World,
) -> None:
    """Even a validly signed token that outlives its link (say, one signed before a release
    that capped it) is refused: the link's expiry is read at each request."""
    new = await world.link(lifetime=60)
    await world.token(new)  # the claim that would have issued it
    signer = Signer(SECRET, DOWNLOAD_PURPOSE)
    long_lived = signer.sign(
        {"i": new.item.id, "l": new.link.id}, 3600, now=world.clock.now().timestamp()
    )
    assert (await world.fetch(long_lived))[0] == 200
    world.clock.advance(timedelta(seconds=67))
    status, body = await world.fetch(long_lived)
    assert status == 410 and b"expired" in body


async def test_the_token_ttl_still_applies_when_it_is_the_earlier(world: World) -> None:
    new = await world.link(lifetime=86400)
    token = await world.token(new)
    world.clock.advance(timedelta(seconds=601))
    assert (await world.fetch(token))[0] == 403


async def test_revocation_kills_a_token(world: World) -> None:
    new = await world.link()
    token = await world.token(new)
    assert (await world.fetch(token))[0] == 200
    await world.vault.revoke(world.actor, new.link.id)
    status, body = await world.fetch(token)
    assert status == 410 and b"withdrawn" in body


async def test_deleting_the_file_kills_a_token(world: World) -> None:
    new = await world.link()
    token = await world.token(new)
    await world.vault.delete(world.actor, new.item.id)
    status, body = await world.fetch(token)
    assert status == 410 and b"no longer available" in body


async def test_a_token_for_another_links_item_is_refused(world: World) -> None:
    mine, other = await world.link(), await world.link(data=DATA + b"other")
    await world.token(mine)
    signer = Signer(SECRET, DOWNLOAD_PURPOSE)
    mixed = signer.sign(
        {"i": other.item.id, "l": mine.link.id}, 600, now=world.clock.now().timestamp()
    )
    assert (await world.fetch(mixed))[0] == 410


async def test_every_altered_character_is_403(world: World) -> None:
    token = await world.token(await world.link())
    assert (await world.fetch(token))[0] == 200
    for i, char in enumerate(token):
        if char == ".":
            continue
        other = "A" if char != "A" else "B"
        altered = token[:i] + other + token[i + 1 :]
        assert (await world.fetch(altered))[0] == 403, (i, altered)


async def test_other_final_characters_are_403(world: World) -> None:
    """The last character of unpadded base64 carries unused low bits: lenient decoding read
    several final characters as the same signature."""
    token = await world.token(await world.link())
    accepted = [c for c in ALPHABET if (await world.fetch(token[:-1] + c))[0] == 200]
    assert accepted == [token[-1]]
    body, mac = token.split(".")
    accepted = [c for c in ALPHABET if (await world.fetch(body[:-1] + c + "." + mac))[0] == 200]
    assert accepted == [body[-1]]


async def test_inserted_characters_and_padding_are_403(world: World) -> None:
    token = await world.token(await world.link())
    body, mac = token.split(".")
    attacks = [
        f"{body[:5]}~~~~{body[5:]}.{mac}",
        f"{body}.{mac[:7]}~~~~{mac[7:]}",
        f"{body}~~~~.{mac}",
        f"{token}~~~~",
        f"{token}=",
        f"{token}==",
        f"{body}=.{mac}",
        f"{body}.{mac}%3D",  # an encoded "=" is still one
        f"{body}.{mac}.",
        f"{body}..{mac}",
        f"{body}.{mac} ",
        f"{body}.{mac}+",
    ]
    for bad in attacks:
        assert (await world.fetch(bad))[0] == 403, bad
    assert (await world.fetch(token))[0] == 200
