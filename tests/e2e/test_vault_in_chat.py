"""The vault through the fake Telegram server: ingest, links, claims in chat and over HTTP."""

from __future__ import annotations

import asyncio
import re

import aiohttp
from sqlalchemy import select

from bot.callbacks import VaultItemAct, VaultLinkNew
from bot.outbox import wait_idle
from core.vault import VaultConfig, VaultService
from storage.models import Role
from storage.repositories import tenants as tenant_repo
from storage.vault_models import VaultLink
from tests.e2e.conftest import OPERATOR, OWNER, STRANGER, VIEWER, Harness

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
CODE = re.compile(r"\?start=([A-Za-z0-9_-]{43})")
HTTP = re.compile(r"(http://127\.0\.0\.1:\d+/claim/[A-Za-z0-9_-]{43})")


async def upload(
    app: Harness, user_id: int, kind: str, data: bytes, contains: str = "file #", **kw
) -> dict:
    since = app.tg.mark()
    await app.tg.send_file(app.user(user_id), kind, data, **kw)
    return await app.tg.wait_for_message(user_id, contains, since=since)


async def make_link(
    app: Harness,
    card: dict,
    life: str = "24h",
    uses: str = "10",
    protect: bool = False,
    auto_delete: int = 0,
) -> tuple[str, str, dict]:
    await app.press(OPERATOR, card, app.button(card, "Create link"))
    step = await app.becomes(card, lambda m: "How long" in m["text"])
    await app.press(OPERATOR, step, app.button(step, life))
    step = await app.becomes(card, lambda m: "How many uses" in m["text"])
    await app.press(OPERATOR, step, app.button(step, uses))
    step = await app.becomes(card, lambda m: "Protect content" in m["text"])
    if protect:
        await app.press(OPERATOR, step, app.button(step, "Protect: off"))
        step = await app.becomes(card, lambda m: "Protect: on" in app.buttons_text(m))
    for _ in range({0: 0, 10: 1, 60: 2}[auto_delete]):
        await app.press(OPERATOR, step, app.button(step, "Auto-delete"))
        step = await app.becomes(card, lambda m, s=step: m["text"] != s["text"])
    await app.press(OPERATOR, step, app.button(step, "Create link"))
    done = await app.becomes(card, lambda m: "t.me/" in m["text"])
    return CODE.search(done["text"]).group(1), HTTP.search(done["text"]).group(1), done


async def wait_delete_job(app: Harness):
    from sqlalchemy import select

    from storage.models import Job

    for _ in range(100):
        async with app.app.sessionmaker() as session:
            job = await session.scalar(select(Job).where(Job.kind == "vault.delete_message"))
        if job is not None:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError("no vault.delete_message job was queued")


def files_sent(app: Harness, chat_id: int) -> list[dict]:
    kinds = ("photo", "video", "audio", "voice", "animation", "document")
    return [m for m in app.tg.messages(chat_id) if any(k in m for k in kinds)]


async def test_each_kind_becomes_an_item_with_a_card(app: Harness) -> None:
    cases = [
        ("document", b"%PDF-1.4 hello", {"file_name": "report.pdf"}),
        ("photo", PNG, {}),
        ("video", b"\x00\x00\x00\x18ftypmp42video", {}),
        ("audio", b"ID3\x03\x00audio", {"file_name": "song.mp3"}),
        ("voice", b"OggS\x00voice", {}),
        ("animation", b"\x00\x00\x00\x18ftypmp42anim", {}),
    ]
    for kind, data, kw in cases:
        card = await upload(app, OPERATOR, kind, data, caption=f"a {kind}", **kw)
        assert kind in card["text"] and "sha256" in card["text"], card["text"]
        for button in ("Create link", "Send to me", "Rename", "Delete"):
            assert button in app.buttons_text(card)
    stats = await app.say(OPERATOR, "/vault stats", "Vault stats")
    assert "6 file(s)" in stats["text"]


async def test_duplicate_bytes_report_the_existing_item(app: Harness) -> None:
    first = await upload(app, OPERATOR, "document", b"same bytes", file_name="a.txt")
    again = await upload(app, OPERATOR, "document", b"same bytes", file_name="b.txt")
    assert "Already in the vault" in again["text"]
    assert re.search(r"file #\d+", first["text"]).group() in again["text"]


async def test_oversized_file_is_refused(app: Harness) -> None:
    app.app.services.vault = VaultService(
        app.app.uow, app.app.clock, app.app.blobs, VaultConfig(max_file_bytes=100)
    )
    answer = await upload(app, OPERATOR, "document", b"x" * 500, contains="accepts files up to")
    assert "file #" not in answer["text"]


