"""The vault over the HTTP API: streamed uploads, items, links, access log, stats."""

from __future__ import annotations

import hashlib
import os

import httpx

from tests.e2e.conftest import OWNER, Harness
from tests.e2e.test_api import OTHER_OWNER, client, make_token


async def upload(http: httpx.AsyncClient, data: bytes, filename: str = "build.zip", **query: str):
    return await http.post(
        "/api/v1/vault/items",
        files={"file": (filename, data, "application/octet-stream")},
        params=query,
    )


async def test_upload_dedupe_and_item_changes(app: Harness) -> None:
    token = await make_token(app, OWNER, "ci operator")
    data = os.urandom(300_000)
    async with client(app, token) as http:
        first = await upload(http, data, "build-1.zip")
        assert first.status_code == 201, first.text
        item = first.json()["item"]
        assert item["sha256"] == hashlib.sha256(data).hexdigest() and item["size"] == len(data)
        assert item["name"] == "build-1.zip" and first.json()["duplicate"] is False
        again = await upload(http, data, "other-name.zip")
        assert again.status_code == 201 and again.json()["duplicate"] is True
        assert again.json()["item"]["id"] == item["id"]

        named = await upload(http, b"hello", "x.bin", name="notes.txt")
        assert named.json()["item"]["name"] == "notes.txt"

        renamed = await http.patch(f"/api/v1/vault/items/{item['id']}", json={"name": "release"})
        assert renamed.status_code == 200 and renamed.json()["name"].startswith("release")
        nsfw = await http.patch(f"/api/v1/vault/items/{item['id']}", json={"nsfw": True})
        assert nsfw.json()["nsfw"] is True
        empty = await http.patch(f"/api/v1/vault/items/{item['id']}", json={})
        assert empty.status_code == 422

        listed = (await http.get("/api/v1/vault/items", params={"limit": 1, "offset": 1})).json()
        assert listed["total"] == 2 and len(listed["items"]) == 1
        everything = (await http.get("/api/v1/vault/items", params={"limit": 3})).json()
        assert [i["id"] for i in everything["items"]][1:] == [listed["items"][0]["id"]]
        past = (await http.get("/api/v1/vault/items", params={"offset": 50})).json()
        assert past["items"] == [] and past["total"] == 2

        stats = (await http.get("/api/v1/vault/stats")).json()
        assert stats["items"] == 2 and stats["bytes"] == len(data) + 5

        wrong_type = await http.post(
            "/api/v1/vault/items", content=data, headers={"Content-Type": "application/zip"}
        )
        assert wrong_type.status_code == 415
        no_file = await http.post("/api/v1/vault/items", files={"name": (None, "x")})
        assert no_file.status_code == 422 and "part named file" in no_file.json()["detail"]
        bad_kind = await upload(http, b"abc", kind="hologram")
        assert bad_kind.status_code == 422

        gone = await http.delete(f"/api/v1/vault/items/{item['id']}")
        assert gone.status_code == 200 and gone.json()["links_revoked"] == 0
        assert (await http.delete(f"/api/v1/vault/items/{item['id']}")).status_code == 409
        assert (await http.get(f"/api/v1/vault/items/{item['id']}")).status_code == 404


