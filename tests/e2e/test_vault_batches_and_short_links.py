"""Batch links and short links through the fake Telegram (issue 12 item 7): several files
behind one link (picked in /vault, or an album linked whole), delivered as albums where
Telegram allows; `/shorten <url>` with its clicks counted. Bad input included: empty and
one-file selections, stale and forged buttons, viewers, another workspace's ids."""

from __future__ import annotations

import asyncio
import re

import aiohttp

from bot.callbacks import VaultAlbum, VaultPick
from bot.outbox import wait_idle
from storage.models import Role
from storage.repositories import tenants as tenant_repo
from tests.e2e.conftest import OPERATOR, STRANGER, VIEWER, Harness
from tests.e2e.test_vault_in_chat import CODE, PNG, upload

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


def item_id(card: dict) -> int:
    return int(re.search(r"(?:file|batch|short link) #(\d+)", card["text"]).group(1))


async def finish_wizard(app: Harness, step: dict, uses: str = "1") -> str:
    """From the wizard's first step to the new link's code."""
    await app.press(OPERATOR, step, app.button(step, "24h"))
    step = await app.becomes(step, lambda m: "How many" in m["text"])
    await app.press(OPERATOR, step, app.button(step, uses))
    step = await app.becomes(step, lambda m: "max" in m["text"])
    await app.press(OPERATOR, step, app.button(step, "Create link"))
    done = await app.becomes(step, lambda m: "t.me/" in m["text"])
    return CODE.search(done["text"]).group(1)


async def pick(app: Harness, *ids: int) -> dict:
    """/vault, Select, tick `ids`, Create link: the wizard's first step for the batch."""
    listing = await app.say(OPERATOR, "/vault", "Vault")
    await app.press(OPERATOR, listing, app.button(listing, "Select files"))
    listing = await app.becomes(listing, lambda m: "Select files for one link" in m["text"])
    for n, item in enumerate(ids, 1):
        await app.press(OPERATOR, listing, VaultPick(act="t", id=item).pack())
        listing = await app.becomes(listing, lambda m, n=n: f"{n} selected" in m["text"])
    await app.press(OPERATOR, listing, app.button(listing, f"Create link for all {len(ids)}"))
    return await app.becomes(listing, lambda m: "batch of" in m["text"])


def last_id(app: Harness, chat_id: int) -> int:
    return max((m["message_id"] for m in app.tg.messages(chat_id)), default=0)


def sent_to(app: Harness, chat_id: int, after: int) -> list[dict]:
    """The bot's messages in `chat_id` after message id `after`."""
    return [m for m in app.tg.messages(chat_id) if m["message_id"] > after]


async def test_files_picked_in_vault_make_one_link_delivered_as_albums(app: Harness) -> None:
    photo1 = item_id(await upload(app, OPERATOR, "photo", PNG))
    photo2 = item_id(await upload(app, OPERATOR, "photo", JPEG))
    doc1 = item_id(await upload(app, OPERATOR, "document", b"one", file_name="1.txt"))
    doc2 = item_id(await upload(app, OPERATOR, "document", b"two", file_name="2.txt"))
    voice = item_id(await upload(app, OPERATOR, "voice", b"OggS\x00voice"))

    step = await pick(app, photo1, photo2, doc1, doc2, voice)
    assert "5 files" in step["text"]
    code = await finish_wizard(app, step, uses="1")

    mark, seen = app.tg.mark(), last_id(app, STRANGER)
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    await app.tg.wait_for_message(STRANGER, "Here are your 5 files", since=mark)
    await wait_idle(app.app.sessionmaker)
    got = sent_to(app, STRANGER, seen)
    photos = [m for m in got if "photo" in m]
    docs = [m for m in got if "document" in m]
    assert len(photos) == 2 and len({m.get("media_group_id") for m in photos}) == 1
    assert photos[0].get("media_group_id"), "the photos came as one album"
    assert len(docs) == 2 and docs[0].get("media_group_id") == docs[1].get("media_group_id")
    assert [m for m in got if "voice" in m], "the voice note came on its own"
    assert len(app.tg.calls("sendMediaGroup")) == 2

    # one use covered the whole batch: someone else is refused, the claimer gets it again
    assert "used as many times" in (await app.say(VIEWER, f"/start {code}"))["text"]
    again = await app.say(STRANGER, f"/start {code}", "again")
    assert "5 files again" in again["text"]

    links = await app.say(OPERATOR, "/links")
    assert "No active links" in links["text"]  # used up
    card = await app.say(OPERATOR, "/vault batch", "Vault")
    assert "📦" in app.buttons_text(card)