async def test_big_file_is_telegram_only_and_still_claimable(app: Harness) -> None:
    card = await upload(app, OPERATOR, "document", b"z" * (21 * 1024 * 1024), file_name="big.bin")
    assert "Telegram-only" in card["text"]
    code, _, _ = await make_link(app, card)
    since = app.tg.mark()
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    got = await app.tg.wait_for_message(STRANGER, "Here is your file", since=since)
    assert "document" in got


async def test_album_makes_one_item_per_file(app: Harness) -> None:
    since = app.tg.mark()
    await app.tg.send_file(app.user(OPERATOR), "photo", PNG, media_group_id="g1")
    await app.tg.send_file(
        app.user(OPERATOR), "document", b"two", file_name="2.txt", media_group_id="g1"
    )
    await app.tg.wait_until(
        lambda: (
            len([m for m in app.tg.messages(OPERATOR) if "file #" in (m.get("text") or "")]) >= 2
        ),
        what="two cards",
    )
    assert since is not None
    stats = await app.say(OPERATOR, "/vault stats", "Vault stats")
    assert "2 file(s)" in stats["text"]


async def test_viewer_cannot_upload_or_mutate(app: Harness) -> None:
    refused = await upload(app, VIEWER, "document", b"v", contains="cannot")
    assert "add files" in refused["text"]
    card = await upload(app, OPERATOR, "document", b"mine", file_name="m.txt")
    item_id = int(re.search(r"file #(\d+)", card["text"]).group(1))
    for data in (
        VaultItemAct(act="delete_yes", id=item_id).pack(),
        VaultItemAct(act="rename", id=item_id).pack(),
        VaultLinkNew(id=item_id, life=3600, uses=1, go="make").pack(),
    ):
        answer = await app.forge(VIEWER, card, data)
        assert "cannot" in answer["text"], answer
    listing = await app.say(VIEWER, "/vault", "Vault")
    assert "m.txt" in app.buttons_text(listing)


async def test_other_workspace_item_is_not_found(app: Harness) -> None:
    card = await upload(app, OPERATOR, "document", b"secret", file_name="s.txt")
    item_id = int(re.search(r"file #(\d+)", card["text"]).group(1))
    async with app.app.sessionmaker() as session:
        other = await tenant_repo.create(session, "acme", "Acme", app.clock.now())
        await session.commit()
        other_id = other.id
    await app.add_operator(4001, Role.operator, tenant_id=other_id)
    app.users[4001] = app.tg.user(4001, "Eve")
    mine = await app.say(4001, "/vault", "Vault")
    for act in ("more", "send", "delete_yes"):
        answer = await app.forge(4001, mine, VaultItemAct(act=act, id=item_id).pack())
        assert "does not exist in your workspace" in answer["text"]
    forged = VaultLinkNew(id=item_id, life=3600, uses=1, go="make").pack()
    answer = await app.forge(4001, mine, forged)
    assert "does not exist" in answer["text"]


async def test_stranger_claims_again_then_used_up_and_revoked(app: Harness) -> None:
    card = await upload(app, OPERATOR, "photo", PNG, caption="holiday")
    code, _, _ = await make_link(app, card, uses="1", protect=True)
    since = app.tg.mark()
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    got = await app.tg.wait_for_message(STRANGER, "Here is your file", since=since)
    assert "photo" in got and got.get("has_protected_content") is True
    assert "holiday" in got["caption"]
    # again, once the first delivery is recorded as sent: delivered again, no use spent
    # (a tap while it is still on its way is a double tap: test_a_double_tap_gets_one_file)
    await wait_idle(app.app.sessionmaker)
    since = app.tg.mark()
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    again = await app.tg.wait_for_message(STRANGER, "again", since=since)
    assert "photo" in again
    # someone else: the only use is gone
    used = await app.say(VIEWER, f"/start {code}", "used as many times")
    assert "photo" not in used
    # the operator's /links: the link is used up, so not active; the card's log shows claims
    listing = await app.say(OPERATOR, "/links")
    assert "No active links" in listing["text"]
    opened = await app.say(OPERATOR, "/vault", "Vault")
    await app.press(OPERATOR, opened, app.button(opened, "#"))
    full = await app.becomes(opened, lambda m: "Recent access" in m["text"])
    assert "delivered again" in full["text"] and "no uses left" in full["text"]


