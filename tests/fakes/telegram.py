"""A fake Telegram Bot API server that speaks real HTTP.

End-to-end tests run the real bot (aiogram ``Bot`` with
``AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))``) against it; benchmarks use
it as a sink with Telegram's flood limits switched on. It answers like the Bot API
(``{"ok": true, "result": ...}`` / ``{"ok": false, "error_code": ..., "description": ...}``),
keeps chats, messages, files, callback queries, commands and the webhook in memory, records
every request, and lets a test act as a user::

    async with FakeTelegram() as fake:
        api = TelegramAPIServer.from_base(fake.base_url)
        bot = Bot(fake.token, session=AiohttpSession(api=api))  # ... start the bot's polling
        ann = fake.user(1001, "Ann")
        since = fake.mark()
        await fake.send_text(ann, "/jobs")
        menu = await fake.wait_for_message(1001, "Jobs", since=since)
        query_id = await fake.press(ann, menu, "job:7:retry")
        assert (await fake.wait_answer(query_id))["text"] == "Retrying"

Like Telegram: the bot can only message users made with :meth:`FakeTelegram.user` (else 400
"chat not found"); HTML / MarkdownV2 / Markdown are parsed with tdlib's rules (stored text is
plain, malformed markup is 400 "can't parse entities"); text is trimmed and url / bot_command /
mention / hashtag entities are found; an edit without ``reply_markup`` drops the keyboard.
Unlike Telegram: webhook delivery gives an update up after ``webhook_retry_delays`` and puts it
in ``dropped_updates``; http:// webhook URLs on any port are accepted. Not modelled: groups,
inline mode, payments, files by HTTP URL, editMessageMedia of albums and inline messages, and
the other methods (``register_method`` adds one). Photos are not re-encoded: every size carries
the original bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import json
import logging
import mimetypes
import re
import secrets
import shutil
import struct
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

Json = dict[str, Any]  # a JSON object: params, messages, updates


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


log = logging.getLogger(__name__)
MB = 1024 * 1024
TEXT_LIMIT, CAPTION_LIMIT = 4096, 1024
TEXT_TOO_LONG = "Bad Request: message is too long"
CAPTION_TOO_LONG = "Bad Request: message caption is too long"
DOWNLOAD_LIMIT = 20 * MB
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
TEXT_BUTTON = (
    "Bad Request: can't parse inline keyboard button: "
    "Text buttons are unallowed in the inline keyboard"
)
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
# form fields that carry JSON; aiogram sends them as JSON-encoded strings
JSON_FIELDS = _words(
    "reply_markup entities caption_entities media commands scope allowed_updates "
    "link_preview_options reply_parameters results options message_ids permissions "
    "reaction input_message_content prices menu_button"
)
INT_FIELDS = _words(
    "chat_id from_chat_id message_id offset limit timeout max_connections width height "
    "duration reply_to_message_id message_thread_id cache_time user_id"
)
BOOL_FIELDS = _words(
    "disable_notification protect_content show_alert drop_pending_updates has_spoiler "
    "supports_streaming disable_content_type_detection allow_sending_without_reply "
    "disable_web_page_preview show_caption_above_media allow_paid_broadcast"
)
CHAT_ACTIONS = _words(
    "typing upload_photo record_video upload_video record_voice upload_voice upload_document "
    "choose_sticker find_location record_video_note upload_video_note"
)
# update types Telegram only sends when asked for explicitly
OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
# kind -> (file_path folder, default extension, default mime type, file_id prefix)
MEDIA_KINDS: dict[str, tuple[str, str, str, str]] = {
    "photo": ("photos", ".jpg", "image/jpeg", "AgACAgIAAxkBAAI"),
    "document": ("documents", ".bin", "application/octet-stream", "BQACAgIAAxkBAAI"),
    "video": ("videos", ".mp4", "video/mp4", "BAACAgIAAxkBAAI"),
    "audio": ("music", ".mp3", "audio/mpeg", "CQACAgIAAxkBAAI"),
    "voice": ("voice", ".oga", "audio/ogg", "AwACAgIAAxkBAAI"),
    "animation": ("animations", ".mp4", "video/mp4", "CgACAgIAAxkBAAI"),
}
CONTENT_KEYS = ("text", "entities", "caption", "caption_entities", *MEDIA_KINDS)


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart request."""

    name: str
    content_type: str
    data: bytes


Files = dict[str, UploadedFile]  # multipart field name -> file


@dataclass
class Call:
    """One request to the fake. ``status`` is 0 while it is still being answered."""

    method: str
    params: Json
    files: Files
    at: float
    status: int = 0
    response: Json | None = None
    via: str = "http"  # or "webhook_reply": a method returned in a webhook response body

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def result(self) -> Any:
        return (self.response or {}).get("result")


@dataclass
class WebhookDelivery:
    """One attempt to POST an update to the webhook."""

    update_id: int
    attempt: int
    status: int | None
    body: str
    at: float
    error: str | None = None


@dataclass
class StoredFile:
    """A file Telegram knows about, with its bytes."""

    kind: str
    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str
    file_name: str | None = None
    mime_type: str | None = None
    meta: Json = field(default_factory=dict)  # width, height, duration, ...
    photo_sizes: list[Json] | None = None  # shared by all sizes of one photo
    disk_path: Path | None = None  # local mode: the bytes stay in this file (``data`` is empty)

    @property
    def size(self) -> int:
        return self.disk_path.stat().st_size if self.disk_path is not None else len(self.data)


class ApiError(Exception):
    """An error answer: raised by method handlers, turned into the Bot API error body."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after

    def body(self) -> Json:
        body: Json = {"ok": False, "error_code": self.code}
        body["description"] = self.description
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)


@dataclass
class _Answer:
    """A handler result that also carries a top-level ``description`` (setWebhook does)."""

    result: Any
    description: str


# ---------------------------------------------------------------- text formatting (tdlib rules)


def u16(text: str) -> int:
    """Length in UTF-16 code units, the unit of entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def _parse_error(message: str) -> ApiError:
    return ApiError(400, f"Bad Request: can't parse entities: {message}")


def _byte_offset(src: str, index: int) -> int:
    return len(src[:index].encode())


def _checked_link(url: str) -> str | None:
    if not url or any(c.isspace() for c in url):
        return None
    if "://" not in url:
        url = "http://" + url
    scheme, rest = url.split("://", 1)
    if scheme.lower() not in ("http", "https", "tg", "ton"):
        return None
    return url + "/" if scheme.lower().startswith("http") and "/" not in rest else url


_HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "tg-spoiler": "spoiler", "span": "spoiler", "a": "text_link", "code": "code", "pre": "pre",
    "blockquote": "blockquote", "tg-emoji": "custom_emoji",
}  # fmt: skip
_HTML_ENTITY = re.compile(r"&(?:#x([0-9a-fA-F]{1,7})|#([0-9]{1,7})|(lt|gt|amp|quot)(?![A-Za-z]));?")
_HTML_ATTR = re.compile(r"""([^\s=>/"']*)\s*(?:=\s*(?:"([^"]*)"?|'([^']*)'?|([A-Za-z0-9.\-]*)))?""")


def _html_unescape(text: str) -> str:
    def decode(m: re.Match[str]) -> str:
        if m.group(3):
            return {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}[m.group(3)]
        code = int(m.group(1), 16) if m.group(1) else int(m.group(2))
        return chr(code) if 0 < code < 0x10FFFF else m.group(0)

    return _HTML_ENTITY.sub(decode, text)