async def test_links_access_log_and_workspaces(app: Harness) -> None:
    token = await make_token(app, OWNER, "ci operator")
    await app.say(OWNER, f"/tenants add beta {OTHER_OWNER}", contains="beta")
    app.users[OTHER_OWNER] = app.tg.user(OTHER_OWNER, "Bea")
    theirs = await make_token(app, OTHER_OWNER, "beta operator")
    async with client(app, token) as http:
        item = (await upload(http, b"release bytes", "r.bin")).json()["item"]
        made = await http.post(
            f"/api/v1/vault/items/{item['id']}/links",
            json={"lifetime_seconds": 3600, "max_uses": 3},
            headers={"Idempotency-Key": "link-r1"},
        )
        assert made.status_code == 201, made.text
        link = made.json()
        assert link["uses_left"] == 3 and len(link["code"]) == 43
        assert link["claim_url"].endswith("/claim/" + link["code"])
        assert link["deep_link"].startswith("https://t.me/") and link["code"] in link["deep_link"]
        replay = await http.post(
            f"/api/v1/vault/items/{item['id']}/links",
            json={"lifetime_seconds": 3600, "max_uses": 3},
            headers={"Idempotency-Key": "link-r1"},
        )
        assert replay.json()["id"] == link["id"]  # one link, not two
        listed = (await http.get(f"/api/v1/vault/items/{item['id']}/links")).json()
        assert [entry["id"] for entry in listed["items"]] == [link["id"]]
        assert "code" not in listed["items"][0]  # the code is shown once, at creation
        bad = await http.post(
            f"/api/v1/vault/items/{item['id']}/links", json={"lifetime_seconds": 10, "max_uses": 0}
        )
        assert bad.status_code == 422

        # a claim in chat lands in the access log
        since = app.tg.mark()
        await app.tg.send_text(app.user(OWNER), f"/start {link['code']}")
        await app.tg.wait_for(
            "sendDocument", lambda c: str(c.params.get("chat_id")) == str(OWNER), since=since
        )
        log = (await http.get(f"/api/v1/vault/items/{item['id']}/access-log")).json()
        assert log["total"] >= 1 and log["items"][0]["channel"] == "telegram"

        revoked = await http.post(f"/api/v1/vault/links/{link['id']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        assert (await http.post(f"/api/v1/vault/links/{link['id']}/revoke")).status_code == 409
        active = (await http.get("/api/v1/vault/links")).json()
        assert active["total"] == 0
        cleanup = await http.post("/api/v1/vault/links/cleanup")
        assert cleanup.status_code == 200

    async with client(app, theirs) as http:
        for method, path in (
            ("GET", f"/api/v1/vault/items/{item['id']}"),
            ("PATCH", f"/api/v1/vault/items/{item['id']}"),
            ("DELETE", f"/api/v1/vault/items/{item['id']}"),
            ("GET", f"/api/v1/vault/items/{item['id']}/links"),
            ("POST", f"/api/v1/vault/items/{item['id']}/links"),
            ("GET", f"/api/v1/vault/items/{item['id']}/access-log"),
            ("POST", f"/api/v1/vault/links/{link['id']}/revoke"),
        ):
            body = {"name": "mine"} if method == "PATCH" else None
            if path.endswith("/links") and method == "POST":
                body = {"lifetime_seconds": 3600, "max_uses": 1}
            r = await http.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
        assert (await http.get("/api/v1/vault/items")).json()["total"] == 0


async def test_ci_uploads_a_build_and_hands_out_three_downloads(app: Harness, tmp_path) -> None:
    """The CI step: stream a 50 MB build up, make a 3-use link, three people download it over
    HTTP, the fourth is refused."""
    build = tmp_path / "build.tar.gz"
    digest = hashlib.sha256()
    with build.open("wb") as f:
        for _ in range(50):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            f.write(chunk)
    token = await make_token(app, OWNER, "ci operator")
    async with client(app, token) as http:
        with build.open("rb") as f:  # httpx streams the open file; it is never read whole
            r = await http.post(
                "/api/v1/vault/items",
                files={"file": ("build.tar.gz", f, "application/gzip")},
                timeout=120,
            )
        assert r.status_code == 201, r.text
        item = r.json()["item"]
        assert item["size"] == 50 << 20 and item["sha256"] == digest.hexdigest()
        link = (
            await http.post(
                f"/api/v1/vault/items/{item['id']}/links",
                json={"lifetime_seconds": 86400, "max_uses": 3},
            )
        ).json()
    for person in range(4):
        async with httpx.AsyncClient(timeout=120) as browser:  # its own cookie jar
            claim = await browser.post(link["claim_url"], headers={"Accept": "application/json"})
            if person == 3:
                assert claim.status_code == 410, claim.text
                break
            assert claim.status_code == 200, claim.text
            assert claim.json()["uses_left"] == 2 - person
            got = hashlib.sha256()
            async with browser.stream("GET", claim.json()["download_url"]) as download:
                assert download.status_code == 200
                async for chunk in download.aiter_bytes():
                    got.update(chunk)
            assert got.hexdigest() == digest.hexdigest()