async def test_an_album_is_linked_whole(app: Harness) -> None:
    mark, seen = app.tg.mark(), last_id(app, OPERATOR)
    await app.tg.send_file(app.user(OPERATOR), "photo", PNG, media_group_id="77")
    await app.tg.send_file(app.user(OPERATOR), "photo", JPEG, media_group_id="77")

    def cards() -> list[dict]:
        return [m for m in sent_to(app, OPERATOR, seen) if "file #" in m.get("text", "")]

    await app.tg.wait_until(lambda: len(cards()) >= 2, what="two cards")
    card = cards()[-1]
    await app.press(OPERATOR, card, app.button(card, "whole album"))
    step = await app.tg.wait_for_message(OPERATOR, "batch of", since=mark)
    assert "2 files" in step["text"]
    code = await finish_wizard(app, step, uses="10")
    mark, seen = app.tg.mark(), last_id(app, STRANGER)
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    await app.tg.wait_for_message(STRANGER, "Here are your 2 files", since=mark)
    await wait_idle(app.app.sessionmaker)
    photos = [m for m in sent_to(app, STRANGER, seen) if "photo" in m]
    assert len(photos) == 2 and photos[0]["media_group_id"] == photos[1]["media_group_id"]


async def test_selection_refusals(app: Harness) -> None:
    one = item_id(await upload(app, OPERATOR, "document", b"only", file_name="o.txt"))
    listing = await app.say(OPERATOR, "/vault", "Vault")
    await app.press(OPERATOR, listing, app.button(listing, "Select files"))
    listing = await app.becomes(listing, lambda m: "Select files" in m["text"])

    empty = await app.press(OPERATOR, listing, app.button(listing, "Create link for all 0"))
    assert "Nothing is selected" in empty["text"] and empty["show_alert"]
    await app.press(OPERATOR, listing, VaultPick(act="t", id=one).pack())
    listing = await app.becomes(listing, lambda m: "1 selected" in m["text"])
    single = await app.press(OPERATOR, listing, app.button(listing, "Create link for all 1"))
    assert "two or more" in single["text"]

    # another workspace's file, and a short link, cannot be ticked
    async with app.app.sessionmaker() as session:
        other = await tenant_repo.create(session, "acme", "Acme", app.clock.now())
        await session.commit()
        other_id = other.id
    await app.add_operator(4001, Role.operator, tenant_id=other_id)
    app.users[4001] = app.tg.user(4001, "Eve")
    theirs = item_id(await upload(app, 4001, "document", b"theirs", file_name="t.txt"))
    forged = await app.forge(OPERATOR, listing, VaultPick(act="t", id=theirs).pack())
    assert "does not exist in your workspace" in forged["text"]
    await app.say(OPERATOR, "/shorten https://example.org/", "short link")
    url_id = max(theirs, one) + 1
    forged = await app.forge(OPERATOR, listing, VaultPick(act="t", id=url_id).pack())
    assert "not a file" in forged["text"]

    # a viewer presses the buttons
    for data in (VaultPick(act="go").pack(), VaultPick(act="make").pack()):
        answer = await app.forge(VIEWER, listing, data)
        assert "cannot" in answer["text"], answer

    # cancelled: the old buttons are stale
    await app.press(OPERATOR, listing, app.button(listing, "Cancel"))
    await app.becomes(listing, lambda m: "cancelled" in m["text"])
    stale = await app.forge(OPERATOR, listing, VaultPick(act="t", id=one).pack())
    assert "selection has ended" in stale["text"]
    stale = await app.forge(OPERATOR, listing, VaultPick(act="make").pack())
    assert "selection has ended" in stale["text"]

    # an album id of another workspace (or none) links nothing
    answer = await app.forge(OPERATOR, listing, VaultAlbum(g="999").pack())
    assert "no longer here together" in answer["text"]


