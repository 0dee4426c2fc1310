"""The picture step of /post: a photo (or an image sent as a file) goes into the vault through
the vault's own ingest and becomes the post's picture; anything else gets a clear answer and
the flow stays at the step. Through the fake Telegram and the fake Reddit over HTTP."""

from __future__ import annotations

from sqlalchemy import select

from core.vault import VaultConfig, VaultService
from storage.vault_models import VaultItem
from tests.e2e.conftest import OPERATOR, Harness
from tests.e2e.test_reddit_posts import (
    SLOW,
    add_account,
    posts_in_db,
    queue_it,
    rapp,
    reddit,
    setup_reddit,
    the_post,
    wait_post,
)
from tests.e2e.test_vault_in_chat import PNG
from tests.fakes.reddit import FakeReddit

__all__ = ["rapp", "reddit"]  # fixtures

PDF = b"%PDF-1.4 not a picture at all"
MP4 = b"\x00\x00\x00\x18ftypmp42video"


async def to_picture_step(
    app: Harness, sr: str = "opsdeck_pics", title: str = "Team photo", kind: str = "Image post"
) -> dict:
    """/post → account → subreddit → kind → title; returns the question for the body."""
    start = await app.say(OPERATOR, "/post", "Which account")
    since = app.tg.mark()
    await app.press(OPERATOR, start, app.button(start, "u/team_main"))
    await app.tg.wait_for_message(OPERATOR, "Which subreddit", since=since, timeout=SLOW)
    kinds = await app.say(OPERATOR, f"r/{sr}", "What kind of post", timeout=SLOW)
    since = app.tg.mark()
    await app.press(OPERATOR, kinds, app.button(kinds, kind))
    await app.tg.wait_for_message(OPERATOR, "The title", since=since, timeout=SLOW)
    return await app.say(OPERATOR, title, "/cancel stops", timeout=SLOW)


async def send(app: Harness, kind: str, data: bytes, contains: str, **kw) -> dict:
    """Send a file as the operator; the bot's next message containing `contains`."""
    since = app.tg.mark()
    await app.tg.send_file(app.user(OPERATOR), kind, data, **kw)
    return await app.tg.wait_for_message(OPERATOR, contains, since=since, timeout=SLOW)


async def vault_items(app: Harness) -> list[VaultItem]:
    async with app.app.sessionmaker() as session:
        return list((await session.scalars(select(VaultItem).order_by(VaultItem.id))).all())


def last_id(app: Harness) -> int:
    return max((m["message_id"] for m in app.tg.messages(OPERATOR)), default=0)


def texts_after(app: Harness, message_id: int) -> list[dict]:
    """The bot's messages to the operator after message `message_id`."""
    return [m for m in app.tg.messages(OPERATOR) if m["message_id"] > message_id]


def texts_since(app: Harness, since_index: int) -> list[str]:
    return [m.get("text", "") for m in app.tg.messages(OPERATOR)[since_index:]]


async def test_a_photo_at_the_picture_step_is_kept_and_published(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_pics")
    await add_account(rapp, "team_main")
    ask = await to_picture_step(rapp)
    assert "send it here as a photo" in ask["text"] and "vault number" in ask["text"]
    before = len(rapp.tg.messages(OPERATOR))
    flags = await send(rapp, "photo", PNG, "NSFW or spoiler")
    said = texts_since(rapp, before)
    (item,) = await vault_items(rapp)
    assert any(f"Kept in the vault as file #{item.id}" in t for t in said), said
    # the vault's own handler did not also take it: no item card with its buttons
    assert not any("sha256" in t for t in said), said
    assert item.mime == "image/png" and item.kind == "photo" and item.blob_key is not None
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, flags, rapp.button(flags, "Continue"))
    ask_when = await rapp.tg.wait_for_message(OPERATOR, "When?", since=since, timeout=SLOW)
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, ask_when, rapp.button(ask_when, "now"))
    card = await rapp.tg.wait_for_message(OPERATOR, "Preview", since=since, timeout=SLOW)
    assert f"vault item #{item.id}" in card["text"]
    await queue_it(rapp, OPERATOR, card)
    post = await wait_post(rapp, lambda p: p.status == "published")
    assert post.vault_item_id == item.id
    assert [(p.kind, p.title) for p in reddit.posts] == [("image", "Team photo")]
    # the very bytes sent in chat reached Reddit's upload
    (upload,) = reddit.uploads.values()
    assert upload.data == PNG and upload.content_type == "image/png"


