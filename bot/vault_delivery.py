"""The one way a vault file leaves the bot in Telegram: `deliver`, and its auto-delete job.

Every send of a claimed (or "send to me") file is one outbox row, queued by `deliver`:
durable, paced under the flood limits like any send, 429s waited out, resent after a
restart. The row names the item by reference (`FileRef` in its params, never bytes) and
carries the cached `file_id` when the item has one. An item Telegram does not hold yet (bytes
only in the blob store: restored from a backup, ingested without a file_id) is uploaded by the
Sender at send time from `VaultUploadSource`, which streams the blob; the `file_id` Telegram
gives that upload is cached on the item, so the rows still queued for it (and every later
delivery) go by `file_id` — queued deliveries of one new item upload it once per process. A
`file_id` Telegram refuses falls back to an upload of the bytes.

Vault rows are at most once (`retry_ambiguous=False`): a delivery whose answer was lost is
not sent again (a duplicate would escape auto-delete), and the person is told instead.

Failures: the row's `on_failed` hook tells the person in plain words (`FAILED_TEXT`) — a
missing or unreadable blob, Telegram refusing the file, retries used up, or an outcome that
cannot be known. For a claim nothing is lost: the claimer's use stays theirs, and opening
the link again re-delivers without spending another (DESIGN §4: the same claimer re-receives
the file for free).

Auto-delete: a delivery carries `hook=DELIVERED_HOOK`; once it is sent the hook queues the
`vault.delete_message` job (the message id exists only then).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InputFile
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.outbox import FailCause, FailedMessage, FileRef, Outbox, SentMessage, SourceUnavailable
from core.clock import Clock
from core.jobs.context import JobContext
from core.jobs.registry import JobRegistry
from core.vault.claims import ClaimService
from core.vault.types import Claimer, ClaimResult
from storage.blobs.base import BlobStore
from storage.blobs.errors import BlobNotFound, BlobStoreError
from storage.outbox_models import OutboxMessage, OutboxStatus
from storage.repositories import vault as vault_repo
from storage.uow import UnitOfWork
from storage.vault_models import ClaimOutcome, VaultItem, VaultKind, VaultLink

if TYPE_CHECKING:
    from bot.notifier import TelegramNotifier
    from core.services.jobs import JobService

log = logging.getLogger(__name__)

DELETE_MESSAGE = "vault.delete_message"
DELIVERED_HOOK = "vault.delivered"  # outbox hook: a delivery was sent (or failed for good)
VAULT_SOURCE = "vault"  # outbox upload source: a vault item's bytes from the blob store
CLOUD_DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile on the cloud Bot API
# A local Bot API server's file is read from disk in a worker thread: 1 MiB a hop (the blob
# store's write buffer) instead of 64 KiB makes 16x fewer thread round trips.
LOCAL_READ_CHUNK = 1024 * 1024
CAPTION_LIMIT = 1024
ON_ITS_WAY = "Your file is on its way: it is being sent for your earlier tap."

_API_METHOD = {
    VaultKind.photo: "sendPhoto",
    VaultKind.video: "sendVideo",
    VaultKind.audio: "sendAudio",
    VaultKind.voice: "sendVoice",
    VaultKind.animation: "sendAnimation",
    VaultKind.document: "sendDocument",
}

_AGAIN = "Open the link again later: it will not use up another download."
# What the person is told when a delivery fails for good, by cause; None: nothing (the chat
# cannot be reached anyway).
UNREADABLE_ALERT = (
    "⚠️ File #{item_id} could not be sent to someone who claimed it: its stored copy is "
    "missing or unreadable ({error}). They were told to try later and keep their use. "
    "Check the vault storage (VAULT_STORAGE_URL). This message comes at most once an hour "
    "per file."
)
# How a failed claim delivery reads in the access log.
UNDELIVERED: dict[FailCause, ClaimOutcome] = {
    FailCause.source: ClaimOutcome.undelivered_source,
    FailCause.unreachable: ClaimOutcome.undelivered_unreachable,
    FailCause.rejected: ClaimOutcome.undelivered_rejected,
    FailCause.gave_up: ClaimOutcome.undelivered_gave_up,
    FailCause.unknown: ClaimOutcome.undelivered_unknown,
}
FAILED_TEXT: dict[str, dict[FailCause, str | None]] = {
    "claim": {
        FailCause.source: "Sorry, this file cannot be sent right now: its stored copy is "
        "unavailable. " + _AGAIN,
        FailCause.gave_up: "Sorry, Telegram did not accept the file after several tries. " + _AGAIN,
        FailCause.unknown: "We could not confirm that your file arrived. If you do not see it "
        "above, open the link again: it will not use up another download.",
        FailCause.rejected: "Sorry, Telegram refused this file, so it cannot be sent in chat. "
        "Ask the sender for another way to get it.",
        FailCause.unreachable: None,
    },
    "operator": {
        FailCause.source: "File #{item_id} could not be sent: its stored copy is missing or "
        "unreadable.",
        FailCause.gave_up: "File #{item_id} could not be sent: Telegram did not accept it after "
        "several tries.",
        FailCause.unknown: "File #{item_id} may not have arrived (Telegram's answer was lost). "
        "Press Send to me again if you do not see it.",
        FailCause.rejected: "File #{item_id} could not be sent: Telegram refused it.",
        FailCause.unreachable: None,
    },
}


class BlobInputFile(InputFile):
    """Uploads a blob straight from the store, chunk by chunk (bounded memory). The blob is
    opened when the upload starts, so an upload that never starts holds nothing open."""

    def __init__(self, blobs: BlobStore, key: str, filename: str) -> None:
        super().__init__(filename=filename)
        self.blobs = blobs
        self.key = key

    async def read(self, bot: Bot) -> AsyncGenerator[bytes, None]:
        reader = await self.blobs.open_range(self.key, chunk_size=self.chunk_size)
        async with reader:
            async for chunk in reader:
                yield chunk


class VaultUploadSource:
    """The outbox's `UploadSource` for vault items: the cached file_id, else the blob."""

    def __init__(self, uow: UnitOfWork, blobs: BlobStore, clock: Clock) -> None:
        self.uow = uow
        self.blobs = blobs
        self.clock = clock

    async def open(self, ref: dict[str, Any], *, refused: str | None) -> str | InputFile:
        item_id = int(ref["item_id"])
        async with self.uow.read() as session:
            # a claim granted before the item was deleted is still delivered
            item = await vault_repo.get_item(session, item_id, include_deleted=True)
        if item is None:
            raise SourceUnavailable(f"vault item {item_id} does not exist")
        if item.tg_file_id and item.tg_file_id != refused:
            return item.tg_file_id
        if item.blob_key is None:
            raise SourceUnavailable(
                f"vault item {item_id} has no stored copy and no usable file_id"
            )
        try:
            await self.blobs.size(item.blob_key)  # missing bytes fail here, before any upload
        except BlobNotFound as exc:
            raise SourceUnavailable(f"vault item {item_id}: blob missing") from exc
        except (BlobStoreError, OSError) as exc:
            raise SourceUnavailable(
                f"the blob of vault item {item_id} is unreadable: {exc}"
            ) from exc
        return BlobInputFile(self.blobs, item.blob_key, item.name)

    async def uploaded(self, ref: dict[str, Any], file_id: str, file_unique_id: str | None) -> None:
        await ClaimService(self.uow, self.clock).record_file_id(
            int(ref["item_id"]), file_id, file_unique_id
        )