def parse_html(src: str) -> tuple[str, list[Json]]:
    """Telegram's HTML parse mode: returns plain text and entities, or raises its 400 errors."""
    out: list[str] = []
    entities: list[Json] = []
    stack: list[tuple[str, str, int, int]] = []  # tag, argument, utf16 offset, len(out)
    off, i, n = 0, 0, len(src)
    while i < n:
        c = src[i]
        if (
            c == "&"
            and (m := _HTML_ENTITY.match(src, i))
            and (char := _html_unescape(m[0])) != m[0]
        ):
            out.append(char)
            off, i = off + u16(char), m.end()
            continue
        if c != "<":
            out.append(c)
            off, i = off + u16(c), i + 1
            continue
        begin, i = i, i + 1
        if i < n and src[i] == "/":
            if not stack:
                raise _parse_error(f"Unexpected end tag at byte offset {_byte_offset(src, begin)}")
            j = i + 1
            while j < n and not src[j].isspace() and src[j] != ">":
                j += 1
            name = src[i + 1 : j].lower()
            while j < n and src[j].isspace():
                j += 1
            if j >= n or src[j] != ">":
                raise _parse_error(f"Unclosed end tag at byte offset {_byte_offset(src, begin)}")
            tag, arg, start, start_len = stack.pop()
            if name and name != tag:
                raise _parse_error(
                    f"Unmatched end tag at byte offset {_byte_offset(src, begin)}, "
                    f'expected "</{tag}>", found "</{name}>"'
                )
            i = j + 1
            if off > start:
                _close_html_entity(entities, tag, arg, start, off - start, "".join(out[start_len:]))
            continue
        j = i
        while j < n and not src[j].isspace() and src[j] != ">":
            j += 1
        if j >= n:
            raise _parse_error(f"Unclosed start tag at byte offset {_byte_offset(src, begin)}")
        tag, arg = src[i:j].lower(), ""
        if tag not in _HTML_TAGS:
            raise _parse_error(
                f'Unsupported start tag "{tag}" at byte offset {_byte_offset(src, begin)}'
            )
        while True:
            while j < n and src[j].isspace():
                j += 1
            if j >= n:
                raise _parse_error(
                    f'Unclosed start tag "{tag}" at byte offset {_byte_offset(src, begin)}'
                )
            if src[j] == ">":
                break
            m = _HTML_ATTR.match(src, j)
            if not m or not m[1]:
                at = _byte_offset(src, begin)
                raise _parse_error(f'Empty attribute name in the tag "{tag}" at byte offset {at}')
            quoted = m[2] if m[2] is not None else m[3]
            value = _html_unescape(quoted) if quoted is not None else (m[4] or "").lower()
            name, j = m[1], m.end()
            if (tag, name) == ("a", "href") or (tag, name) == ("tg-emoji", "emoji-id"):
                arg = value
            elif (tag, name) == ("code", "class") and value.startswith("language-"):
                arg = value[9:]
            elif (tag, name) == ("span", "class") and value.startswith("tg-"):
                arg = value[3:]
            elif (tag, name) == ("blockquote", "expandable"):
                arg = "1"
        if tag == "span" and arg != "spoiler":
            raise _parse_error(
                f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(src, begin)}'
            )
        stack.append((tag, arg, off, len(out)))
        i = j + 1
    if stack:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    for entity in entities:
        entity.pop("_language", None)
    return "".join(out), entities


def _close_html_entity(
    entities: list[Json], tag: str, arg: str, offset: int, length: int, inner: str
) -> None:
    kind = _HTML_TAGS[tag]
    entity: Json = {"type": kind, "offset": offset, "length": length}
    last = entities[-1] if entities else None
    same_span = last is not None and (last["offset"], last["length"]) == (offset, length)
    if kind == "text_link":
        url = _checked_link(arg or inner)
        if url is None:
            return
        if m := re.fullmatch(r"tg://user\?id=(\d+)", url):
            entity = {**entity, "type": "text_mention", "user": {"id": int(m[1]), "is_bot": False}}
        else:
            entity["url"] = url
    elif kind == "custom_emoji":
        if not arg.isdigit() or int(arg) == 0:
            raise ApiError(400, "Bad Request: Invalid custom emoji identifier specified")
        entity["custom_emoji_id"] = arg
    elif kind == "blockquote" and arg:
        entity["type"] = "expandable_blockquote"
    elif kind == "pre" and same_span and last["type"] == "code" and last.get("_language"):
        last.update(type="pre", language=last.pop("_language"))
        return
    elif kind == "code" and same_span and last["type"] == "pre" and arg:
        last["language"] = arg
        return
    elif kind == "code" and arg:
        entity["_language"] = arg
    entities.append(entity)


_MD2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MD2_NAMES = {
    "bold": "Bold", "italic": "Italic", "underline": "Underline", "strikethrough": "Strikethrough",
    "spoiler": "Spoiler", "text_link": "TextUrl", "code": "Code", "pre": "Pre",
}  # fmt: skip


def parse_markdown_v2(src: str) -> tuple[str, list[Json]]:
    """Telegram's MarkdownV2 (without custom emoji); raises its 400 errors."""
    out: list[str] = []
    entities: list[Json] = []
    stack: list[list[Any]] = []  # [type, argument, utf16 offset, byte offset, len(out)]
    quote_start: int | None = None
    off, i, n, line_start = 0, 0, len(src), True
    while i < n:
        c = src[i]
        if c == "\\" and i + 1 < n and 0 < ord(src[i + 1]) <= 126:
            out.append(src[i + 1])
            off, i, line_start = off + 1, i + 2, src[i + 1] == "\n"
            continue
        top = stack[-1][0] if stack else None
        in_code = top in ("code", "pre")
        if c == "\n" and not in_code and quote_start is not None and not src.startswith(">", i + 1):
            entities.append(
                {"type": "blockquote", "offset": quote_start, "length": off - quote_start}
            )
            quote_start = None
        if (c not in _MD2_RESERVED) if not in_code else (c != "`"):
            out.append(c)
            off, i, line_start = off + u16(c), i + 1, c == "\n"
            continue
        closes = (
            (top == "bold" and c == "*")
            or (top == "italic" and c == "_" and not src.startswith("__", i))
            or (top == "underline" and src.startswith("__", i))
            or (top == "strikethrough" and c == "~")
            or (top == "spoiler" and src.startswith("||", i))
            or (top == "code" and c == "`")
            or (top == "pre" and src.startswith("```", i))
            or (top == "text_link" and c == "]")
        )
        if closes:
            kind, arg, start, _, start_len = stack.pop()
            i += {"underline": 2, "spoiler": 2, "pre": 3}.get(kind, 1)
            entity: Json = {"type": kind, "offset": start, "length": off - start}
            if kind == "text_link":
                if i < n and src[i] == "(":
                    j, url = i + 1, []
                    while j < n and src[j] != ")":
                        step = 2 if src[j] == "\\" and j + 1 < n else 1
                        url.append(src[j + step - 1])
                        j += step
                    if j >= n:
                        raise _parse_error(
                            f"Can't find end of a URL at byte offset {_byte_offset(src, i + 1)}"
                        )
                    arg, i = "".join(url), j + 1
                else:
                    arg = "".join(out[start_len:])
                if (url := _checked_link(arg)) is None:
                    continue
                entity["url"] = url
            elif kind == "pre" and arg:
                entity["language"] = arg
            if off > start:
                entities.append(entity)
            continue
        begin, arg = _byte_offset(src, i), ""
        if c == "_":
            kind = "underline" if src.startswith("__", i) else "italic"
        elif c == "|" and src.startswith("||", i):
            kind = "spoiler"
        elif c == ">" and line_start:
            quote_start = off if quote_start is None else quote_start
            i += 1
            continue
        elif c in "*~[`":
            kind = {"*": "bold", "~": "strikethrough", "[": "text_link", "`": "code"}[c]
        else:
            raise _parse_error(
                f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
            )
        i += 2 if kind in ("underline", "spoiler") else 1
        if kind == "code" and src.startswith("``", i):
            kind, i = "pre", i + 2
            m = re.match(r"[^\s`]+", src[i:])
            if m and i + m.end() < n and src[i + m.end()] != "`":
                arg, i = m[0], i + m.end()
            if src.startswith("\r\n", i) or src.startswith("\n\r", i):
                i += 2
            elif src.startswith("\n", i) or src.startswith("\r", i):
                i += 1
        stack.append([kind, arg, off, begin, len(out)])
        line_start = False
    if quote_start is not None and off > quote_start:
        entities.append({"type": "blockquote", "offset": quote_start, "length": off - quote_start})
    if stack:
        kind, _, _, begin, _ = stack[-1]
        raise _parse_error(f"Can't find end of {_MD2_NAMES[kind]} entity at byte offset {begin}")
    return "".join(out), entities


