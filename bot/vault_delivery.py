"""The one way a vault file leaves the bot in Telegram: `deliver`, and its auto-delete job.

Every send of a claimed (or "send to me") file goes through `deliver`. Given an `Outbox`, a
file Telegram already holds (a cached `file_id`) is queued there: durable, paced under the
flood limits, 429s waited out, resent after a restart. A file with no `file_id` yet is
uploaded directly from the blob store (outbox rows hold no bytes) and its new `file_id`
cached, so every later delivery of it goes through the outbox.

Auto-delete: a queued delivery carries `hook=DELIVERED_HOOK`; once it is sent the hook
queues the `vault.delete_message` job (the message id exists only then).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InputFile, Message
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.outbox import Outbox, SentMessage
from core.jobs.context import JobContext
from core.jobs.registry import JobRegistry
from storage.blobs.base import BlobStore
from storage.outbox_models import OutboxMessage, OutboxStatus
from storage.vault_models import VaultItem, VaultKind, VaultLink

if TYPE_CHECKING:
    from core.services.container import ServiceFactory

log = logging.getLogger(__name__)

DELETE_MESSAGE = "vault.delete_message"
DELIVERED_HOOK = "vault.delivered"  # outbox hook: a queued delivery was sent
CLOUD_DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile on the cloud Bot API
CAPTION_LIMIT = 1024

RecordFileId = Callable[[int, str, str | None], Awaitable[None]]

_METHOD = {
    VaultKind.photo: "send_photo",
    VaultKind.video: "send_video",
    VaultKind.audio: "send_audio",
    VaultKind.voice: "send_voice",
    VaultKind.animation: "send_animation",
    VaultKind.document: "send_document",
}
_API_METHOD = {
    VaultKind.photo: "sendPhoto",
    VaultKind.video: "sendVideo",
    VaultKind.audio: "sendAudio",
    VaultKind.voice: "sendVoice",
    VaultKind.animation: "sendAnimation",
    VaultKind.document: "sendDocument",
}


@dataclass(frozen=True)
class Delivery:
    """What `deliver` did: sent at once (`message`) or queued in the outbox (`row_id`)."""

    message: Message | None = None
    row_id: int | None = None


class BlobInputFile(InputFile):
    """Uploads a blob straight from the store, chunk by chunk (bounded memory)."""

    def __init__(self, blobs: BlobStore, key: str, filename: str) -> None:
        super().__init__(filename=filename)
        self.blobs = blobs
        self.key = key

    async def read(self, bot: Bot) -> AsyncGenerator[bytes, None]:
        reader = await self.blobs.open_range(self.key, chunk_size=self.chunk_size)
        async with reader:
            async for chunk in reader:
                yield chunk


def _kind(item: VaultItem) -> VaultKind:
    try:
        return VaultKind(item.kind)
    except ValueError:
        return VaultKind.document


def _sent_file(message: Message, kind: VaultKind) -> tuple[str, str] | None:
    """(file_id, file_unique_id) of the file Telegram stored for a message we sent."""
    if kind is VaultKind.photo and message.photo:
        best = message.photo[-1]
        return best.file_id, best.file_unique_id
    obj = getattr(message, kind.value, None) or message.document
    return (obj.file_id, obj.file_unique_id) if obj is not None else None


async def deliver(
    bot: Bot,
    chat_id: int,
    item: VaultItem,
    link: VaultLink | None,
    *,
    blobs: BlobStore,
    caption: str | None = None,
    record_file_id: RecordFileId | None = None,
    outbox: Outbox | None = None,
    session: AsyncSession | None = None,
    dedupe_key: str | None = None,
    auto_delete_seconds: int | None = None,
) -> Delivery:
    """Send `item` to `chat_id`: by cached `file_id`, else uploaded from the blob store (and
    the new `file_id` handed to `record_file_id`). `link` decides `protect_content`.

    With `outbox`, a cached `file_id` is queued instead (in `session`'s transaction when
    given, idempotent under `dedupe_key`) and `auto_delete_seconds` is handed to the
    DELIVERED_HOOK; the caller schedules auto-delete only for a direct send (`message`)."""
    kind = _kind(item)
    send = getattr(bot, _METHOD[kind])
    params: dict[str, Any] = {
        "chat_id": chat_id,
        "protect_content": bool(link and link.protect_content),
        "parse_mode": None,
    }
    if caption:
        params["caption"] = caption[:CAPTION_LIMIT]
    if item.tg_file_id and outbox is not None:
        queued = {k: v for k, v in params.items() if k != "chat_id"}
        row_id = await outbox.enqueue(
            chat_id,
            _API_METHOD[kind],
            session=session,
            dedupe_key=dedupe_key,
            tenant_id=item.tenant_id,
            hook=DELIVERED_HOOK,
            hook_data={
                "tenant_id": item.tenant_id,
                "item_id": item.id,
                "auto_delete_seconds": auto_delete_seconds,
            },
            **{kind.value: item.tg_file_id},
            **queued,
        )
        return Delivery(row_id=row_id)
    if item.tg_file_id:
        try:
            return Delivery(message=await send(**{kind.value: item.tg_file_id}, **params))
        except TelegramBadRequest as exc:
            if item.blob_key is None:
                raise
            log.warning("file_id of vault item %s refused (%s); uploading", item.id, exc.message)
    if item.blob_key is None:
        raise RuntimeError(f"vault item {item.id} has neither a file_id nor bytes")
    upload = BlobInputFile(blobs, item.blob_key, item.name)
    message = await send(**{kind.value: upload}, **params)
    sent = _sent_file(message, kind)
    if sent is not None and record_file_id is not None:
        await record_file_id(item.id, sent[0], sent[1])
    return Delivery(message=message)


async def claim_dedupe_key(session: AsyncSession, link_id: int, user_id: int) -> str:
    """`vault:claim:<link>:<user>:<n>`, n = that person's finished deliveries of the link.

    Taps while a delivery is still queued (a double tap, a webhook retry, two concurrent
    claims) compute the same key, so the outbox keeps one send; once it went out, claiming
    again is a new delivery (a re-claim gets the file again, DESIGN §4)."""
    prefix = f"vault:claim:{link_id}:{user_id}:"
    conds = [
        OutboxMessage.dedupe_key.startswith(prefix, autoescape=True),
        OutboxMessage.status.not_in([OutboxStatus.pending, OutboxStatus.sending]),
    ]
    if session.bind is not None and session.bind.dialect.name == "sqlite":
        # SQLite's LIKE is case-insensitive, so it cannot use the dedupe_key index: every claim
        # scanned the whole outbox (0.6 ms at 5,000 rows, growing) under the write lock. The
        # same prefix as a range (BINARY collation: every key with the prefix sorts between
        # these bounds) is an index range scan; the LIKE stays as the exact test.
        conds += [
            OutboxMessage.dedupe_key >= prefix,
            OutboxMessage.dedupe_key < prefix + "\U0010ffff",
        ]
    done = await session.scalar(select(func.count()).select_from(OutboxMessage).where(*conds))
    return f"{prefix}{done or 0}"


async def schedule_auto_delete(
    factory: ServiceFactory, tenant_id: int, chat_id: int, message_id: int, seconds: int
) -> None:
    """Queue the durable `vault.delete_message` job for a delivered message."""
    async with factory.sessionmaker() as session:
        await factory.bind(session).jobs.submit(
            tenant_id,
            DELETE_MESSAGE,
            {"chat_id": chat_id, "message_id": message_id},
            run_at=factory.clock.now() + timedelta(seconds=seconds),
            dedupe_key=f"vault.delete:{chat_id}:{message_id}",
        )


def delivered_hook(factory: ServiceFactory) -> Callable[[SentMessage], Awaitable[None]]:
    """The outbox DELIVERED_HOOK: schedule auto-delete of a queued delivery once it is sent."""

    async def on_sent(sent: SentMessage) -> None:
        data = sent.hook_data or {}
        seconds = data.get("auto_delete_seconds")
        if seconds and sent.message_id is not None:
            await schedule_auto_delete(
                factory, int(data["tenant_id"]), sent.chat_id, sent.message_id, int(seconds)
            )

    return on_sent


async def telegram_content(
    bot: Bot, file_id: str, size: int | None, chunk_size: int = 65536
) -> AsyncIterator[bytes] | None:
    """The bytes of a file an operator sent, streamed; None when the Bot API will not give
    them (over 20 MB on the cloud API)."""
    api = bot.session.api
    if not api.is_local and size is not None and size > CLOUD_DOWNLOAD_LIMIT:
        return None
    try:
        file = await bot.get_file(file_id)
    except TelegramBadRequest as exc:
        if "too big" in exc.message:
            return None
        raise
    if file.file_path is None:
        return None
    if api.is_local:
        return _read_local(api.wrap_local_file.to_local(file.file_path), chunk_size)
    url = api.file_url(bot.token, file.file_path)
    return bot.session.stream_content(
        url=url, timeout=300, chunk_size=chunk_size, raise_for_status=True
    )


async def _read_local(path: Any, chunk_size: int) -> AsyncIterator[bytes]:
    import asyncio

    with open(path, "rb") as f:  # noqa: ASYNC230 - chunks are read in a thread below
        while chunk := await asyncio.to_thread(f.read, chunk_size):
            yield chunk


async def delete_message(ctx: JobContext) -> dict[str, Any]:
    """Auto-delete of a delivered file (queued at delivery, survives restarts)."""
    bot: Bot = ctx.dep("bot")
    chat_id, message_id = int(ctx.payload["chat_id"]), int(ctx.payload["message_id"])
    try:
        await bot.delete_message(chat_id=chat_id, message_id=message_id)
    except TelegramBadRequest as exc:  # already deleted by the user, or too old
        return {"deleted": False, "reason": exc.message}
    return {"deleted": True}


def register_delivery_jobs(registry: JobRegistry) -> None:
    registry.register(
        DELETE_MESSAGE, delete_message, description="Delete a delivered vault file from a chat"
    )