def _kind(item: VaultItem) -> VaultKind:
    try:
        return VaultKind(item.kind)
    except ValueError:
        return VaultKind.document


async def deliver(
    outbox: Outbox,
    chat_id: int,
    item: VaultItem,
    link: VaultLink | None,
    *,
    caption: str | None = None,
    session: AsyncSession | None = None,
    dedupe_key: str | None = None,
    auto_delete_seconds: int | None = None,
    audience: str = "claim",
    claimer_user_id: int | None = None,
) -> tuple[int, bool]:
    """Queue `item` for `chat_id` in the outbox (in `session`'s transaction when given,
    idempotent under `dedupe_key`); returns the row id and whether it is new (False: the
    same delivery was already queued under `dedupe_key`). Sent by kind (photo, video, …) by the
    cached `file_id`, or uploaded from the blob store at send time. `link` decides
    `protect_content`; `auto_delete_seconds` is handed to the DELIVERED_HOOK. `audience`
    (`claim` or `operator`) picks the words if the delivery fails; with `link` and
    `claimer_user_id`, a failure is also written to the link's access log."""
    kind = _kind(item)
    params: dict[str, Any] = {
        "protect_content": bool(link and link.protect_content),
        "parse_mode": None,
    }
    if caption:
        params["caption"] = caption[:CAPTION_LIMIT]
    if item.tg_file_id:
        params[kind.value] = item.tg_file_id
    return await outbox.enqueue_new(
        chat_id,
        _API_METHOD[kind],
        session=session,
        dedupe_key=dedupe_key,
        tenant_id=item.tenant_id,
        retry_ambiguous=False,
        hook=DELIVERED_HOOK,
        hook_data={
            "tenant_id": item.tenant_id,
            "item_id": item.id,
            "auto_delete_seconds": auto_delete_seconds,
            "audience": audience,
            "link_id": link.id if link is not None else None,
            "claimer_user_id": claimer_user_id,
        },
        file=FileRef(
            source=VAULT_SOURCE,
            field=kind.value,
            key=f"vault.item:{item.id}",
            ref={"item_id": item.id},
        ),
        **params,
    )