def parse_markdown(src: str) -> tuple[str, list[Json]]:
    """Telegram's legacy Markdown: ``*bold*``, ``_italic_``, ```code```, ``[text](url)``."""
    out: list[str] = []
    entities: list[Json] = []
    off, i, n = 0, 0, len(src)
    while i < n:
        c = src[i]
        if c == "\\" and i + 1 < n and src[i + 1] in "_*`[":
            out.append(src[i + 1])
            off, i = off + 1, i + 2
            continue
        if c not in "_*`[":
            out.append(c)
            off, i = off + u16(c), i + 1
            continue
        begin = i
        pre = src.startswith("```", i)
        end_mark = "```" if pre else ("]" if c == "[" else c)
        i += 3 if pre else 1
        end = src.find(end_mark, i)
        if end < 0:
            raise _parse_error(
                f"Can't find end of the entity starting at byte offset {_byte_offset(src, begin)}"
            )
        inner = src[i:end]
        language = ""
        if pre and (m := re.match(r"([^\s`]+)\n", inner)):
            language, inner = m[1], inner[m.end() :]
        start = off
        out.append(inner)
        off += u16(inner)
        i = end + len(end_mark)
        entity: Json = {"offset": start, "length": off - start}
        if c == "[":
            url = inner
            if src.startswith("(", i) and (close := src.find(")", i)) >= 0:
                url, i = src[i + 1 : close], close + 1
            if (url := _checked_link(url)) is None:
                continue
            entity.update(type="text_link", url=url)
        else:
            entity["type"] = "pre" if pre else {"_": "italic", "*": "bold", "`": "code"}[c]
            if language:
                entity["language"] = language
        if off > start:
            entities.append(entity)
    return "".join(out), entities


_AUTO_ENTITY = re.compile(
    r"(?P<url>\bhttps?://[^\s<>\"]+)"
    r"|(?P<bot_command>(?<![\w/])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/]))"
    r"|(?P<mention>(?<![\w@])@[A-Za-z0-9_]{4,32}\b)"
    r"|(?P<hashtag>(?<![\w#])#\w*[^\W\d]\w*)"
)


_NO_AUTO = _words(
    "code pre text_link text_mention url bot_command mention hashtag email custom_emoji"
)


def auto_entities(text: str, entities: list[Json]) -> list[Json]:
    """Add the url / bot_command / mention / hashtag entities Telegram finds by itself."""
    found = list(entities)
    spans = [(e["offset"], e["offset"] + e["length"]) for e in entities if e["type"] in _NO_AUTO]
    for m in _AUTO_ENTITY.finditer(text):
        value = m[0].rstrip(".,;:!?)'\"") if m.lastgroup == "url" else m[0]
        start = u16(text[: m.start()])
        end = start + u16(value)
        if any(s < end and start < e for s, e in spans):
            continue
        found.append({"type": m.lastgroup, "offset": start, "length": end - start})
    return sorted(found, key=lambda e: (e["offset"], -e["length"]))