async def test_a_double_tap_gets_one_file_and_a_word_that_it_is_coming(app: Harness) -> None:
    card = await upload(app, OPERATOR, "document", b"double tap", file_name="d.txt")
    code, _, _ = await make_link(app, card, uses="10")
    app.tg.delay_next("sendDocument", 1.5)  # the first file is still on its way
    since = app.tg.mark()
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    for _ in range(750):  # until the first delivery reaches Telegram (held there 1.5 s)
        if app.tg.calls("sendDocument"):
            break
        await asyncio.sleep(0.02)
    assert app.tg.calls("sendDocument"), "the first delivery never started"
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    coming = await app.tg.wait_for_message(STRANGER, "on its way", since=since)
    assert "document" not in coming
    await wait_idle(app.app.sessionmaker)
    files = [m for m in app.tg.messages(STRANGER) if "document" in m]
    assert len(files) == 1, files
    async with app.app.sessionmaker() as session:
        link = (await session.execute(select(VaultLink))).scalars().one()
    assert link.used_count == 1


async def test_revoke_from_links_and_revoke_twice(app: Harness) -> None:
    card = await upload(app, OPERATOR, "document", b"revoke me", file_name="r.txt")
    code, _, _ = await make_link(app, card)
    listing = await app.say(OPERATOR, "/links", "Active links")
    revoke = app.button(listing, "Revoke")
    answer = await app.press(OPERATOR, listing, revoke)
    assert "revoked" in answer["text"]
    stale = await app.forge(OPERATOR, listing, revoke)
    assert "already revoked" in stale["text"] and stale["show_alert"]
    denied = await app.say(STRANGER, f"/start {code}", "withdrawn")
    assert "document" not in denied


async def test_expired_malformed_and_unknown_codes(app: Harness) -> None:
    card = await upload(app, OPERATOR, "document", b"expiring", file_name="e.txt")
    code, _, _ = await make_link(app, card, life="1h")
    app.clock.advance(3601)
    assert "expired" in (await app.say(STRANGER, f"/start {code}", "expired"))["text"]
    assert "not valid" in (await app.say(STRANGER, "/start abc", "not valid"))["text"]
    unknown = "A" * 43
    assert "does not exist" in (await app.say(STRANGER, f"/start {unknown}"))["text"]
    plain = await app.say(STRANGER, "/start", "private operations bot")
    assert "Your Telegram id" in plain["text"]


async def test_custom_lifetime_and_uses_by_typing(app: Harness) -> None:
    card = await upload(app, OPERATOR, "document", b"custom", file_name="c.txt")
    await app.press(OPERATOR, card, app.button(card, "Create link"))
    step = await app.becomes(card, lambda m: "How long" in m["text"])
    await app.press(OPERATOR, step, app.button(step, "Custom"))
    await app.tg.wait_for_message(OPERATOR, "Send the lifetime")
    assert "duration like" in (await app.say(OPERATOR, "soon", "duration"))["text"]
    uses = await app.say(OPERATOR, "90m", "How many uses")
    await app.press(OPERATOR, uses, app.button(uses, "Custom"))
    await app.tg.wait_for_message(OPERATOR, "number of uses")
    opts = await app.say(OPERATOR, "25", "Protect content")
    assert "1h" not in opts["text"] and "90m" in opts["text"] and "25" in opts["text"]
    await app.press(OPERATOR, opts, app.button(opts, "Create link"))
    done = await app.becomes(opts, lambda m: "t.me/" in m["text"])
    assert "25 use(s)" in done["text"]


async def test_auto_delete_removes_the_delivered_file(app: Harness) -> None:
    card = await upload(app, OPERATOR, "document", b"ephemeral", file_name="x.txt")
    code, _, _ = await make_link(app, card, auto_delete=10)
    since = app.tg.mark()
    await app.tg.send_text(app.user(STRANGER), f"/start {code}")
    got = await app.tg.wait_for_message(STRANGER, "Here is your file", since=since)
    job = await wait_delete_job(app)
    assert job.payload == {"chat_id": STRANGER, "message_id": got["message_id"]}
    assert got in app.tg.messages(STRANGER)  # not before its time
    app.clock.advance(601)
    await app.tg.wait_until(
        lambda: any(
            m["message_id"] == got["message_id"] for m in app.tg.deleted_messages(STRANGER)
        ),
        timeout=10,
        what="auto-delete",
    )


async def test_http_link_downloads_the_file(app: Harness) -> None:
    """A script's claim over HTTP: GET is the landing page, a JSON POST the download URL.
    (The browser's page and form: tests/browser and tests/integration/test_claim_page.py.)"""
    card = await upload(app, OPERATOR, "document", b"over http", file_name="h.txt")
    _, url, _ = await make_link(app, card)
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as page:
            assert page.status == 200 and "h.txt" in await page.text()
        async with http.post(url, headers={"Accept": "application/json"}) as claimed:
            assert claimed.status == 200
            download_url = (await claimed.json())["download_url"]
        async with http.get(download_url) as response:
            assert response.status == 200
            assert await response.read() == b"over http"