# Which kinds Telegram lets share one album (sendMediaGroup): photos with videos, documents
# with documents, audio with audio; animations and voice notes go alone.
_ALBUM_CLASS = {
    VaultKind.photo: "visual",
    VaultKind.video: "visual",
    VaultKind.document: "document",
    VaultKind.audio: "audio",
}
ALBUM_MAX = 10


def album_groups(items: list[VaultItem]) -> list[list[VaultItem]]:
    """`items` in order, cut into runs Telegram can send as one album (2 to 10 of a class
    that may share one, each with a file_id); everything else is a run of one."""
    groups: list[list[VaultItem]] = []
    for item in items:
        cls = _ALBUM_CLASS.get(_kind(item)) if item.tg_file_id else None
        last = groups[-1] if groups else None
        if (
            cls is not None
            and last
            and len(last) < ALBUM_MAX
            and last[0].tg_file_id
            and _ALBUM_CLASS.get(_kind(last[0])) == cls
        ):
            last.append(item)
        else:
            groups.append([item])
    return groups


async def deliver_batch(
    outbox: Outbox,
    chat_id: int,
    batch: VaultItem,
    items: list[VaultItem],
    link: VaultLink | None,
    *,
    text: str,
    session: AsyncSession | None = None,
    dedupe_key: str | None = None,
    auto_delete_seconds: int | None = None,
    audience: str = "claim",
    claimer_user_id: int | None = None,
) -> bool:
    """Queue a batch's files for `chat_id`: a line of `text`, then the files in order, as
    albums where Telegram allows (see `album_groups`), one by one otherwise. False when the
    same delivery was already queued under `dedupe_key`."""
    _, queued = await outbox.enqueue_new(
        chat_id,
        "sendMessage",
        text=text,
        parse_mode=None,
        session=session,
        dedupe_key=f"{dedupe_key}:head" if dedupe_key else None,
        tenant_id=batch.tenant_id,
    )
    if not queued:
        return False
    for n, group in enumerate(album_groups(items)):
        key = f"{dedupe_key}:{n}" if dedupe_key else None
        if len(group) == 1:
            await deliver(
                outbox,
                chat_id,
                group[0],
                link,
                session=session,
                dedupe_key=key,
                auto_delete_seconds=auto_delete_seconds,
                audience=audience,
                claimer_user_id=claimer_user_id,
            )
            continue
        media = [
            {"type": _kind(item).value, "media": item.tg_file_id, "parse_mode": None}
            for item in group
        ]
        await outbox.enqueue_new(
            chat_id,
            "sendMediaGroup",
            session=session,
            dedupe_key=key,
            tenant_id=batch.tenant_id,
            retry_ambiguous=False,
            hook=DELIVERED_HOOK,
            hook_data={
                "tenant_id": batch.tenant_id,
                "item_id": batch.id,
                "auto_delete_seconds": auto_delete_seconds,
                "audience": audience,
                "link_id": link.id if link is not None else None,
                "claimer_user_id": claimer_user_id,
            },
            media=media,
            protect_content=bool(link and link.protect_content),
        )
    return True


def url_message(item: VaultItem, text: str) -> dict[str, Any]:
    """A short link's answer in chat: the destination as a URL button."""
    assert item.target_url is not None
    host = urlsplit(item.target_url).hostname or item.name
    return {
        "text": f"{text}\n{host}",
        "parse_mode": None,
        "reply_markup": {"inline_keyboard": [[{"text": f"Open {host}", "url": item.target_url}]]},
    }