def _trim(text: str, entities: list[Json]) -> tuple[str, list[Json]]:
    """Telegram strips leading and trailing whitespace; entities move with the text."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    shift, size = u16(text[: len(text) - len(text.lstrip())]), u16(stripped)
    kept = []
    for e in entities:
        start, end = max(0, e["offset"] - shift), min(size, e["offset"] + e["length"] - shift)
        if end > start:
            kept.append({**e, "offset": start, "length": end - start})
    return stripped, kept


PARSERS: dict[str, Callable[[str], tuple[str, list[Json]]]] = {
    "html": parse_html,
    "markdownv2": parse_markdown_v2,
    "markdown": parse_markdown,
}


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF or JPEG from its header."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    i = 2 if data[:2] == b"\xff\xd8" else len(data)
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


# ---------------------------------------------------------------------------------- the server


class FakeTelegram:
    """In-memory Bot API server on 127.0.0.1. See the module docstring.

    Chats are private chats with users created by :meth:`user` (or :meth:`add_chat`); sending
    to any other chat id answers 400 "chat not found" like Telegram, unless
    ``strict_chats=False``. ``local_mode`` behaves like a local ``telegram-bot-api``: 2000 MB
    uploads, no download limit, and ``getFile`` returns an absolute path to a real file on disk.
    """

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        bot_id: int = 123456,
        bot_username: str = "opsdeck_test_bot",
        local_mode: bool = False,
        *,
        bot_first_name: str = "Opsdeck Test",
        strict_chats: bool = True,
    ) -> None:
        self.token, self.local_mode, self.strict_chats = token, local_mode, strict_chats
        self.bot_user = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        self.base_url = ""
        self.requests: list[Call] = []
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.dropped_updates: list[Json] = []  # filtered out by allowed_updates
        self.downloads: list[str] = []  # file paths fetched through GET /file/...
        self.files: dict[str, StoredFile] = {}  # by file_id
        self.accepted_sends: Counter[int] = Counter()  # chat id -> messages the bot sent
        self.accepted_log: list[tuple[float, int, str, int]] = []  # (time, chat, method, msg id)
        self.rate_limited_count = 0
        self.internal_errors: list[Exception] = []  # bugs in the fake itself (answered 500)
        self.webhook_retry_delays: tuple[float, ...] = (0.05, 0.1, 0.2)
        self.webhook_timeout = 10.0
        self.upload_limits = {"photo": 10 * MB, "default": 50 * MB}
        self._chats: dict[int, Json] = {}
        self._users: dict[int, Json] = {}
        self._blocked: set[int] = set()
        self._next_message_id: Counter[int] = Counter()
        self._bot_messages: dict[int, dict[int, Json]] = {}
        self._user_messages: dict[int, dict[int, Json]] = {}
        self._deleted: set[tuple[int, int]] = set()
        self._events: list[tuple[int, int, Json]] = []  # (call index, chat, snapshot)
        self._files_by_path: dict[str, StoredFile] = {}
        self._file_seq = 0
        self._pending: list[Json] = []  # updates not yet confirmed / delivered
        self._next_update_id = 100_000_001
        self._allowed_updates: list[str] | None = None
        self._poll_generation = 0
        self._webhook: Json | None = None
        self._webhook_error: tuple[int, str] | None = None
        self._webhook_tasks: list[asyncio.Task[None]] = []  # the last one is the live worker
        self._callbacks: dict[str, Json] = {}
        self._commands: dict[tuple[str, str], list[Json]] = {}
        self._faults: dict[str, deque[ApiError]] = {}
        self._delays: dict[str, deque[tuple[float, bool]]] = {}
        # seconds every Bot API call and file download takes before it is handled (a slow
        # network); getUpdates is the feed, not a call a handler waits on, so it is exempt
        self.latency = 0.0
        self._rate: dict[str, int] | None = None
        self._rate_all: deque[float] = deque()
        self._rate_chat: dict[Any, deque[float]] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self._call_index = -1
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self._files_dir: Path | None = None
        self._handlers: dict[str, tuple[str, Callable[..., Any]]] = {}
        methods = {
            "getMe": lambda p, f: dict(self.bot_user, can_join_groups=True,
                                        can_read_all_group_messages=False,
                                        supports_inline_queries=False),
            "getUpdates": self._get_updates, "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook, "getWebhookInfo": self._get_webhook_info,
            "sendMessage": self._send_message, "editMessageText": self._edit_text,
            "editMessageCaption": self._edit_caption, "editMessageMedia": self._edit_media,
            "editMessageReplyMarkup": self._edit_reply_markup,
            "answerCallbackQuery": self._answer_callback, "setMyCommands": self._set_commands,
            "getMyCommands": self._get_commands, "deleteMyCommands": self._delete_commands,
            "deleteMessage": self._delete_message, "sendMediaGroup": self._send_media_group,
            "copyMessage": self._copy_message, "getFile": self._get_file,
            "getChat": self._get_chat, "sendChatAction": self._send_chat_action,
            **{f"send{k.title()}": self._media_sender(k) for k in MEDIA_KINDS},
            # accepted and recorded so a bot that sets its profile at start-up does not crash
            **{m: lambda p, f: True for m in ("setMyDescription", "setMyShortDescription",
                                              "setMyName", "setChatMenuButton")},
        }  # fmt: skip
        for name, fn in methods.items():
            self.register_method(name, fn)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, port: int = 0) -> None:
        """Bind 127.0.0.1 on ``port`` (0: a free one) and set :attr:`base_url`. A fixed port
        lets a test bring Telegram up late, at an address the bot already knows."""
        app = web.Application(client_max_size=2100 * MB)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        if self.local_mode:
            self._files_dir = Path(tempfile.mkdtemp(prefix="fake-telegram-"))

    async def stop(self) -> None:
        """Wake long polls, stop webhook delivery and the server, remove local-mode files."""
        self._stopping = True
        self._notify()
        self._cancel_webhook_worker()
        await asyncio.gather(*self._webhook_tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._files_dir is not None:
            shutil.rmtree(self._files_dir, ignore_errors=True)

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def register_method(self, name: str, handler: Callable[[dict, dict], Any]) -> None:
        """Add or replace a method. ``handler(params, files)`` returns the result (or an
        awaitable of it) or raises :class:`ApiError`. Names are matched case-insensitively."""
        self._handlers[name.lower()] = (name, handler)

    # ------------------------------------------------------------------ HTTP

    async def _handle_api(self, request: web.Request) -> web.Response:
        at = time.time()
        try:
            params, files = await self._read_request(request)
        except ApiError as e:
            params, files = {}, {}
            call = Call(request.match_info["method"], params, files, at, e.code, e.body())
            self.requests.append(call)
            self._notify()
            return web.json_response(e.body(), status=e.code)
        status, body = await self._dispatch(
            request.match_info["token"], request.match_info["method"], params, files, at=at
        )
        return web.json_response(body, status=status)

    async def _read_request(self, request: web.Request) -> tuple[Json, Files]:
        params: Json = dict(request.query)
        files: Files = {}
        if request.content_type == "multipart/form-data":
            await self._read_multipart(await request.multipart(), params, files)
        elif request.content_type == "application/x-www-form-urlencoded":
            params.update((await request.post()).items())
        elif request.content_type == "application/json" and request.can_read_body:
            try:
                body = await request.json()
            except ValueError as e:
                raise ApiError(400, "Bad Request: can't parse JSON") from e
            if not isinstance(body, dict):
                raise ApiError(400, "Bad Request: JSON object expected")
            params.update(body)
        return params, files

    @staticmethod
    async def _read_multipart(reader: aiohttp.MultipartReader, params: Json, files: Files) -> None:
        async for part in reader:
            if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                continue
            if part.filename is None:
                params[part.name] = await part.text()
                continue
            chunks = []
            while chunk := await part.read_chunk(1 << 20):
                chunks.append(chunk)
            content_type = part.headers.get("Content-Type", "application/octet-stream")
            files[part.name] = UploadedFile(part.filename, content_type, b"".join(chunks))

    async def _dispatch(
        self,
        token: str,
        method: str,
        params: Json,
        files: Files,
        *,
        at: float | None = None,
        via: str = "http",
    ) -> tuple[int, Json]:
        key = method.lower()
        name, handler = self._handlers.get(key, (method, None))
        call = Call(name, params, files, time.time() if at is None else at, via=via)
        self.requests.append(call)
        index = len(self.requests) - 1
        delay_before = delay_after = 0.0
        try:
            if token != self.token:
                raise ApiError(401, "Unauthorized")
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            call.params = params = coerce_params(params)
            if self.latency and key != "getupdates":
                await asyncio.sleep(self.latency)
            if delay := _pop(self._delays, key):
                delay_before, delay_after = (0.0, delay[0]) if delay[1] else (delay[0], 0.0)
                await asyncio.sleep(delay_before)
            if fault := _pop(self._faults, key):
                raise fault
            rate_keys = self._check_rate(key, params)
            # the handler runs without awaiting, so the rate check and its bookkeeping are atomic
            self._call_index = index
            result = handler(params, files)
            if inspect.isawaitable(result):
                result = await result
            self._note_rate(rate_keys)
            status, body = 200, {"ok": True, "result": result}
            if isinstance(result, _Answer):
                body = {"ok": True, "result": result.result, "description": result.description}
        except ApiError as e:
            status, body = e.code, e.body()
        except Exception as e:  # a bug in the fake: answer 500 and keep it for the test to see
            log.exception("fake Telegram failed on %s", name)
            self.internal_errors.append(e)
            status, body = 500, ApiError(500, f"Internal Server Error: {e!r}").body()
        if delay_after:
            await asyncio.sleep(delay_after)
        call.status, call.response = status, body
        self._notify()
        return status, body

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").body(), status=401)
        path = request.match_info["path"]
        if self.latency:
            await asyncio.sleep(self.latency)
        stored = self._files_by_path.get(path)
        if stored is None and self._files_dir is not None:
            with contextlib.suppress(ValueError):
                stored = self._files_by_path.get(
                    str(Path(path).relative_to(self._files_dir / self.token))
                )
        if stored is None:
            return web.json_response(ApiError(404, "Not Found").body(), status=404)
        self.downloads.append(path)
        self._notify()
        if stored.disk_path is not None:
            return web.FileResponse(stored.disk_path)
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )

    # ------------------------------------------------------------------ fault injection, limits

    def fail_next(
        self,
        method: str,
        error_code: int = 429,
        retry_after: int = 1,
        description: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (``"*"`` = any method) with an error.

        429 carries ``parameters.retry_after``; 5xx answers "Internal Server Error"."""
        if error_code == 429:
            error = too_many_requests(retry_after)
            if description:
                error.description = description
        else:
            default = "Internal Server Error" if error_code >= 500 else {
                400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 409: "Conflict",
                403: "Forbidden: bot was blocked by the user", 413: "Request Entity Too Large",
            }.get(error_code, "Error")  # fmt: skip
            error = ApiError(error_code, description or default)
        self._faults.setdefault(method.lower(), deque()).extend([error] * times)

    def delay_next(
        self, method: str, seconds: float, times: int = 1, *, after: bool = False
    ) -> None:
        """Hold the next ``times`` calls of ``method`` for ``seconds`` before handling them, or
        with ``after=True`` handle them at once and hold only the answer (the client may time
        out although the message was sent, like on a real network)."""
        self._delays.setdefault(method.lower(), deque()).extend([(seconds, after)] * times)

    def enforce_rate_limit(
        self,
        per_second: int = 30,
        per_chat_per_second: int = 1,
        retry_after: int = 1,
        enabled: bool = True,
    ) -> None:
        """Answer 429 to sending methods (send*, copyMessage, editMessage*) above ``per_second``
        overall or ``per_chat_per_second`` per chat in any sliding 1-second window."""
        self._rate = (
            {"all": per_second, "chat": per_chat_per_second, "retry_after": retry_after}
            if enabled
            else None
        )
        self._rate_all.clear()
        self._rate_chat.clear()

    def _check_rate(self, key: str, params: Json) -> list[deque[float]]:
        is_send = key.startswith(("send", "editmessage", "copymessage", "forwardmessage"))
        if self._rate is None or not is_send or key == "sendchataction":
            return []
        now = time.monotonic()
        windows = [self._rate_all, self._rate_chat.setdefault(params.get("chat_id"), deque())]
        for window in windows:
            while window and window[0] <= now - 1.0:
                window.popleft()
        if len(windows[0]) >= self._rate["all"] or len(windows[1]) >= self._rate["chat"]:
            self.rate_limited_count += 1
            raise too_many_requests(self._rate["retry_after"])
        return windows

    @staticmethod
    def _note_rate(windows: list[deque[float]]) -> None:
        now = time.monotonic()
        for window in windows:
            window.append(now)

    # ------------------------------------------------------------------ waiting

    def _notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def _changed(self, timeout: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            self._waiters.discard(waiter)

    async def wait_until(
        self, condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition"
    ) -> Any:
        """Return ``condition()`` once it is truthy (re-checked on every change in the fake);
        raise AssertionError with the recent requests after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}\n{self.dump()}"
                )
            await self._changed(remaining)
        return value

    def dump(self, last: int = 30) -> str:
        """The last requests, one a line, for assertion messages."""
        lines = [f"recent requests ({len(self.requests)} in all):"]
        for i, call in enumerate(self.requests[-last:], start=max(0, len(self.requests) - last)):
            params = json.dumps(call.params, ensure_ascii=False, default=str)
            lines.append(f"  #{i} {call.method} [{call.status}] {params[:300]}")
        return "\n".join(lines)

    def mark(self) -> int:
        """A marker for ``since=``: only requests after this point are considered."""
        return len(self.requests)

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 5.0,
        count: int = 1,
        since: int = 0,
    ) -> Any:
        """Wait until ``count`` answered calls of ``method`` (from index ``since`` on) match
        ``predicate``; return the Call when ``count == 1``, else the list of Calls."""

        def found() -> list[Call] | None:
            wanted = method.lower()
            matches = [
                c for c in self.requests[since:]
                if c.status and c.method.lower() == wanted and (predicate is None or predicate(c))
            ]  # fmt: skip
            return matches[:count] if len(matches) >= count else None

        matches = await self.wait_until(found, timeout, f"{count} x {method}")
        return matches[0] if count == 1 else matches

    async def wait_for_message(
        self, chat_id: int, contains: str | None = None, timeout: float = 5.0, since: int = 0
    ) -> Json:
        """The first message the bot sent or edited in ``chat_id`` after ``since`` whose text
        or caption contains ``contains``; a snapshot of the message as it was then."""

        def found() -> Json | None:
            for index, chat, snapshot in self._events:
                body = snapshot.get("text", snapshot.get("caption", ""))
                if index >= since and chat == chat_id and (contains is None or contains in body):
                    return copy.deepcopy(snapshot)
            return None

        return await self.wait_until(
            found, timeout, f"a message in {chat_id} containing {contains!r}"
        )

    async def wait_answer(self, callback_id: str, timeout: float = 5.0) -> Json:
        """The answerCallbackQuery params the bot sent for ``callback_id``."""
        return await self.wait_until(
            lambda: self._callbacks[callback_id]["answer"],
            timeout,
            f"answer to callback {callback_id}",
        )

    # ------------------------------------------------------------------ inspection

    def calls(self, method: str) -> list[Call]:
        """Every recorded call of ``method`` (case-insensitive), rejected ones included."""
        return [c for c in self.requests if c.method.lower() == method.lower()]

    def messages(self, chat_id: int) -> list[Json]:
        """The bot's current (not deleted) messages in a chat, edits applied, oldest first."""
        stored = self._bot_messages.get(chat_id, {})
        return [
            copy.deepcopy(m)
            for mid, m in sorted(stored.items())
            if (chat_id, mid) not in self._deleted
        ]

    def deleted_messages(self, chat_id: int) -> list[Json]:
        """The bot's and the user's messages in a chat that were deleted."""
        both = {**self._user_messages.get(chat_id, {}), **self._bot_messages.get(chat_id, {})}
        return [
            copy.deepcopy(m) for mid, m in sorted(both.items()) if (chat_id, mid) in self._deleted
        ]

    @staticmethod
    def buttons(message: Json) -> list[tuple[str, str | None]]:
        """(text, callback_data or url ...) of every inline button, row by row."""
        rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
        return [
            (b["text"], next((v for k, v in b.items() if k != "text"), None))
            for row in rows
            for b in row
        ]

    def commands(self, scope: Json | None = None, language_code: str = "") -> list[Json]:
        """The bot's command list for a scope (default ``{"type": "default"}``) and language."""
        return list(self._commands.get((_scope_key(scope), language_code), []))

    def webhook_info(self) -> Json:
        """Same as the getWebhookInfo result."""
        return self._get_webhook_info({}, {})

    # ------------------------------------------------------------------ acting as users

    def user(
        self,
        user_id: int,
        first_name: str = "Ann",
        username: str | None = None,
        language_code: str | None = "en",
        last_name: str | None = None,
    ) -> Json:
        """A Telegram user who has started the bot (the bot may message them); a User dict."""
        user = {"id": user_id, "is_bot": False, "first_name": first_name}
        optional = {"last_name": last_name, "username": username, "language_code": language_code}
        user.update({k: v for k, v in optional.items() if v is not None})
        self._users[user_id] = user
        chat = {"id": user_id, "type": "private", "first_name": first_name}
        chat.update({k: v for k, v in optional.items() if v is not None and k != "language_code"})
        self.add_chat(chat)
        return user

    def add_chat(self, chat: Json) -> None:
        """Make a chat known (a Chat dict with at least ``id`` and ``type``)."""
        self._chats[chat["id"]] = dict(chat)

    def block(self, user: Json | int, blocked: bool = True) -> None:
        """The user blocks (or unblocks) the bot: sends answer 403 "bot was blocked by the user"."""
        (self._blocked.add if blocked else self._blocked.discard)(_uid(user))

    async def send_update(self, update: Json) -> Json:
        """Deliver a raw update (webhook if set, else the getUpdates queue); returns it with its
        ``update_id``. Update types not in ``allowed_updates`` are dropped, like Telegram does."""
        update = dict(update)
        if "update_id" not in update:
            update["update_id"] = self._next_update_id
        self._next_update_id = max(self._next_update_id, update["update_id"] + 1)
        if self._update_allowed(update):
            self._pending.append(update)
        else:
            self.dropped_updates.append(update)
        self._notify()
        await asyncio.sleep(0)
        return update

    async def send_text(self, user: Json, text: str, reply_to: Json | None = None) -> Json:
        """The user writes ``text`` in their private chat (``/commands`` get bot_command
        entities); returns the update."""
        text, entities = _trim(text, [])
        message = self._user_message(user, {"text": text}, reply_to)
        if found := auto_entities(text, entities):
            message["entities"] = found
        return await self.send_update({"message": message})

    async def send_file(
        self,
        user: Json,
        kind: str,
        data: bytes,
        file_name: str | None = None,
        mime_type: str | None = None,
        caption: str | None = None,
        media_group_id: str | None = None,
        width: int | None = None,
        height: int | None = None,
        duration: int | None = None,
    ) -> Json:
        """The user sends a document, photo, video, audio, voice or animation; the file is
        registered so getFile and downloads work. Returns the update."""
        meta = {"width": width, "height": height, "duration": duration}
        stored = self.register_file(kind, data, file_name, mime_type, **meta)
        content = self._media_content(stored)
        if caption:
            content["caption"] = caption
            if found := auto_entities(caption, []):
                content["caption_entities"] = found
        if media_group_id:
            content["media_group_id"] = media_group_id
        return await self.send_update({"message": self._user_message(user, content)})

    async def send_local_file(
        self,
        user: Json,
        path: Path,
        file_name: str | None = None,
        mime_type: str | None = None,
        caption: str | None = None,
    ) -> Json:
        """Local mode: the user sends the file at ``path`` as a document; the fake keeps only
        the path (``getFile`` answers it, as a local ``telegram-bot-api`` answers the path in
        its working directory), so a file of any size costs no memory. Returns the update."""
        if not self.local_mode:
            raise ValueError("send_local_file needs local_mode=True")
        stored = self.register_file("document", b"", file_name or path.name, mime_type)
        stored.disk_path = Path(path)
        content = self._media_content(stored)
        if caption:
            content["caption"] = caption
        return await self.send_update({"message": self._user_message(user, content)})

    async def send_sticker(self, user: Json, emoji: str = "\U0001f44d") -> Json:
        """The user sends a (static, regular) sticker; returns the update."""
        self._file_seq += 1
        sticker = {
            "file_id": "CAACAgIAAxkBAAI" + secrets.token_urlsafe(48)[:56],
            "file_unique_id": "AgAD" + secrets.token_urlsafe(9)[:12],
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "file_size": 18_000,
        }
        return await self.send_update({"message": self._user_message(user, {"sticker": sticker})})

    async def press(
        self, user: Json, message: Json, callback_data: str, *, forged: bool = False
    ) -> str:
        """The user presses the inline button with ``callback_data`` on a bot message (as it is
        now); returns the callback query id. A button that is not there fails the test, unless
        ``forged`` (a modified client can send any callback data for any bot message)."""
        chat_id, message_id = message["chat"]["id"], message["message_id"]
        current = self._bot_messages.get(chat_id, {}).get(message_id)
        if current is None or (chat_id, message_id) in self._deleted:
            raise AssertionError(f"message {message_id} in chat {chat_id} is gone\n{self.dump()}")
        data = [b.get("callback_data") for row in (current.get("reply_markup") or {}).get(
            "inline_keyboard", []) for b in row]  # fmt: skip
        if callback_data not in data and not forged:
            raise AssertionError(
                f"no button {callback_data!r} on the message, only {self.buttons(current)}"
            )
        query_id = str(secrets.randbelow(10**18) + 10**18)
        self._callbacks[query_id] = {"answer": None, "at": time.time()}
        query = {
            "id": query_id,
            "from": self._users.get(_uid(user), user if isinstance(user, dict) else {}),
            "message": copy.deepcopy(current),
            "chat_instance": str(abs(hash((self.bot_user["id"], chat_id)))),
            "data": callback_data,
        }
        await self.send_update({"callback_query": query})
        return query_id

    def register_file(
        self,
        kind: str,
        data: bytes,
        file_name: str | None = None,
        mime_type: str | None = None,
        **meta: Any,
    ) -> StoredFile:
        """Store bytes as a file Telegram knows (``kind`` as in sendX); returns it with its
        generated ``file_id``. For photos, the largest size is returned."""
        if kind not in MEDIA_KINDS:
            raise ValueError(f"unknown file kind {kind!r}")
        folder, ext, default_mime, prefix = MEDIA_KINDS[kind]
        meta = {k: v for k, v in meta.items() if v is not None}
        if kind != "photo":
            mime_type = mime_type or mimetypes.guess_type(file_name or "")[0] or default_mime
        if kind == "document":
            ext = Path(file_name or "").suffix or mimetypes.guess_extension(mime_type or "") or ext
            file_name = file_name or f"file{ext}"
        if kind == "voice":
            file_name = None
        if kind in ("video", "animation", "photo"):
            dims = image_size(data) if kind == "photo" else None
            meta.setdefault("width", dims[0] if dims else (800 if kind == "photo" else 0))
            meta.setdefault("height", dims[1] if dims else (600 if kind == "photo" else 0))
        if kind in ("video", "animation", "audio", "voice"):
            meta.setdefault("duration", 0)
        sizes = _photo_sizes(meta["width"], meta["height"]) if kind == "photo" else [None]
        shared: list[Json] = []
        stored = None
        for size in sizes:
            self._file_seq += 1
            stored = StoredFile(
                kind=kind,
                file_id=prefix + secrets.token_urlsafe(48)[:56],
                file_unique_id="AQAD" + secrets.token_urlsafe(9)[:12],
                data=data,
                file_path=f"{folder}/file_{self._file_seq}{ext}",
                file_name=file_name,
                mime_type=None if kind == "photo" else mime_type,
                meta=dict(meta, **dict(zip(("width", "height"), size or (), strict=False))),
            )
            if kind == "photo":
                stored.photo_sizes = shared
                shared.append({**self._file_object(stored)})
            self.files[stored.file_id] = stored
            self._files_by_path[stored.file_path] = stored
        assert stored is not None
        return stored

    # ------------------------------------------------------------------ messages

    def _chat(self, chat_id: Any) -> Json:
        if chat_id is None or chat_id == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        chat = self._chats.get(chat_id) if isinstance(chat_id, int) else None
        if chat is None and self.strict_chats:
            raise ApiError(400, "Bad Request: chat not found")
        if chat is None:
            if not isinstance(chat_id, int):
                raise ApiError(400, "Bad Request: chat not found")
            chat = {"id": chat_id, "type": "private", "first_name": f"User {chat_id}"}
            self.add_chat(chat)
        if chat_id in self._blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _new_id(self, chat_id: int) -> int:
        self._next_message_id[chat_id] += 1
        return self._next_message_id[chat_id]

    def _find(self, chat_id: int, message_id: Any) -> Json | None:
        if (chat_id, message_id) in self._deleted:
            return None
        return self._bot_messages.get(chat_id, {}).get(message_id) or self._user_messages.get(
            chat_id, {}
        ).get(message_id)

    def _user_message(self, user: Json, content: Json, reply_to: Json | None = None) -> Json:
        user_id = _uid(user)
        if user_id not in self._users:
            known = user if isinstance(user, dict) else {}
            self.user(user_id, **{k: known[k] for k in ("first_name", "username") if k in known})
        message = {"message_id": self._new_id(user_id), "from": self._users[user_id],
                   "chat": self._chats[user_id], "date": int(time.time()), **content}  # fmt: skip
        if reply_to is not None:
            message["reply_to_message"] = copy.deepcopy(reply_to)
        self._user_messages.setdefault(user_id, {})[message["message_id"]] = message
        return copy.deepcopy(message)

    def _bot_message(self, chat: Json, p: Json, content: Json, method: str) -> Json:
        """Create, store and account for a message the bot sends; returns its JSON."""
        chat_id = chat["id"]
        reply = p.get("reply_parameters") or {}
        reply_id = reply.get("message_id", p.get("reply_to_message_id"))
        target = self._find(chat_id, reply_id) if reply_id is not None else None
        if (
            reply_id is not None
            and target is None
            and not (
                reply.get("allow_sending_without_reply") or p.get("allow_sending_without_reply")
            )
        ):
            raise ApiError(400, "Bad Request: message to be replied not found")
        markup = _inline_markup(p)  # validated before the message id is taken
        message = {"message_id": self._new_id(chat_id), "from": self.bot_user, "chat": chat,
                   "date": int(time.time()), **content}  # fmt: skip
        if target is not None:
            message["reply_to_message"] = {
                k: v for k, v in target.items() if k != "reply_to_message"
            }
        if p.get("protect_content"):
            message["has_protected_content"] = True
        if markup is not None:
            message["reply_markup"] = markup
        self._bot_messages.setdefault(chat_id, {})[message["message_id"]] = message
        self._events.append((self._call_index, chat_id, copy.deepcopy(message)))
        self.accepted_sends[chat_id] += 1
        self.accepted_log.append((time.time(), chat_id, method, message["message_id"]))
        return copy.deepcopy(message)

    def _formatted(
        self,
        p: Json,
        name: str,
        entities_name: str,
        limit: int,
        too_long: str,
        required: bool,
    ) -> tuple[str | None, list[Json]]:
        raw = p.get(name)
        text, entities = ("", []) if raw is None else (str(raw), p.get(entities_name))
        if text and isinstance(entities, list):
            entities = [dict(e) for e in entities]
        elif text:
            mode = str(p.get("parse_mode") or "").lower()
            if mode and mode not in PARSERS:
                raise ApiError(400, "Bad Request: unsupported parse_mode")
            text, entities = PARSERS[mode](text) if mode else (text, [])
        text, entities = _trim(text, entities or [])
        if not text:
            if required:
                raise ApiError(400, "Bad Request: message text is empty")
            return None, []
        if len(text) > limit:
            raise ApiError(400, too_long)
        return text, auto_entities(text, entities)

    def _send_message(self, p: Json, files: Files) -> Json:
        chat = self._chat(p.get("chat_id"))
        text, entities = self._formatted(p, "text", "entities", TEXT_LIMIT, TEXT_TOO_LONG, True)
        content: Json = {"text": text}
        if entities:
            content["entities"] = entities
        return self._bot_message(chat, p, content, "sendMessage")

    def _caption(self, p: Json) -> Json:
        caption, entities = self._formatted(
            p, "caption", "caption_entities", CAPTION_LIMIT, CAPTION_TOO_LONG, False
        )
        content: Json = {}
        if caption:
            content["caption"] = caption
            if entities:
                content["caption_entities"] = entities
        return content

    def _media_sender(self, kind: str) -> Callable[[dict, dict], Json]:
        def send(p: Json, files: Files) -> Json:
            chat = self._chat(p.get("chat_id"))
            stored = self._input_file(kind, p.get(kind), files, p)
            content = {**self._media_content(stored), **self._caption(p)}
            if p.get("has_spoiler"):
                content["has_media_spoiler"] = True
            return self._bot_message(chat, p, content, f"send{kind.title()}")

        return send

    def _input_file(self, kind: str, value: Any, files: Files, p: Json) -> StoredFile:
        """A file given as a known file_id, ``attach://name`` or a file part named as the field."""
        upload = files.get(kind) if value is None else None
        if isinstance(value, str) and value.startswith("attach://"):
            upload = files.get(value[len("attach://") :])
            if upload is None:
                raise ApiError(400, f"Bad Request: there is no {kind} in the request")
        if upload is not None:
            limit = (
                2000 * MB
                if self.local_mode
                else self.upload_limits.get(kind, self.upload_limits["default"])
            )
            if len(upload.data) > limit:
                raise ApiError(413, "Request Entity Too Large")
            if not upload.data:
                raise ApiError(400, "Bad Request: file must be non-empty")
            mime = (
                None if upload.content_type == "application/octet-stream" else upload.content_type
            )
            meta = {k: p.get(k) for k in ("width", "height", "duration", "performer", "title")}
            return self.register_file(kind, upload.data, upload.name, mime, **meta)
        if value is None or value == "":
            raise ApiError(400, f"Bad Request: there is no {kind} in the request")
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            raise ApiError(400, "Bad Request: failed to get HTTP URL content")
        stored = self.files.get(value) if isinstance(value, str) else None
        if stored is None:
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        if stored.kind != kind and {stored.kind, kind} != {"document", "animation"}:
            raise ApiError(400, "Bad Request: type of file mismatch")
        return stored

    def _file_object(self, stored: StoredFile) -> Json:
        obj: Json = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id}
        keys = {
            "photo": ("width", "height"), "video": ("width", "height", "duration"),
            "animation": ("width", "height", "duration"), "voice": ("duration",),
            "audio": ("duration", "performer", "title"), "document": (),
        }[stored.kind]  # fmt: skip
        obj.update({k: stored.meta[k] for k in keys if stored.meta.get(k) is not None})
        if stored.file_name:
            obj["file_name"] = stored.file_name
        if stored.mime_type:
            obj["mime_type"] = stored.mime_type
        obj["file_size"] = stored.size
        return obj

    def _media_content(self, stored: StoredFile) -> Json:
        """The message fields for a file, shaped like Telegram's for its kind."""
        if stored.kind == "photo":
            return {"photo": copy.deepcopy(stored.photo_sizes)}
        obj = self._file_object(stored)
        content: Json = {stored.kind: obj}
        if stored.kind == "animation":  # Telegram also sends animations as a document
            content["document"] = {
                k: v for k, v in obj.items() if k not in ("width", "height", "duration")
            }
        return content

    def _send_media_group(self, p: Json, files: Files) -> list[Json]:
        chat = self._chat(p.get("chat_id"))
        media = p.get("media")
        if not isinstance(media, list) or not media:
            raise ApiError(400, "Bad Request: there are no messages to send")
        if len(media) > 10:
            raise ApiError(400, "Bad Request: Too much messages to send as an album")
        if len(media) < 2:  # unverified wording
            raise ApiError(400, "Bad Request: media group must contain 2-10 items")
        kinds = {m.get("type") for m in media}
        if not kinds <= {"photo", "video", "document", "audio"}:  # unverified wording
            raise ApiError(400, "Bad Request: wrong media type in the group")
        if not kinds <= {"photo", "video"} and len(kinds) > 1:  # unverified wording
            raise ApiError(
                400, "Bad Request: documents and audio can't be mixed with other media types"
            )
        stored = [self._input_file(m["type"], m.get("media"), files, m) for m in media]
        captions = [
            self._caption({**m, "parse_mode": m.get("parse_mode", p.get("parse_mode"))})
            for m in media
        ]
        group_id = str(secrets.randbelow(10**17) + 10**17)
        content = [
            {**self._media_content(s), **c, "media_group_id": group_id}
            for s, c in zip(stored, captions, strict=True)
        ]
        return [self._bot_message(chat, p, c, "sendMediaGroup") for c in content]

    def _copy_message(self, p: Json, files: Files) -> Json:
        chat = self._chat(p.get("chat_id"))
        source = self._find(p.get("from_chat_id"), p.get("message_id"))
        if source is None:
            raise ApiError(400, "Bad Request: message to copy not found")
        content = {k: copy.deepcopy(v) for k, v in source.items() if k in CONTENT_KEYS}
        if "caption" in p and "text" not in content:
            content.pop("caption", None)
            content.pop("caption_entities", None)
            content.update(self._caption(p))
        message = self._bot_message(chat, p, content, "copyMessage")
        return {"message_id": message["message_id"]}

    def _editable(self, p: Json) -> Json:
        if p.get("inline_message_id"):
            raise ApiError(400, "Bad Request: MESSAGE_ID_INVALID")  # inline messages: not modelled
        chat_id, message_id = self._chat(p.get("chat_id"))["id"], p.get("message_id")
        if (chat_id, message_id) not in self._deleted:
            if message := self._bot_messages.get(chat_id, {}).get(message_id):
                return message
            if message_id in self._user_messages.get(chat_id, {}):
                raise ApiError(400, "Bad Request: message can't be edited")
        raise ApiError(400, "Bad Request: message to edit not found")

    def _apply_edit(self, message: Json, changes: Json, p: Json) -> Json:
        markup = _inline_markup(p)
        if (
            all(message.get(k) == v for k, v in changes.items())
            and message.get("reply_markup") == markup
        ):
            raise ApiError(400, NOT_MODIFIED)
        for key, value in changes.items():
            if value:
                message[key] = value
            else:
                message.pop(key, None)
        if markup is None:  # an edit without reply_markup removes the inline keyboard
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        self._events.append((self._call_index, message["chat"]["id"], copy.deepcopy(message)))
        return copy.deepcopy(message)

    def _edit_text(self, p: Json, files: Files) -> Json:
        message = self._editable(p)
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        text, entities = self._formatted(p, "text", "entities", TEXT_LIMIT, TEXT_TOO_LONG, True)
        return self._apply_edit(message, {"text": text, "entities": entities or None}, p)

    def _edit_caption(self, p: Json, files: Files) -> Json:
        message = self._editable(p)
        if "text" in message:
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        caption = self._caption(p)
        changes = {
            "caption": caption.get("caption"),
            "caption_entities": caption.get("caption_entities"),
        }
        return self._apply_edit(message, changes, p)

    def _edit_media(self, p: Json, files: Files) -> Json:
        """A media message's file (new upload, ``attach://`` or file_id) and caption; the
        kind may change among photo, video, animation, document and audio, as in Telegram."""
        message = self._editable(p)
        if "text" in message:  # unverified wording
            raise ApiError(400, "Bad Request: there is no media in the message to edit")
        media = p.get("media")
        kind = media.get("type") if isinstance(media, dict) else None
        if kind not in ("photo", "video", "animation", "document", "audio"):
            raise ApiError(400, "Bad Request: can't parse InputMedia: media not found")
        stored = self._input_file(kind, media.get("media"), files, media)
        caption = self._caption({**media, "parse_mode": media.get("parse_mode")})
        changes: Json = dict.fromkeys(("photo", "video", "animation", "document", "audio"))
        changes |= {"caption": None, "caption_entities": None}
        changes |= {**self._media_content(stored), **caption}
        return self._apply_edit(message, changes, p)

    def _edit_reply_markup(self, p: Json, files: Files) -> Json:
        return self._apply_edit(self._editable(p), {}, p)

    def _delete_message(self, p: Json, files: Files) -> bool:
        chat_id = self._chat(p.get("chat_id"))["id"]
        if self._find(chat_id, p.get("message_id")) is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        self._deleted.add((chat_id, p["message_id"]))
        return True

    def _answer_callback(self, p: Json, files: Files) -> bool:
        query = self._callbacks.get(str(p.get("callback_query_id")))
        if query is None or query["answer"] is not None:
            raise ApiError(400, QUERY_INVALID)
        if len(str(p.get("text") or "")) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        query["answer"] = dict(p)
        return True

    def _get_chat(self, p: Json, files: Files) -> Json:
        chat = self._chat(p.get("chat_id"))
        gifts = dict.fromkeys(("unlimited_gifts", "limited_gifts", "unique_gifts",
                               "premium_subscription", "gifts_from_channels"), True)  # fmt: skip
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": gifts,
        }

    def _send_chat_action(self, p: Json, files: Files) -> bool:
        self._chat(p.get("chat_id"))
        if p.get("action") not in CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    # ------------------------------------------------------------------ files

    def _get_file(self, p: Json, files: Files) -> Json:
        stored = self.files.get(str(p.get("file_id") or ""))
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if stored.size > DOWNLOAD_LIMIT and not self.local_mode:
            raise ApiError(400, "Bad Request: file is too big")
        result = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                  "file_size": stored.size, "file_path": stored.file_path}  # fmt: skip
        if stored.disk_path is not None:
            result["file_path"] = str(stored.disk_path)
        elif self._files_dir is not None:  # local server: an absolute path the bot reads from disk
            path = self._files_dir / self.token / stored.file_path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(stored.data)
            result["file_path"] = str(path)
        return result

    # ------------------------------------------------------------------ commands

    def _set_commands(self, p: Json, files: Files) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", "")).strip()) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        key = (_scope_key(p.get("scope")), str(p.get("language_code") or ""))
        self._commands[key] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    def _get_commands(self, p: Json, files: Files) -> list[Json]:
        return self.commands(p.get("scope"), str(p.get("language_code") or ""))

    def _delete_commands(self, p: Json, files: Files) -> bool:
        self._commands.pop((_scope_key(p.get("scope")), str(p.get("language_code") or "")), None)
        return True

    # ------------------------------------------------------------------ updates: polling

    def _update_allowed(self, update: Json) -> bool:
        kind = next((k for k in update if k != "update_id"), None)
        if self._allowed_updates:
            return kind in self._allowed_updates
        return kind not in OPT_IN_UPDATES

    async def _get_updates(self, p: Json, files: Files) -> list[Json]:
        if self._webhook is not None:
            raise ApiError(409, WEBHOOK_CONFLICT)
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()  # an older long poll still waiting ends with 409
        offset = p.get("offset")
        if isinstance(offset, int) and offset < 0:
            del self._pending[: max(0, len(self._pending) + offset)]
        elif isinstance(offset, int):
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        if isinstance(p.get("allowed_updates"), list):
            self._allowed_updates = p["allowed_updates"]
            self.dropped_updates += [u for u in self._pending if not self._update_allowed(u)]
            self._pending = [u for u in self._pending if self._update_allowed(u)]
        limit = min(max(int(p.get("limit") or 100), 1), 100)
        deadline = time.monotonic() + max(int(p.get("timeout") or 0), 0)
        while (
            not self._pending
            and not self._stopping
            and (remaining := deadline - time.monotonic()) > 0
        ):
            await self._changed(remaining)
            if generation != self._poll_generation:
                raise ApiError(409, POLL_CONFLICT)
            if self._webhook is not None:
                raise ApiError(409, WEBHOOK_CONFLICT)
        return copy.deepcopy(self._pending[:limit])

    # ------------------------------------------------------------------ updates: webhook

    def _set_webhook(self, p: Json, files: Files) -> _Answer:
        url = str(p.get("url") or "")
        if not url:
            return self._delete_webhook(p, files)
        if not url.startswith(("http://", "https://")):  # http is allowed here for local tests
            raise ApiError(
                400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
            )
        secret = p.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        max_connections = int(p.get("max_connections") or 40)
        if not 1 <= max_connections <= 100:
            raise ApiError(
                400, "Bad Request: bad webhook: max_connections must be between 1 and 100"
            )
        if isinstance(p.get("allowed_updates"), list):
            self._allowed_updates = p["allowed_updates"]
        if p.get("drop_pending_updates"):
            self._pending.clear()
        config = {"url": url, "secret_token": secret, "max_connections": max_connections}
        if config == self._webhook:
            return _Answer(True, "Webhook is already set")
        self._webhook, self._webhook_error = config, None
        self._cancel_webhook_worker()
        self._webhook_tasks.append(asyncio.create_task(self._webhook_loop(config)))
        self._notify()
        return _Answer(True, "Webhook was set")

    def _delete_webhook(self, p: Json, files: Files) -> _Answer:
        if p.get("drop_pending_updates"):
            self._pending.clear()
        if self._webhook is None:
            return _Answer(True, "Webhook is already deleted")
        self._webhook = None
        self._cancel_webhook_worker()
        return _Answer(True, "Webhook was deleted")

    def _get_webhook_info(self, p: Json, files: Files) -> Json:
        info: Json = {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self._webhook is not None:
            info.update(
                url=self._webhook["url"],
                max_connections=self._webhook["max_connections"],
                ip_address="127.0.0.1",
            )
            if self._allowed_updates:
                info["allowed_updates"] = list(self._allowed_updates)
            if self._webhook_error is not None:
                info["last_error_date"], info["last_error_message"] = self._webhook_error
        return info

    def _cancel_webhook_worker(self) -> None:
        for task in self._webhook_tasks:
            task.cancel()
        self._webhook_tasks = [t for t in self._webhook_tasks if not t.done()]

    async def _webhook_loop(self, config: Json) -> None:
        """Deliver pending updates in order, at most ``max_connections`` at a time."""
        slots = asyncio.Semaphore(config["max_connections"])
        in_flight: set[int] = set()
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession() as session:
            try:
                while True:
                    update = next(
                        (u for u in self._pending if u["update_id"] not in in_flight), None
                    )
                    if update is None:
                        await self._changed(None)
                        continue
                    await slots.acquire()
                    if update not in self._pending:
                        slots.release()
                        continue
                    in_flight.add(update["update_id"])
                    task = asyncio.create_task(self._post_update(session, config, update))
                    tasks.add(task)
                    task.add_done_callback(lambda t, u=update["update_id"]: (
                        tasks.discard(t), in_flight.discard(u), slots.release()))  # fmt: skip
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _post_update(
        self, session: aiohttp.ClientSession, config: Json, update: Json
    ) -> None:
        """POST one update; retry on failure (``webhook_retry_delays``), then give it up."""
        headers = {"Content-Type": "application/json"}
        if config["secret_token"]:
            headers["X-Telegram-Bot-Api-Secret-Token"] = config["secret_token"]
        for attempt in range(1, len(self.webhook_retry_delays) + 2):
            status, body, error, reply = None, "", None, None
            try:
                timeout = aiohttp.ClientTimeout(total=self.webhook_timeout)
                async with session.post(
                    config["url"], data=json.dumps(update), headers=headers, timeout=timeout
                ) as resp:
                    status = resp.status
                    if 200 <= status < 300 and resp.content_type.startswith("multipart/"):
                        params: Json = {}
                        reply_files: Files = {}
                        await self._read_multipart(
                            aiohttp.MultipartReader(resp.headers, resp.content), params, reply_files
                        )
                        body, reply = json.dumps(params), (params, reply_files)
                    else:
                        body = await resp.text()
                        with contextlib.suppress(ValueError):
                            parsed = (
                                json.loads(body) if 200 <= status < 300 and body.strip() else None
                            )
                            if isinstance(parsed, dict) and parsed.get("method"):
                                reply = (parsed, {})
                    if not 200 <= status < 300:
                        error = f"Wrong response from the webhook: {status} {resp.reason}"
            except aiohttp.ClientConnectorError:
                error = "Connection refused"
            except TimeoutError:
                error = "Connection timed out"
            except aiohttp.ClientError as e:
                error = f"{type(e).__name__}: {e}"
            self.webhook_deliveries.append(
                WebhookDelivery(update["update_id"], attempt, status, body, time.time(), error)
            )
            if error is None:
                self._pending = [u for u in self._pending if u["update_id"] != update["update_id"]]
                self._notify()
                if reply is not None:
                    params, reply_files = reply
                    method = str(params.pop("method"))
                    await self._dispatch(
                        self.token, method, params, reply_files, via="webhook_reply"
                    )
                return
            self._webhook_error = (int(time.time()), error)
            self._notify()
            if attempt <= len(self.webhook_retry_delays):
                await asyncio.sleep(self.webhook_retry_delays[attempt - 1])
        self._pending = [u for u in self._pending if u["update_id"] != update["update_id"]]
        self.dropped_updates.append(update)
        self._notify()


# ---------------------------------------------------------------------------------- helpers


def coerce_params(params: Json) -> Json:
    """Form values are strings: decode JSON fields, numbers and booleans the way Telegram does."""
    out = {}
    for key, value in params.items():
        if isinstance(value, str):
            if key in JSON_FIELDS and value.lstrip()[:1] in ("{", "["):
                try:
                    value = json.loads(value)
                except ValueError as e:
                    what = "reply keyboard markup" if key == "reply_markup" else key
                    raise ApiError(400, f"Bad Request: can't parse {what} JSON object") from e
            elif key in INT_FIELDS and re.fullmatch(r"-?\d+", value.strip()):
                value = int(value)
            elif key in BOOL_FIELDS:
                value = value.strip().lower() in ("true", "1")
        out[key] = value
    return out


def _inline_markup(p: Json) -> Json | None:
    """The inline keyboard a message will carry (reply keyboards are not echoed back)."""
    markup = p.get("reply_markup")
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise ApiError(400, "Bad Request: object expected as reply markup")
    if "inline_keyboard" not in markup:
        return None
    rows = [row for row in markup["inline_keyboard"] if row]
    for button in (b for row in rows for b in row):
        actions = set(button) - {"text"}
        if not actions:
            raise ApiError(400, TEXT_BUTTON)
        if "callback_data" in button and not 1 <= len(str(button["callback_data"]).encode()) <= 64:
            raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        if "url" in button and _checked_link(str(button["url"])) is None:
            raise ApiError(400, "Bad Request: BUTTON_URL_INVALID")
    return {"inline_keyboard": copy.deepcopy(rows)} if rows else None


def _photo_sizes(width: int, height: int) -> list[tuple[int, int]]:
    """The sizes Telegram keeps of a photo: thumbnails up to the original (at most 2560)."""
    sizes: list[tuple[int, int]] = []
    for side in (90, 320, 800, 1280, 2560):
        scale = min(1.0, side / max(width, height, 1))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if size not in sizes:
            sizes.append(size)
        if scale == 1.0:
            break
    return sizes


def _scope_key(scope: Any) -> str:
    return json.dumps(scope or {"type": "default"}, sort_keys=True)


def _uid(user: Json | int) -> int:
    return user if isinstance(user, int) else int(user["id"])


def _pop(queues: dict[str, deque[Any]], key: str) -> Any:
    for k in (key, "*"):
        if queues.get(k):
            return queues[k].popleft()
    return None