async def test_deleting_every_file_of_a_batch_ends_its_links(app: Harness) -> None:
    a = item_id(await upload(app, OPERATOR, "document", b"a", file_name="a.txt"))
    b = item_id(await upload(app, OPERATOR, "document", b"b", file_name="b.txt"))
    step = await pick(app, a, b)
    code = await finish_wizard(app, step, uses="10")
    vault = app.app.services.vault
    actor = await app.actor(OPERATOR)
    await vault.delete(actor, a)
    await app.say(STRANGER, f"/start {code}", "Here are your 1 files")
    await vault.delete(actor, b)
    assert "no longer available" in (await app.say(VIEWER, f"/start {code}"))["text"]


async def test_shorten_counts_clicks_in_chat(app: Harness) -> None:
    wizard = await app.say(OPERATOR, "/shorten https://example.com/page?x=1", "short link")
    assert "example.com" in wizard["text"]
    code = await finish_wizard(app, wizard, uses="10")
    for _ in range(2):
        got = await app.say(STRANGER, f"/start {code}", "Here is your link")
        assert ("Open example.com", None) in [(t, None) for t, _ in app.tg.buttons(got)], (
            app.tg.buttons(got)
        )
        urls = [b.get("url") for row in got["reply_markup"]["inline_keyboard"] for b in row]
        assert urls == ["https://example.com/page?x=1"]
    await app.say(VIEWER, f"/start {code}", "Here is your link")
    listing = await app.say(OPERATOR, "/links", "Active links")
    assert "3 click(s) by 2" in listing["text"] and "🌐" in listing["text"]

    answer = await app.press(OPERATOR, listing, app.button(listing, "Revoke"))
    assert "revoked" in answer["text"]
    assert "withdrawn" in (await app.say(STRANGER, f"/start {code}"))["text"]


async def test_shorten_refusals(app: Harness) -> None:
    cases = {
        "/shorten": "Send the address",
        "/shorten ftp://example.com/file": "Only http:// and https://",
        "/shorten javascript:alert(1)": "Only http:// and https://",
        "/shorten example.com": "Only http:// and https://",
        "/shorten https://bank.example@evil.example/": "user name or password",
        "/shorten https://": "no host name",
        "/shorten https://example.com:99999/": "not a valid web address",
        "/shorten https://example.com/" + "a" * 2100: "at most 2,048",
    }
    for command, words in cases.items():
        answer = await app.say(OPERATOR, command)
        assert words in answer["text"], (command, answer["text"])
    refused = await app.say(VIEWER, "/shorten https://example.com/")
    assert "cannot" in refused["text"]
    listing = await app.say(OPERATOR, "/vault url", "Vault")
    assert "Nothing here" in listing["text"]  # nothing was created


# -- the HTTP door --------------------------------------------------------------------------------
HTTP_CODE = re.compile(r"(http://127\.0\.0\.1:\d+/claim/[A-Za-z0-9_-]{43})")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PREVIEWERS = (
    "TelegramBot (like TwitterBot)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "WhatsApp/2.23.20.0",
)