async def test_rename_send_to_me_and_delete(app: Harness) -> None:
    card = await upload(app, OPERATOR, "document", b"to rename", file_name="old.txt")
    await app.press(OPERATOR, card, app.button(card, "Rename"))
    await app.tg.wait_for_message(OPERATOR, "Send the new name")
    renamed = await app.say(OPERATOR, "new name", "Renamed")
    assert "new name.txt" in renamed["text"]
    since = app.tg.mark()
    await app.press(OPERATOR, renamed, app.button(renamed, "Send to me"))
    await app.tg.wait_until(
        lambda: any(m["message_id"] > since for m in files_sent(app, OPERATOR)) or True,
        what="file",
    )
    code, _, _ = await make_link(app, renamed)
    card2 = await upload(app, OPERATOR, "document", b"to rename", contains="Already")
    await app.press(OPERATOR, card2, app.button(card2, "Delete"))
    ask = await app.becomes(card2, lambda m: "Yes, delete" in app.buttons_text(m))
    answer = await app.press(OPERATOR, ask, app.button(ask, "Yes, delete"))
    assert "1 link(s) revoked" in answer["text"]
    assert "no longer available" in (await app.say(STRANGER, f"/start {code}"))["text"]
    assert OWNER


async def test_failed_claims_are_rate_limited_per_user(app: Harness) -> None:
    """Past 10 malformed or unknown codes in 15 minutes (the defaults) a user is told to wait
    and the code is not looked up; successful claims count nothing; other users are not
    affected; the refusal is in the access log; the window ends on time."""
    from sqlalchemy import select

    from storage.vault_models import VaultClaim, VaultLink

    card = await upload(app, OPERATOR, "document", b"limited", file_name="l.txt")
    code, _, _ = await make_link(app, card, uses="10")
    limit = app.app.vault_config.claim_failure_limit
    assert limit == 10

    # Successes count nothing: VIEWER claims thrice, then still has all 10 failures.
    for _ in range(3):
        await app.say(VIEWER, f"/start {code}", "Here is your file")
    for n in range(limit):
        bad = "B" * 43 if n % 2 else "bad-code"
        reply = await app.say(VIEWER, f"/start {bad}")
        assert "does not exist" in reply["text"] or "not valid" in reply["text"], reply["text"]
    # The 11th attempt is refused, whatever the code: even a working one is not looked up.
    refused = await app.say(VIEWER, f"/start {code}")
    assert "Too many attempts" in refused["text"] and "15 minutes" in refused["text"]
    assert "document" not in refused

    # Another user is not affected.
    got = await app.say(STRANGER, f"/start {code}")
    assert "Here is your file" in got.get("caption", got.get("text", ""))

    async with app.app.sessionmaker() as session:
        outcomes = (
            (
                await session.execute(
                    select(VaultClaim.outcome).where(VaultClaim.claimer_id == str(VIEWER))
                )
            )
            .scalars()
            .all()
        )
        link = (await session.execute(select(VaultLink))).scalars().one()
    assert outcomes.count("denied:rate_limited") == 1
    assert link.used_count == 2  # VIEWER's first claim and STRANGER's

    app.clock.advance(15 * 60)
    again = await app.say(VIEWER, f"/start {code}")
    assert "Here is your file" in again.get("caption", again.get("text", ""))


async def test_a_link_that_hides_the_name_on_its_web_page(app: Harness) -> None:
    card = await upload(app, OPERATOR, "document", b"secret plans", file_name="plans.txt")
    await app.press(OPERATOR, card, app.button(card, "Create link"))
    step = await app.becomes(card, lambda m: "How long" in m["text"])
    await app.press(OPERATOR, step, app.button(step, "24h"))
    step = await app.becomes(card, lambda m: "How many uses" in m["text"])
    await app.press(OPERATOR, step, app.button(step, "10"))
    step = await app.becomes(card, lambda m: "Name on the web page: shown" in m["text"])
    await app.press(OPERATOR, step, app.button(step, "Web page name: shown"))
    step = await app.becomes(card, lambda m: "Name on the web page: hidden" in m["text"])
    await app.press(OPERATOR, step, app.button(step, "Create link"))
    done = await app.becomes(card, lambda m: "t.me/" in m["text"])
    assert "name hidden on the web page" in done["text"]
    url = HTTP.search(done["text"]).group(1)
    async with aiohttp.ClientSession() as http, http.get(url) as page:
        html = await page.text()
    assert page.status == 200 and "plans" not in html and "chose not to show" in html
    # in chat the file arrives as it is, name and all
    code = CODE.search(done["text"]).group(1)
    await app.say(STRANGER, f"/start {code}")
    await app.tg.wait_until(lambda: files_sent(app, STRANGER), what="the file")
    assert files_sent(app, STRANGER)[-1]["document"]["file_name"] == "plans.txt"
