"""A claim link in a real browser: the landing page, Download, the saved file, a second
Download in the same browser (free), a second browser (one more use), the refusal pages.

Each page state is screenshotted on a phone-sized screen (390x844 CSS pixels); with
OPSDECK_SCREENSHOT_DIR=docs/screenshots they refresh the pictures the README shows.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from core.vault import VaultService
from storage.vault_models import VaultClaim, VaultLink
from tests.browser.conftest import PHONE, png_size
from tests.e2e.conftest import OPERATOR, Harness
from tests.e2e.test_vault_in_chat import make_link, upload

DATA = b"%PDF-1.7\n" + hashlib.sha256(b"quarterly").digest() * 2000  # 64 KB and a bit
NAME = "Quarterly report Q3 & notes.pdf"


async def link_state(app: Harness, url: str) -> VaultLink:
    from sqlalchemy import select

    from core.crypto import hash_code

    code = url.rsplit("/", 1)[1]
    async with app.app.sessionmaker() as session:
        return await session.scalar(select(VaultLink).where(VaultLink.code_hash == hash_code(code)))


async def access_log(app: Harness) -> list[VaultClaim]:
    from sqlalchemy import select

    async with app.app.sessionmaker() as session:
        return list((await session.scalars(select(VaultClaim).order_by(VaultClaim.id))).all())


def assert_phone_png(png: bytes) -> None:
    assert png_size(png)[0] == PHONE["width"] * PHONE["pixelRatio"], png_size(png)


async def test_landing_page_download_and_the_uses_it_spends(
    app: Harness, browsers, screenshots
) -> None:
    card = await upload(app, OPERATOR, "document", DATA, file_name=NAME)
    _, url, _ = await make_link(app, card, uses="10")

    first = await browsers("first")
    await first.open(url)
    assert await first.title() == "A shared file"  # what previewers show: no file name
    text = await first.text()
    assert NAME in text and "Document" in text and "Download" in text, text
    assert "Link expires" in text and "10 of 10" in text, text
    assert_phone_png(await first.screenshot(screenshots / "claim-landing.png"))
    assert (await link_state(app, url)).used_count == 0  # looking spends nothing

    await first.click("Download")
    [saved] = await first.wait_download(1)
    assert saved.read_bytes() == DATA
    assert (await link_state(app, url)).used_count == 1

    # the same browser again: the page says it is free, and it is
    await first.open(url)
    text = await first.text()
    assert "already downloaded this file in this browser" in text, text
    assert_phone_png(await first.screenshot(screenshots / "claim-landing-again.png"))
    await first.click("Download")
    saved_twice = await first.wait_download(2)
    assert all(p.read_bytes() == DATA for p in saved_twice)
    assert (await link_state(app, url)).used_count == 1

    # another browser profile (its own cookies) spends one
    second = await browsers("second", dark=True)
    await second.open(url)
    assert "9 of 10" in await second.text()
    assert_phone_png(await second.screenshot(screenshots / "claim-landing-dark.png"))
    await second.click("Download")
    [theirs] = await second.wait_download(1)
    assert theirs.read_bytes() == DATA
    assert (await link_state(app, url)).used_count == 2

    claims = [c for c in await access_log(app) if c.channel == "http"]
    assert [c.outcome for c in claims] == ["delivered", "redelivered", "delivered"]
    assert claims[0].claimer_id == claims[1].claimer_id != claims[2].claimer_id
    assert all(c.claimer_id.startswith("browser:") for c in claims)
    assert not any("127.0.0.1" in c.claimer_id for c in claims)


async def test_pages_of_links_that_do_not_work(app: Harness, browsers, screenshots) -> None:
    browser = await browsers("refused")
    base = app.app.settings.public_base_url

    # used up: someone else took the only use
    card = await upload(app, OPERATOR, "document", b"only one", file_name="one.txt")
    _, used_url, _ = await make_link(app, card, uses="1")
    taker = await browsers("taker")
    await taker.open(used_url)
    await taker.click("Download")
    await taker.wait_download(1)
    await browser.open(used_url)
    text = await browser.text()
    assert "No downloads left" in text and "one.txt" not in text, text
    assert await browser.title() == "Link not available"
    assert_phone_png(await browser.screenshot(screenshots / "claim-used-up.png"))

    # unknown
    await browser.open(f"{base}/claim/{'A' * 43}")
    assert "Link not found" in await browser.text()
    assert_phone_png(await browser.screenshot(screenshots / "claim-not-found.png"))

    # revoked
    card = await upload(app, OPERATOR, "document", b"take it back", file_name="back.txt")
    _, revoked_url, _ = await make_link(app, card)
    link = await link_state(app, revoked_url)
    actor = await app.actor(OPERATOR)
    await VaultService(app.app.uow, app.clock, app.app.blobs).revoke(actor, link.id)
    await browser.open(revoked_url)
    assert "Link withdrawn" in await browser.text()
    assert_phone_png(await browser.screenshot(screenshots / "claim-withdrawn.png"))

    # a link that hides the file's name on its page (a state, not a refusal)
    hidden = await VaultService(app.app.uow, app.clock, app.app.blobs).create_link(
        actor, link.item_id, lifetime_seconds=3600, max_uses=3, hide_name=True
    )
    await browser.open(f"{base}/claim/{hidden.code}")
    text = await browser.text()
    assert "back.txt" not in text and "chose not to show" in text, text
    assert_phone_png(await browser.screenshot(screenshots / "claim-landing-name-hidden.png"))

    # a page left open past its link's expiry: Download then says so
    card = await upload(app, OPERATOR, "document", b"soon gone", file_name="soon.txt")
    _, expiring_url, _ = await make_link(app, card, life="1h")
    await browser.open(expiring_url)
    app.clock.advance(timedelta(hours=2))
    await browser.click("Download", new_page=True)
    assert "Link expired" in await browser.text()
    assert_phone_png(await browser.screenshot(screenshots / "claim-expired.png"))
    assert (await link_state(app, expiring_url)).used_count == 0


async def test_a_form_from_another_browser_is_refused(app: Harness, browsers, screenshots) -> None:
    """A CSRF token only works with the cookie of the browser that loaded the page: a form
    replayed from another profile gets the out-of-date page, and spends nothing."""
    card = await upload(app, OPERATOR, "document", b"csrf", file_name="csrf.txt")
    _, url, _ = await make_link(app, card)
    owner = await browsers("owner")
    await owner.open(url)
    script = "return document.querySelector('input[name=csrf]').value"
    token = await owner.run(owner.driver.execute_script, script)
    other = await browsers("other")
    await other.open(url)  # its own cookie; now its form carries the first browser's token
    await other.run(
        other.driver.execute_script,
        "document.querySelector('input[name=csrf]').value = arguments[0]",
        token,
    )
    await other.click("Download", new_page=True)
    text = await other.text()
    assert "Download not started" in text, text
    assert_phone_png(await other.screenshot(screenshots / "claim-stale-form.png"))
    assert (await link_state(app, url)).used_count == 0
