"""The fake Telegram Bot API server, exercised through the real aiogram client."""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command
from aiogram.methods import SendMessage
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
    Update,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from tests.fakes.telegram import MB, FakeTelegram, parse_html, parse_markdown_v2

ANN = 1001


def png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of the given size."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    chunks = [
        (b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)),
        (b"IDAT", zlib.compress(row * height)),
        (b"IEND", b""),
    ]
    body = b"".join(
        struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
        for tag, data in chunks
    )
    return b"\x89PNG\r\n\x1a\n" + body


def keyboard(*buttons: InlineKeyboardButton) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[list(buttons)])


def make_bot(fake: FakeTelegram, **api: object) -> Bot:
    server = TelegramAPIServer.from_base(fake.base_url, **api)
    return Bot(fake.token, session=AiohttpSession(api=server))


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        server.user(ANN, "Ann", username="ann")
        yield server
        assert server.internal_errors == []


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    bot = make_bot(fake)
    yield bot
    await bot.session.close()


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


# ------------------------------------------------------------------------------- protocol


async def test_get_me_and_base_url(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (123456, "opsdeck_test_bot", True)
    assert fake.base_url.startswith("http://127.0.0.1:")
    assert fake.calls("getMe")[0].status == 200


async def test_wrong_token_unknown_method_and_raw_bodies(fake: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.base_url}/bot1:WRONG/getMe") as resp:
            assert resp.status == 401
            assert await resp.json() == {
                "ok": False,
                "error_code": 401,
                "description": "Unauthorized",
            }
        async with http.post(f"{fake.base_url}/bot{fake.token}/frobnicate") as resp:
            assert resp.status == 404
            assert (await resp.json())["description"] == "Not Found: method not found"
        # method names are case-insensitive; JSON bodies and query strings are read too
        url = f"{fake.base_url}/bot{fake.token}/SENDMESSAGE"
        async with http.post(url, json={"chat_id": ANN, "text": "json body"}) as resp:
            assert (await resp.json())["result"]["text"] == "json body"
        markup = '{"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}'
        form = {"chat_id": str(ANN), "text": "form body", "reply_markup": markup}
        async with http.post(f"{url}?disable_notification=true", data=form) as resp:
            assert resp.status == 200
    call = fake.calls("sendMessage")[-1]
    assert call.params["chat_id"] == ANN
    assert call.params["disable_notification"] is True
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "go"
    assert [c.status for c in fake.requests] == [401, 404, 200, 200]

    bad = make_bot(fake)
    bad._Bot__token = "1:WRONG"  # type: ignore[attr-defined]
    with pytest.raises(TelegramUnauthorizedError):
        await bad.get_me()
    await bad.session.close()


# ------------------------------------------------------------------------------- messages


async def test_send_edit_and_delete_messages(fake: FakeTelegram, bot: Bot) -> None:
    kb = keyboard(
        InlineKeyboardButton(text="Retry", callback_data="job:1:retry"),
        InlineKeyboardButton(text="Docs", url="https://example.com/docs"),
    )
    sent = await bot.send_message(ANN, "Job 1 failed", reply_markup=kb)
    second = await bot.send_message(ANN, "another")
    assert (sent.message_id, second.message_id) == (1, 2)
    assert sent.from_user is not None and sent.from_user.id == 123456
    assert sent.chat.type == "private" and sent.chat.first_name == "Ann"
    assert isinstance(fake.calls("sendMessage")[0].params["reply_markup"], dict)

    stored = fake.messages(ANN)[0]
    assert fake.buttons(stored) == [("Retry", "job:1:retry"), ("Docs", "https://example.com/docs")]

    edited = await bot.edit_message_text(
        "Job 1 retried", chat_id=ANN, message_id=sent.message_id, reply_markup=kb
    )
    assert isinstance(edited, Message) and edited.edit_date is not None
    with pytest.raises(TelegramBadRequest, match="message is not modified: specified new message"):
        await bot.edit_message_text(
            "Job 1 retried", chat_id=ANN, message_id=sent.message_id, reply_markup=kb
        )
    # an edit without reply_markup drops the keyboard, so it is a change
    await bot.edit_message_text("Job 1 retried", chat_id=ANN, message_id=sent.message_id)
    assert "reply_markup" not in fake.messages(ANN)[0]
    await bot.edit_message_reply_markup(chat_id=ANN, message_id=sent.message_id, reply_markup=kb)
    assert fake.buttons(fake.messages(ANN)[0])[0] == ("Retry", "job:1:retry")
    with pytest.raises(TelegramBadRequest, match="there is no caption in the message to edit"):
        await bot.edit_message_caption(chat_id=ANN, message_id=sent.message_id, caption="x")

    assert await bot.delete_message(ANN, sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(ANN, sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=ANN, message_id=sent.message_id)
    assert [m["message_id"] for m in fake.messages(ANN)] == [2]
    assert [m["text"] for m in fake.deleted_messages(ANN)] == ["Job 1 retried"]
    assert fake.accepted_sends[ANN] == 2


async def test_text_limits_chats_and_reply_errors(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(ANN, "x" * 4097)
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(ANN, "   ")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(999, "who?")
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(ANN, "re", reply_to_message_id=77)
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(
            ANN, "x", reply_markup=keyboard(InlineKeyboardButton(text="a", callback_data="x" * 65))
        )
    assert await bot.send_message(ANN, "x" * 4096)
    fake.block(ANN)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(ANN, "hello?")
    fake.block(ANN, blocked=False)
    assert await bot.send_chat_action(ANN, "typing")
    with pytest.raises(TelegramBadRequest, match="wrong parameter action"):
        await bot.send_chat_action(ANN, "dancing")
    chat = await bot.get_chat(ANN)
    assert (chat.id, chat.username) == (ANN, "ann")
    assert [c.status for c in fake.calls("sendMessage")] == [400, 400, 400, 400, 400, 200, 403]


async def test_parse_modes_like_telegram(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(ANN, "<b>Job 5</b> failed &lt;exit 1&gt;", parse_mode="HTML")
    assert sent.text == "Job 5 failed <exit 1>"
    assert [(e.type, e.offset, e.length) for e in sent.entities or []] == [("bold", 0, 5)]
    with pytest.raises(TelegramBadRequest, match='Unsupported start tag "foo" at byte offset 0'):
        await bot.send_message(ANN, "<foo>unescaped user text</foo>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match=r"Character '\.' is reserved"):
        await bot.send_message(ANN, "version 1.2", parse_mode="MarkdownV2")
    assert parse_markdown_v2("*bold* \\. [link](https://t.me/x)") == (
        "bold . link",
        [
            {"type": "bold", "offset": 0, "length": 4},
            {"type": "text_link", "offset": 7, "length": 4, "url": "https://t.me/x"},
        ],
    )
    text, entities = parse_html('<pre><code class="language-py">x = 1</code></pre> 😀<i>é</i>')
    assert text == "x = 1 😀é"
    assert entities == [
        {"type": "pre", "offset": 0, "length": 5, "language": "py"},
        {"type": "italic", "offset": 8, "length": 1},  # the emoji counts 2 UTF-16 units
    ]
    plain = await bot.send_message(ANN, "  see /jobs and https://example.com/a.  ")
    assert plain.text == "see /jobs and https://example.com/a."
    assert [(e.type, e.offset, e.length) for e in plain.entities or []] == [
        ("bot_command", 4, 5),
        ("url", 14, 21),
    ]


# ------------------------------------------------------------------------------- faults, limits


async def test_injected_errors_and_delays(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next("sendMessage", error_code=429, retry_after=3)
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(ANN, "flood")
    assert caught.value.retry_after == 3
    assert fake.calls("sendMessage")[0].response == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }
    assert await bot.send_message(ANN, "now it works")

    fake.fail_next("getme", error_code=500, times=2)
    for _ in range(2):
        with pytest.raises(TelegramServerError, match="Internal Server Error"):
            await bot.get_me()
    assert await bot.get_me()

    # the answer is late but the message was sent: the client cannot know
    fake.delay_next("sendMessage", 1.0, after=True)
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(ANN, "slow", request_timeout=0.2)  # type: ignore[arg-type]
    message = await fake.wait_for_message(ANN, "slow")
    assert message["text"] == "slow"


async def test_rate_limit_enforcement(fake: FakeTelegram, bot: Bot) -> None:
    fake.user(2, "Bob")
    fake.enforce_rate_limit(per_second=3, per_chat_per_second=1, retry_after=2)
    assert await bot.send_message(ANN, "one")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(ANN, "two")
    assert caught.value.retry_after == 2
    assert await bot.send_message(2, "other chat is fine")
    assert await bot.send_chat_action(ANN, "typing")  # not a sending method
    fake.user(3, "Cy")
    assert await bot.send_message(3, "third")
    fake.user(4, "Di")
    with pytest.raises(TelegramRetryAfter):  # 3 per second overall
        await bot.send_message(4, "fourth")
    assert fake.rate_limited_count == 2
    assert fake.accepted_sends == {ANN: 1, 2: 1, 3: 1}
    await asyncio.sleep(1.05)
    assert await bot.send_message(ANN, "window moved on")


# ------------------------------------------------------------------------------- files


async def test_upload_resend_by_file_id_and_download(fake: FakeTelegram, bot: Bot) -> None:
    data = b"%PDF-1.4 quarterly report"
    sent = await bot.send_document(
        ANN, BufferedInputFile(data, "report.pdf"), caption="Report", protect_content=True
    )
    doc = sent.document
    assert doc is not None
    assert (doc.file_name, doc.mime_type, doc.file_size) == ("report.pdf", "application/pdf", 25)
    assert sent.caption == "Report" and sent.has_protected_content
    call = fake.calls("sendDocument")[0]
    assert call.params["document"].startswith("attach://")
    assert [f.data for f in call.files.values()] == [data]

    again = await bot.send_document(ANN, doc.file_id)
    assert again.document is not None
    assert (again.document.file_id, again.document.file_unique_id) == (
        doc.file_id,
        doc.file_unique_id,
    )
    with pytest.raises(TelegramBadRequest, match="wrong file identifier/HTTP URL specified"):
        await bot.send_document(ANN, "BQACnot-a-file")
    with pytest.raises(TelegramBadRequest, match="type of file mismatch"):
        await bot.send_photo(ANN, doc.file_id)

    file = await bot.get_file(doc.file_id)
    assert file.file_path is not None and file.file_path.startswith("documents/")
    downloaded = await bot.download(doc.file_id)
    assert downloaded is not None and downloaded.read() == data
    assert fake.downloads == [file.file_path]


async def test_media_shapes_groups_and_upload_limits(fake: FakeTelegram, bot: Bot) -> None:
    photo = await bot.send_photo(ANN, BufferedInputFile(png(2000, 1000), "chart.png"))
    assert [(p.width, p.height) for p in photo.photo or []] == [
        (90, 45),
        (320, 160),
        (800, 400),
        (1280, 640),
        (2000, 1000),
    ]
    video = await bot.send_video(ANN, BufferedInputFile(b"\0" * 64, "clip.mp4"), duration=3)
    assert video.video is not None and (video.video.mime_type, video.video.duration) == (
        "video/mp4",
        3,
    )
    album = await bot.send_media_group(
        ANN,
        [
            InputMediaPhoto(media=BufferedInputFile(png(10, 10), "a.png"), caption="first"),
            InputMediaPhoto(media=photo.photo[-1].file_id),  # type: ignore[index]
        ],
    )
    assert len(album) == 2 and album[0].media_group_id == album[1].media_group_id
    assert album[0].caption == "first" and album[1].caption is None

    with pytest.raises(TelegramEntityTooLarge):
        await bot.send_photo(ANN, BufferedInputFile(b"\xff" * (10 * MB + 1), "huge.jpg"))
    assert fake.calls("sendPhoto")[-1].status == 413


async def test_injected_files_parse_as_aiogram_updates(fake: FakeTelegram, bot: Bot) -> None:
    user = fake.user(ANN, "Ann")
    kinds = {
        "document": {"file_name": "notes.txt"},
        "photo": {},
        "video": {"width": 640, "height": 360, "duration": 4},
        "audio": {"file_name": "song.mp3", "duration": 200},
        "voice": {"duration": 2},
        "animation": {"file_name": "fun.mp4", "width": 320, "height": 240, "duration": 1},
    }
    for kind, extra in kinds.items():
        raw = await fake.send_file(user, kind, b"bytes of " + kind.encode(), caption=kind, **extra)
        update = Update.model_validate(raw, context={"bot": bot})
        assert update.message is not None and update.message.caption == kind
        media = getattr(update.message, kind)
        file_id = media[-1].file_id if kind == "photo" else media.file_id
        downloaded = await bot.download(file_id)
        assert downloaded is not None and downloaded.read() == b"bytes of " + kind.encode()
    # the last one, an animation, also carries a document, like Telegram sends it
    animation, document = raw["message"]["animation"], raw["message"]["document"]
    assert document["file_id"] == animation["file_id"] and document["mime_type"] == "video/mp4"

    # the bot copies the user's animation elsewhere with a new caption
    fake.user(2, "Bob")
    source = raw["message"]["message_id"]
    copied = await bot.copy_message(2, ANN, source, caption="<i>fun</i>", parse_mode="HTML")
    message = fake.messages(2)[0]
    assert message["message_id"] == copied.message_id
    assert message["animation"]["file_id"] == animation["file_id"]
    assert (message["caption"], message["caption_entities"][0]["type"]) == ("fun", "italic")
    with pytest.raises(TelegramBadRequest, match="message to copy not found"):
        await bot.copy_message(2, ANN, 999)


async def test_get_file_limit_in_cloud_and_local_mode(fake: FakeTelegram, bot: Bot) -> None:
    big = b"\0" * (20 * MB + 1)
    raw = await fake.send_file(fake.user(ANN), "document", big, file_name="big.bin")
    with pytest.raises(TelegramBadRequest, match="file is too big"):
        await bot.get_file(raw["message"]["document"]["file_id"])

    async with FakeTelegram(local_mode=True) as local:
        local_bot = make_bot(local, is_local=True)
        raw = await local.send_file(local.user(ANN), "document", big, file_name="big.bin")
        file = await local_bot.get_file(raw["message"]["document"]["file_id"])
        assert file.file_path is not None and Path(file.file_path).is_absolute()
        downloaded = await local_bot.download(file)  # read from disk, like a local server
        assert downloaded is not None and len(downloaded.read()) == len(big)
        await local_bot.session.close()


async def test_local_mode_file_kept_on_disk(tmp_path: Path) -> None:
    source = tmp_path / "report.pdf"
    source.write_bytes(b"%PDF-1.4 on disk")
    async with FakeTelegram() as cloud:
        with pytest.raises(ValueError, match="local_mode"):
            await cloud.send_local_file(cloud.user(ANN), source)
    async with FakeTelegram(local_mode=True) as local:
        local_bot = make_bot(local, is_local=True)
        raw = await local.send_local_file(local.user(ANN), source, caption="Q3")
        document = raw["message"]["document"]
        assert (document["file_name"], document["file_size"]) == ("report.pdf", 16)
        assert raw["message"]["caption"] == "Q3"
        file = await local_bot.get_file(document["file_id"])
        assert file.file_path == str(source) and file.file_size == 16  # no copy is made
        stored_path = local.files[document["file_id"]].file_path
        async with aiohttp.ClientSession() as http:
            url = f"{local.base_url}/file/bot{local.token}/{stored_path}"
            async with http.get(url) as response:
                assert await response.read() == b"%PDF-1.4 on disk"
        await local_bot.session.close()


# ------------------------------------------------------------------------------- updates


async def test_long_polling_offsets_and_conflicts(fake: FakeTelegram, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    assert not poll.done()
    sent = await fake.send_text(fake.user(ANN), "/start@opsdeck_test_bot now")
    assert sent["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 23}]
    updates = await asyncio.wait_for(poll, 2)
    assert [u.update_id for u in updates] == [sent["update_id"]]
    assert len(await bot.get_updates()) == 1  # not confirmed yet
    assert await bot.get_updates(offset=sent["update_id"] + 1) == []
    assert fake.webhook_info()["pending_update_count"] == 0

    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    second = asyncio.create_task(bot.get_updates(timeout=1))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await first
    assert await second == []


async def test_dispatcher_polling_text_and_button_press(fake: FakeTelegram, bot: Bot) -> None:
    dp = Dispatcher()

    @dp.message(Command("start"))
    async def start(message: Message) -> None:
        kb = keyboard(InlineKeyboardButton(text="A", callback_data="pick:a"))
        await message.answer("Pick one", reply_markup=kb)

    @dp.callback_query()
    async def picked(query: CallbackQuery) -> None:
        await query.answer(f"Picked {query.data}")
        assert isinstance(query.message, Message)
        await query.message.edit_text("You picked A")

    polling = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, close_bot_session=False, polling_timeout=1)
    )
    try:
        user = fake.user(ANN, "Ann")
        mark = fake.mark()
        await fake.send_text(user, "/start")
        menu = await fake.wait_for_message(ANN, "Pick one", since=mark)
        assert fake.buttons(menu) == [("A", "pick:a")]
        with pytest.raises(AssertionError, match="no button 'pick:b'"):
            await fake.press(user, menu, "pick:b")
        query_id = await fake.press(user, menu, "pick:a")
        assert (await fake.wait_answer(query_id))["text"] == "Picked pick:a"
        edited = await fake.wait_for_message(ANN, "You picked", since=mark)
        assert edited["message_id"] == menu["message_id"] and "reply_markup" not in edited
        with pytest.raises(TelegramBadRequest, match="query is too old"):
            await bot.answer_callback_query(query_id, text="twice")
        await fake.wait_until(lambda: fake.webhook_info()["pending_update_count"] == 0)
    finally:
        await dp.stop_polling()
        await polling


async def test_webhook_delivery_secret_and_reply_method(fake: FakeTelegram, bot: Bot) -> None:
    seen: list[tuple[str | None, dict]] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json()))
        return web.json_response({"method": "sendMessage", "chat_id": ANN, "text": "via reply"})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner, base = await serve(app)
    try:
        assert await bot.set_webhook(f"{base}/hook", secret_token="s3cret_token-1")
        with pytest.raises(TelegramBadRequest, match="secret token contains unallowed characters"):
            await bot.set_webhook(f"{base}/hook", secret_token="no spaces!")
        update = await fake.send_text(fake.user(ANN), "hi")
        call = await fake.wait_for("sendMessage")
        assert call.via == "webhook_reply" and call.ok
        assert seen == [("s3cret_token-1", update)]
        assert [(d.update_id, d.status) for d in fake.webhook_deliveries] == [
            (update["update_id"], 200)
        ]
        assert fake.messages(ANN)[-1]["text"] == "via reply"
        info = await bot.get_webhook_info()
        assert (info.url, info.pending_update_count) == (f"{base}/hook", 0)
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates()
        assert await bot.delete_webhook()
        assert await bot.get_updates() == []
    finally:
        await runner.cleanup()


async def test_webhook_retries_and_last_error(fake: FakeTelegram, bot: Bot) -> None:
    fake.webhook_retry_delays = (0.01, 0.01, 0.01)
    statuses = iter([500, 502, 200])

    async def flaky(request: web.Request) -> web.Response:
        return web.json_response({}, status=next(statuses))

    app = web.Application()
    app.router.add_post("/hook", flaky)
    runner, base = await serve(app)
    try:
        await bot.set_webhook(f"{base}/hook")
        update = await fake.send_text(fake.user(ANN), "hi")
        await fake.wait_until(lambda: len(fake.webhook_deliveries) == 3)
        assert [d.status for d in fake.webhook_deliveries] == [500, 502, 200]
        assert {d.update_id for d in fake.webhook_deliveries} == {update["update_id"]}
        info = await bot.get_webhook_info()
        assert info.pending_update_count == 0
        assert info.last_error_message == "Wrong response from the webhook: 502 Bad Gateway"
    finally:
        await runner.cleanup()


async def test_aiogram_webhook_handler_answering_with_a_method(
    fake: FakeTelegram, bot: Bot
) -> None:
    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> SendMessage:
        return SendMessage(chat_id=message.chat.id, text=f"echo: {message.text}")

    app = web.Application()
    handler = SimpleRequestHandler(dp, bot, secret_token="tok", handle_in_background=False)
    handler.register(app, path="/tg")
    runner, base = await serve(app)
    try:
        await bot.set_webhook(f"{base}/tg", secret_token="tok")
        await fake.send_text(fake.user(ANN), "ping")
        message = await fake.wait_for_message(ANN, "echo: ping")
        assert message["from"]["id"] == 123456
        assert fake.calls("sendMessage")[0].via == "webhook_reply"  # multipart reply body
    finally:
        await runner.cleanup()


async def test_commands_per_scope_and_wait_for_timeout(fake: FakeTelegram, bot: Bot) -> None:
    commands = [BotCommand(command="jobs", description="List jobs")]
    scope = BotCommandScopeChat(chat_id=ANN)
    assert await bot.set_my_commands(commands, scope=scope, language_code="en")
    assert await bot.get_my_commands() == []
    got = await bot.get_my_commands(scope=scope, language_code="en")
    assert [(c.command, c.description) for c in got] == [("jobs", "List jobs")]
    assert fake.commands({"type": "chat", "chat_id": ANN}, "en")[0]["command"] == "jobs"
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad-Name", description="x")])
    assert await bot.delete_my_commands(scope=scope, language_code="en")
    assert fake.commands({"type": "chat", "chat_id": ANN}, "en") == []

    with pytest.raises(AssertionError, match="sendMessage") as caught:
        await fake.wait_for("sendMessage", timeout=0.1)
    assert "setMyCommands" in str(caught.value)  # the dump of recent requests


async def test_edit_media_replaces_the_file_and_caption(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_photo(ANN, BufferedInputFile(png(20, 10), "a.png"), caption="<b>a</b>")
    edited = await bot.edit_message_media(
        InputMediaPhoto(media=BufferedInputFile(png(40, 30), "b.png"), caption="b"),
        chat_id=ANN,
        message_id=sent.message_id,
    )
    assert isinstance(edited, Message) and edited.caption == "b"
    assert edited.photo is not None and edited.photo[-1].width == 40
    stored = fake.messages(ANN)[0]
    assert fake.files[stored["photo"][-1]["file_id"]].data == png(40, 30)
    assert "caption_entities" not in stored and "edit_date" in stored
    text = await bot.send_message(ANN, "plain")
    with pytest.raises(TelegramBadRequest, match="no media in the message"):
        await bot.edit_message_media(
            InputMediaPhoto(media=BufferedInputFile(png(5, 5), "c.png")),
            chat_id=ANN,
            message_id=text.message_id,
        )