async def answer_claim(
    outbox: Outbox,
    session: AsyncSession,
    result: ClaimResult,
    *,
    chat_id: int,
    user_id: int,
    answer_key: str,
) -> None:
    """The Telegram door's answer to a claim, queued in the claim's own transaction: the
    refusal, the file, a batch's files, or a short link's destination."""
    item, link = result.item, result.link
    if not result.delivers or item is None:
        await outbox.send_message(
            chat_id, result.reason_text, parse_mode=None, session=session, dedupe_key=answer_key
        )
        return
    if item.kind == VaultKind.url:
        # a click: counted in the access log by the claim; the person opens the button
        await outbox.enqueue_new(
            chat_id,
            "sendMessage",
            session=session,
            dedupe_key=answer_key,
            tenant_id=item.tenant_id,
            **url_message(item, "Here is your link:"),
        )
        return
    dedupe_key = await claim_dedupe_key(session, link.id, user_id) if link else None
    auto_delete = link.auto_delete_seconds if link is not None else None
    if item.kind == VaultKind.batch:
        members = await vault_repo.batch_members(session, item.id)
        again = result.outcome is ClaimOutcome.redelivered
        queued = await deliver_batch(
            outbox,
            chat_id,
            item,
            members,
            link,
            text=f"Here are your {len(members)} files{' again' if again else ''}.",
            session=session,
            dedupe_key=dedupe_key,
            auto_delete_seconds=auto_delete,
            claimer_user_id=user_id,
        )
    else:
        caption = result.reason_text
        if item.description:
            caption += "\n\n" + item.description
        _, queued = await deliver(
            outbox,
            chat_id,
            item,
            link,
            caption=caption,
            session=session,
            dedupe_key=dedupe_key,
            auto_delete_seconds=auto_delete,
            claimer_user_id=user_id,
        )
    if not queued:  # a tap while the earlier tap's file is still on its way: say so
        await outbox.send_message(
            chat_id, ON_ITS_WAY, parse_mode=None, session=session, dedupe_key=answer_key
        )


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
    jobs: JobService, tenant_id: int, chat_id: int, message_id: int, seconds: int
) -> None:
    """Queue the durable `vault.delete_message` job for a delivered message."""
    await jobs.submit(
        tenant_id,
        DELETE_MESSAGE,
        {"chat_id": chat_id, "message_id": message_id},
        run_at=jobs.clock.now() + timedelta(seconds=seconds),
        dedupe_key=f"vault.delete:{chat_id}:{message_id}",
    )


def delivered_hook(jobs: JobService) -> Callable[[SentMessage], Awaitable[None]]:
    """The outbox DELIVERED_HOOK: schedule auto-delete of a delivery once it is sent (every
    message of an album)."""

    async def on_sent(sent: SentMessage) -> None:
        data = sent.hook_data or {}
        seconds = data.get("auto_delete_seconds")
        if not seconds:
            return
        results = sent.result if isinstance(sent.result, list) else [sent.result]
        for message in results:
            message_id = getattr(message, "message_id", None)
            if message_id is not None:
                await schedule_auto_delete(
                    jobs, int(data["tenant_id"]), sent.chat_id, message_id, int(seconds)
                )

    return on_sent


def delivery_failed_hook(
    outbox: Outbox, uow: UnitOfWork, clock: Clock, notifier: TelegramNotifier | None = None
) -> Callable[[FailedMessage, AsyncSession], Awaitable[None]]:
    """The DELIVERED_HOOK's on_failed: tell the person the file did not come, and what to do;
    for a claim write it to the link's access log; when the stored copy could not be read,
    tell the workspace's operators, once an hour per file (all in the transaction that marks
    the delivery failed)."""

    async def on_failed(failed: FailedMessage, session: AsyncSession) -> None:
        data = failed.hook_data or {}
        if data.get("link_id") and data.get("claimer_user_id"):
            await ClaimService(uow, clock).record_undelivered(
                session,
                int(data["link_id"]),
                Claimer.telegram(int(data["claimer_user_id"])),
                UNDELIVERED[failed.cause],
            )
        tenant_id, item_id = data.get("tenant_id"), data.get("item_id")
        claim = str(data.get("audience") or "claim") == "claim"
        if notifier is not None and claim and failed.cause is FailCause.source and tenant_id:
            hour = clock.now().strftime("%Y%m%d%H")
            await notifier.tell_operators_once(
                session,
                int(tenant_id),
                UNREADABLE_ALERT.format(item_id=item_id, error=failed.error[:200]),
                dedupe_key=f"vault:unreadable:{item_id}:{hour}",
            )
        texts = FAILED_TEXT.get(str(data.get("audience") or "claim"), FAILED_TEXT["claim"])
        text = texts.get(failed.cause)
        log.warning(
            "vault delivery of item %s to %s failed (%s): %s",
            data.get("item_id"),
            failed.chat_id,
            failed.cause,
            failed.error,
        )
        if text is None:
            return
        await outbox.send_message(
            failed.chat_id,
            text.format(item_id=data.get("item_id")),
            parse_mode=None,
            tenant_id=data.get("tenant_id"),
            session=session,
            dedupe_key=f"vault:delivery-failed:{failed.row_id}",
        )

    return on_failed


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
        return _read_local(api.wrap_local_file.to_local(file.file_path), LOCAL_READ_CHUNK)
    url = api.file_url(bot.token, file.file_path)
    return bot.session.stream_content(
        url=url, timeout=300, chunk_size=chunk_size, raise_for_status=True
    )


async def _read_local(path: Any, chunk_size: int) -> AsyncIterator[bytes]:
    """A local Bot API server's file, read in a worker thread a chunk at a time."""
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