async def test_an_image_file_with_known_bytes_uses_the_existing_item(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_pics")
    await add_account(rapp, "team_main")
    # kept earlier, outside the flow: the vault's ordinary card
    card = await send(rapp, "photo", PNG, "file #")
    assert "sha256" in card["text"]
    (kept,) = await vault_items(rapp)
    await to_picture_step(rapp)
    since = rapp.tg.mark()
    await rapp.tg.send_file(
        rapp.user(OPERATOR), "document", PNG, file_name="team.png", mime_type="image/png"
    )
    note = await rapp.tg.wait_for_message(OPERATOR, "vault as file #", since=since, timeout=SLOW)
    assert f"Already in the vault as file #{kept.id}" in note["text"]
    await rapp.tg.wait_for_message(OPERATOR, "NSFW or spoiler", since=since, timeout=SLOW)
    assert [i.id for i in await vault_items(rapp)] == [kept.id]  # no second copy


async def test_what_is_not_a_picture_is_refused_and_the_step_stays(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_pics")
    await add_account(rapp, "team_main")
    await to_picture_step(rapp)

    video = await send(rapp, "video", MP4, "not a picture")
    assert "That is a video" in video["text"] and "#12" in video["text"]
    assert video["text"].endswith("/cancel stops.")
    gif = await send(rapp, "animation", MP4, "not a picture")
    assert "That is an animation" in gif["text"]
    pdf = await send(
        rapp, "document", PDF, "not a picture", file_name="r.pdf", mime_type="application/pdf"
    )
    assert "application/pdf" in pdf["text"]
    since = rapp.tg.mark()
    await rapp.tg.send_sticker(rapp.user(OPERATOR))
    sticker = await rapp.tg.wait_for_message(OPERATOR, "not a picture", since=since)
    assert "That is a sticker" in sticker["text"]
    typed = await rapp.say(OPERATOR, "the nice one", "not a vault number")
    assert "Send a photo" in typed["text"]
    missing = await rapp.say(OPERATOR, "#999", "does not exist")
    assert "#999" in missing["text"]
    # bigger than Reddit takes: refused from what Telegram says, before a byte is fetched
    fetched = len(rapp.tg.calls("getFile"))
    big = await send(
        rapp,
        "document",
        PNG + b"\0" * (21 * 1024 * 1024),
        "Reddit takes pictures up to 20.0 MB",
        file_name="huge.png",
        mime_type="image/png",
    )
    assert "21.0 MB" in big["text"] and len(rapp.tg.calls("getFile")) == fetched
    # a "picture" whose bytes are a PDF: the vault keeps it (that is what the vault does),
    # the post does not take it
    fake = await send(
        rapp, "document", PDF, "not an image", file_name="fake.png", mime_type="image/png"
    )
    (pdf_item,) = await vault_items(rapp)
    assert pdf_item.mime == "application/pdf"
    assert f"kept in the vault as file #{pdf_item.id}" in fake["text"]
    assert await posts_in_db(rapp) == []  # still composing: nothing saved yet

    # an album: its parts arrive one by one and at once; none is taken, none is kept
    since = last_id(rapp)
    for data in (PNG + b"1", PNG + b"2"):
        await rapp.tg.send_file(rapp.user(OPERATOR), "photo", data, media_group_id="alb1")
    await rapp.tg.wait_until(
        lambda: sum("not an album" in m.get("text", "") for m in texts_after(rapp, since)) == 2,
        SLOW,
        "both parts of the album refused",
    )
    assert len(await vault_items(rapp)) == 1

    # still at the picture step: a real photo now goes through
    flags = await send(rapp, "photo", PNG, "NSFW or spoiler")
    assert "Continue" in rapp.buttons_text(flags)
    assert [i.mime for i in await vault_items(rapp)] == ["application/pdf", "image/png"]


async def test_the_vault_size_cap_applies_at_the_picture_step(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_pics")
    await add_account(rapp, "team_main")
    rapp.app.services.vault = VaultService(
        rapp.app.uow, rapp.app.clock, rapp.app.blobs, VaultConfig(max_file_bytes=50)
    )
    await to_picture_step(rapp)
    refused = await send(rapp, "photo", PNG, "accepts files up to")
    assert "Send a photo" in refused["text"] and "/cancel" in refused["text"]
    assert await vault_items(rapp) == []
    rapp.app.services.vault = VaultService(
        rapp.app.uow, rapp.app.clock, rapp.app.blobs, VaultConfig()
    )
    await send(rapp, "photo", PNG, "NSFW or spoiler")


async def test_a_file_at_the_text_or_link_step_is_refused_not_kept(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_test")
    await add_account(rapp, "team_main")
    await to_picture_step(rapp, "opsdeck_test", "Words only", kind="Text post")
    refused = await send(rapp, "photo", PNG, "This step takes")
    assert "the text of the post as a message, not a photo" in refused["text"]
    assert await vault_items(rapp) == []
    await rapp.say(OPERATOR, "Plain words.", "NSFW or spoiler", timeout=SLOW)
    # outside the flow the vault takes files as before
    await rapp.say(OPERATOR, "/cancel", "Stopped")
    card = await send(rapp, "photo", PNG, "file #")
    assert "sha256" in card["text"]


async def test_edit_picture_at_the_preview_with_a_new_photo(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_pics")
    await add_account(rapp, "team_main")
    await to_picture_step(rapp)
    flags = await send(rapp, "photo", PNG, "NSFW or spoiler")
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, flags, rapp.button(flags, "Continue"))
    ask_when = await rapp.tg.wait_for_message(OPERATOR, "When?", since=since, timeout=SLOW)
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, ask_when, rapp.button(ask_when, "now"))
    card = await rapp.tg.wait_for_message(OPERATOR, "Preview", since=since, timeout=SLOW)
    first = (await the_post(rapp)).vault_item_id
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, card, rapp.button(card, "Edit"))
    menu = await rapp.tg.wait_for_message(OPERATOR, "what should change", since=since)
    since = rapp.tg.mark()
    await rapp.press(OPERATOR, menu, rapp.button(menu, "Picture"))
    await rapp.tg.wait_for_message(OPERATOR, "send it here as a photo", since=since)
    other = PNG + b"trailer"  # other bytes, still sniffed as a PNG
    card = await send(rapp, "photo", other, "Preview")
    post = await the_post(rapp)
    assert post.vault_item_id != first and f"vault item #{post.vault_item_id}" in card["text"]
    await queue_it(rapp, OPERATOR, card)
    await wait_post(rapp, lambda p: p.status == "published")
    (upload,) = reddit.uploads.values()
    assert upload.data == other