async def finish_wizard_http(app: Harness, step: dict, uses: str) -> str:
    await app.press(OPERATOR, step, app.button(step, "24h"))
    step = await app.becomes(step, lambda m: "How many" in m["text"])
    if uses in ("1", "10", "100"):
        await app.press(OPERATOR, step, app.button(step, uses))
        step = await app.becomes(step, lambda m: "max" in m["text"])
    else:  # typed
        await app.press(OPERATOR, step, app.button(step, "Custom"))
        await app.tg.wait_for_message(OPERATOR, "number of uses")
        step = await app.say(OPERATOR, uses, "max")
    await app.press(OPERATOR, step, app.button(step, "Create link"))
    done = await app.becomes(step, lambda m: "t.me/" in m["text"])
    return HTTP_CODE.search(done["text"]).group(1)


def browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_short_link_page_shows_the_host_and_counts_only_continue(app: Harness) -> None:
    wizard = await app.say(OPERATOR, "/shorten https://example.com/deep/page?x=1", "short link")
    url = await finish_wizard_http(app, wizard, uses="10")
    async with aiohttp.ClientSession() as previewer:
        for agent in PREVIEWERS:
            async with previewer.get(url, headers={"User-Agent": agent}) as resp:
                page = await resp.text()
                assert resp.status == 200 and "example.com" in page and "Continue" in page
                assert "/deep/page" not in page  # the host only, before the click
                assert "form-action 'self'" in resp.headers["Content-Security-Policy"]
                assert "https://example.com" in resp.headers["Content-Security-Policy"]
    async with browser() as http:
        async with http.get(url) as resp:
            csrf = CSRF.search(await resp.text()).group(1)
        for _ in range(2):
            async with http.post(url, data={"csrf": csrf}, allow_redirects=False) as resp:
                assert resp.status == 303
                assert resp.headers["Location"] == "https://example.com/deep/page?x=1"
    async with aiohttp.ClientSession() as script:
        headers = {"Accept": "application/json"}
        async with script.post(url, headers=headers) as resp:
            assert (await resp.json())["url"] == "https://example.com/deep/page?x=1"
        async with script.post(url) as resp:  # a form without the page's token
            assert resp.status == 403
    listing = await app.say(OPERATOR, "/links", "Active links")
    assert "3 click(s) by 2" in listing["text"], listing["text"]


async def test_batch_page_lists_the_files_and_one_use_covers_them(app: Harness) -> None:
    a = item_id(await upload(app, OPERATOR, "document", b"alpha bytes", file_name="a.txt"))
    b = item_id(await upload(app, OPERATOR, "photo", PNG))
    big = await upload(app, OPERATOR, "document", b"z" * (21 * 1024 * 1024), file_name="big.bin")
    step = await pick(app, a, b, item_id(big))
    url = await finish_wizard_http(app, step, uses="2")

    async with aiohttp.ClientSession() as previewer:
        async with previewer.get(url, headers={"User-Agent": PREVIEWERS[0]}) as resp:
            page = await resp.text()
        assert resp.status == 200 and "a.txt" in page and "big.bin" in page
        assert "Get all 3 files" in page and "/files/" not in page
        async with previewer.get(url, headers={"Accept": "application/json"}) as resp:
            meta = await resp.json()
        assert [i["name"] for i in meta["items"]] == ["a.txt", meta["items"][1]["name"], "big.bin"]
        assert meta["uses_left"] == 2 and "download_url" not in meta["items"][0]

    async with browser() as http:
        async with http.get(url) as resp:
            csrf = CSRF.search(await resp.text()).group(1)
        async with http.post(url, data={"csrf": csrf}) as resp:
            assert resp.status == 200
            page = await resp.text()
        links = re.findall(r'href="(http://127\.0\.0\.1:\d+/files/[^"]+)"', page)
        assert len(links) == 2 and "only in Telegram" in page  # big.bin has no bytes here
        async with http.get(links[0]) as resp:
            assert resp.status == 200 and await resp.read() == b"alpha bytes"
        async with http.get(links[1]) as resp:
            assert resp.status == 200 and await resp.read() == PNG
        async with http.post(url, data={"csrf": csrf}) as resp:  # the same browser: free
            assert resp.status == 200

    json = {"Accept": "application/json"}
    async with aiohttp.ClientSession() as script, script.post(url, headers=json) as resp:
        body = await resp.json()
    assert [bool(i["download_url"]) for i in body["items"]] == [True, True, False]
    assert body["uses_left"] == 0 and body["items"][0]["sha256"]
    async with aiohttp.ClientSession() as other, other.post(url, headers=json) as resp:
        assert resp.status == 410 and (await resp.json())["error"] == "denied:used_up"

    # a download of one file of the batch dies with the batch's link
    listing = await app.say(OPERATOR, "/links")
    assert "No active links" in listing["text"]  # used up, but its downloads still work
    vault = app.app.services.vault
    await vault.delete(await app.actor(OPERATOR), a)
    async with aiohttp.ClientSession() as http, http.get(links[0]) as resp:
        assert resp.status == 410


async def test_auto_delete_removes_every_message_of_an_album(app: Harness) -> None:
    from sqlalchemy import func, select

    from storage.models import Job

    step = await pick(
        app,
        item_id(await upload(app, OPERATOR, "photo", PNG)),
        item_id(await upload(app, OPERATOR, "photo", JPEG)),
    )
    await app.press(OPERATOR, step, app.button(step, "24h"))
    step = await app.becomes(step, lambda m: "How many" in m["text"])
    await app.press(OPERATOR, step, app.button(step, "10"))
    step = await app.becomes(step, lambda m: "Auto-delete" in app.buttons_text(m))
    await app.press(OPERATOR, step, app.button(step, "Auto-delete"))
    step = await app.becomes(step, lambda m: "10 min" in m["text"])
    await app.press(OPERATOR, step, app.button(step, "Create link"))
    done = await app.becomes(step, lambda m: "t.me/" in m["text"])
    code = CODE.search(done["text"]).group(1)

    mark, seen = app.tg.mark(), last_id(app, STRANGER)
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    await app.tg.wait_for_message(STRANGER, "Here are your 2 files", since=mark)
    await wait_idle(app.app.sessionmaker)
    photos = [m for m in sent_to(app, STRANGER, seen) if "photo" in m]
    assert len(photos) == 2 and photos[0]["media_group_id"] == photos[1]["media_group_id"]

    async def delete_jobs() -> int:
        async with app.app.sessionmaker() as session:
            stmt = select(func.count()).select_from(Job).where(Job.kind == "vault.delete_message")
            return int(await session.scalar(stmt))

    for _ in range(100):
        if await delete_jobs() == 2:
            break
        await asyncio.sleep(0.05)
    assert await delete_jobs() == 2
    app.clock.advance(601)
    ids = {m["message_id"] for m in photos}
    await app.tg.wait_until(
        lambda: ids <= {m["message_id"] for m in app.tg.deleted_messages(STRANGER)},
        timeout=10,
        what="the album auto-deleted",
    )


async def test_a_batch_link_that_hides_names_hides_its_files_names(app: Harness) -> None:
    from core.vault import http_link

    a = item_id(await upload(app, OPERATOR, "document", b"secret a", file_name="payroll.xlsx"))
    b = item_id(await upload(app, OPERATOR, "document", b"secret b", file_name="layoffs.pdf"))
    vault = app.app.services.vault
    actor = await app.actor(OPERATOR)
    batch = await vault.create_batch(actor, [a, b])
    new = await vault.create_link(
        actor, batch.id, lifetime_seconds=3600, max_uses=2, hide_name=True
    )
    url = http_link(app.app.settings.public_base_url, new.code)
    async with aiohttp.ClientSession() as previewer:
        async with previewer.get(url) as resp:
            page = await resp.text()
        assert resp.status == 200 and "Get all 2 files" in page
        assert "payroll" not in page and "layoffs" not in page
        async with previewer.get(url, headers={"Accept": "application/json"}) as resp:
            meta = await resp.json()
        assert [i["name"] for i in meta["items"]] == [None, None]
