"""One durable, rate-paced way out to Telegram: `Outbox.enqueue` and the per-process `Sender`.

Enqueue writes a row first (in the caller's transaction or its own), then wakes the local
sender. The sender claims due rows with a lease (several processes can share the table),
paces them under Telegram's flood limits and records each outcome:

* pacing: a sliding 1-second window of `global_per_second` sends overall (default 30) and at
  least `1 / per_chat_per_second` seconds between sends to one chat (default 1/s); a chat's
  rows go out in order (the claim only takes a chat's oldest unsent row);
* 429: the row goes back to pending until `retry_after` (the try is not counted) and that chat
  is held as long; when several chats are told to wait within a second, all sending pauses;
* 5xx, timeouts, network errors: retried with exponential backoff up to `max_attempts`;
* 400 / 403 / 404 (chat not found, bot blocked, bad request): failed at once, not retried;
* restart: rows left `sending` whose lease expired are claimed again and resent (failed as
  "outcome unknown" if `retry_ambiguous=False`); rows still pending are simply sent.

Delivery is at least once. A send whose answer never came (timeout, connection reset after the
request went out, a crash between sending and recording) may have reached the chat; Telegram
has no idempotency key for sendMessage, so resending can duplicate. To keep that window small
the outcome is recorded right after each call, connection failures that provably happened
before the request was sent (connect refused/DNS) are retried freely, and callers that prefer
"at most once" (e.g. a one-time secret) enqueue with `retry_ambiguous=False`: such a row is
marked failed ("outcome unknown") instead of being resent. `dedupe_key` makes enqueueing
idempotent (the same logical message is never queued twice).

Files by reference (uploads): a row never holds bytes. A row that sends a file the bot keeps
elsewhere (a vault item) carries a `FileRef` in its params (`params["_upload"]`: the name of
an `UploadSource`, the method's file field, a key naming the file, an opaque JSON ref); a
file_id known at enqueue sits in the file field as usual and is tried first. At send time a
row whose file field is empty asks its source, which answers with a Telegram file_id
(uploaded before, perhaps by an earlier row) or a stream of the bytes; the bytes are uploaded
in that same call, so an upload is paced, 429-held, retried and recovered after a restart like
any send. The file_id Telegram gives the upload goes back to the source
(`UploadSource.uploaded`) so later rows send by file_id, and rows for a file this process is
uploading wait for it instead of uploading it again. A file_id Telegram refuses (400) is
dropped from the row and the bytes are uploaded instead, once. Bytes the source cannot give
(`SourceUnavailable`: missing, unreadable) fail the row at once, with cause `source`. A timeout
while the body was still streaming provably sent nothing, so it is retried even for
`retry_ambiguous=False` rows. Uploads get `upload_timeout_seconds` and keep their lease alive.

Failures reach the row's hook too: `add_hook(name, on_sent, on_failed=...)` receives a
`FailedMessage` with a `cause` (`source`, `unreachable`, `rejected`, `gave_up`, `unknown`) and
the session of the transaction that marks the row failed, so a notice it queues (to tell the
person what happened) is committed with the failure or not at all.

Limits are per process: with N processes sharing one bot, give each 1/N of the rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from aiogram import Bot, methods
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import InputFile
from pydantic import BaseModel
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import Clock, SystemClock
from core.settings import OutboxSettings
from storage.db import is_connection_lost
from storage.repositories import outbox as repo
from storage.repositories.outbox import ClaimedMessage

log = logging.getLogger(__name__)


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    # None is kept: parse_mode=None means "no parse mode", not the Bot's default (HTML)
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json", exclude_none=True)
        out[key] = value
    return out


UPLOAD_PARAM = "_upload"  # params key of a row's FileRef; never sent to Telegram


@dataclass(frozen=True)
class FileRef:
    """A file a row sends by reference (see the module docstring): rows hold this, never bytes.

    `source` names the `UploadSource` (`Sender.add_source`), `field` the method's file
    parameter (document, photo, …), `key` the file itself (rows with one key share one upload),
    `ref` is the source's own JSON (e.g. an item id). `refused` is a file_id Telegram refused
    for this row: the source must not answer with it again.
    """

    source: str
    field: str
    key: str
    ref: dict[str, Any] = dc_field(default_factory=dict)
    refused: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "field": self.field,
            "key": self.key,
            "ref": self.ref,
        }
        if self.refused is not None:
            out["refused"] = self.refused
        return out

    @classmethod
    def of(cls, params: dict[str, Any]) -> FileRef | None:
        data = params.get(UPLOAD_PARAM)
        if not isinstance(data, dict):
            return None
        return cls(
            source=str(data["source"]),
            field=str(data["field"]),
            key=str(data["key"]),
            ref=dict(data.get("ref") or {}),
            refused=data.get("refused"),
        )


class SourceUnavailable(Exception):
    """An upload source cannot give the file (bytes missing or unreadable): the row fails with
    cause `source`; retrying would not bring the bytes back."""


class UploadSource(Protocol):
    """Where the bytes of rows sent by reference come from (registered per process)."""

    async def open(self, ref: dict[str, Any], *, refused: str | None) -> str | InputFile:
        """The file to send now: a Telegram file_id (not `refused`), or an InputFile that
        streams the bytes (open them lazily in `read`). Raise SourceUnavailable if neither."""
        ...

    async def uploaded(self, ref: dict[str, Any], file_id: str, file_unique_id: str | None) -> None:
        """An upload went through: keep Telegram's file_id so later rows send by it."""
        ...


class _TrackedUpload(InputFile):
    """Wraps a source's InputFile to know whether its bytes were all handed to the connection
    (a timeout before that provably sent nothing) and whether reading them failed."""

    def __init__(self, inner: InputFile) -> None:
        super().__init__(filename=inner.filename, chunk_size=inner.chunk_size)
        self.inner = inner
        self.complete = False
        self.error: BaseException | None = None

    async def read(self, bot: Bot) -> Any:
        try:
            async for chunk in self.inner.read(bot):
                yield chunk
        except Exception as exc:
            self.error = exc
            raise
        self.complete = True


class FailCause(StrEnum):
    """Why a row failed, for on_failed hooks."""

    source = "source"  # the file's bytes could not be had (missing, unreadable)
    unreachable = "unreachable"  # blocked by the user, chat not found
    rejected = "rejected"  # Telegram refused the call itself (bad request, too large, …)
    gave_up = "gave_up"  # transient errors until max_attempts
    unknown = "unknown"  # the outcome of a send is unknown and the row may not be resent


@dataclass(frozen=True)
class FailedMessage:
    """What an on_failed hook receives."""

    row_id: int
    chat_id: int
    method: str
    error: str
    cause: FailCause
    hook_data: dict[str, Any] | None


@dataclass(frozen=True)
class SentMessage:
    """What an on_sent hook receives."""

    row_id: int
    chat_id: int
    method: str
    result: Any  # the Bot API result (a Message for send*, True for deleteMessage, …)
    hook_data: dict[str, Any] | None

    @property
    def message_id(self) -> int | None:
        return getattr(self.result, "message_id", None)


OnSent = Callable[[SentMessage], Awaitable[None]]
# runs in the transaction that marks the row failed: what it queues (through the session) is
# committed with that outcome, or not at all
OnFailed = Callable[[FailedMessage, AsyncSession], Awaitable[None]]


class Outbox:
    """Durable enqueue. Pass `session=` to write inside the caller's transaction (the local
    sender is woken when that transaction commits); otherwise the row is committed here."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self.sessionmaker = sessionmaker
        self.clock = clock
        self._wakers: list[Callable[[], None]] = []

    def add_waker(self, wake: Callable[[], None]) -> None:
        self._wakers.append(wake)

    def wake(self) -> None:
        for wake in self._wakers:
            wake()

    async def enqueue(self, chat_id: int, method: str = "sendMessage", **kw: Any) -> int:
        """Queue one Bot API call; the row id (see `enqueue_new`)."""
        row_id, _ = await self.enqueue_new(chat_id, method, **kw)
        return row_id

    async def enqueue_new(
        self,
        chat_id: int,
        method: str = "sendMessage",
        *,
        session: AsyncSession | None = None,
        dedupe_key: str | None = None,
        not_before: datetime | None = None,
        tenant_id: int | None = None,
        max_attempts: int = 8,
        retry_ambiguous: bool = True,
        hook: str | None = None,
        hook_data: dict[str, Any] | None = None,
        file: FileRef | None = None,
        **params: Any,
    ) -> tuple[int, bool]:
        """Queue one Bot API call (`method` as Telegram names it, `params` without chat_id;
        aiogram models such as reply_markup are stored as JSON). Returns the row id and
        whether it is new: with a `dedupe_key` queued before, the existing row's id and False.

        `file`: the method's file parameter by reference (the bytes are read at send time);
        a file_id known now may still be given as that parameter and is then used first."""
        stored = _json_params(params)
        if file is not None:
            stored[UPLOAD_PARAM] = file.to_json()
        values = dict(
            now=self.clock.now(),
            chat_id=chat_id,
            method=method,
            params=stored,
            dedupe_key=dedupe_key,
            not_before=not_before,
            tenant_id=tenant_id,
            max_attempts=max_attempts,
            retry_ambiguous=retry_ambiguous,
            hook=hook,
            hook_data=hook_data,
        )
        if session is not None:
            row_id, created = await repo.insert(session, **values)
            event.listen(session.sync_session, "after_commit", lambda _s: self.wake(), once=True)
            return row_id, created
        async with self.sessionmaker() as own:
            row_id, created = await repo.insert(own, **values)
            await own.commit()
        self.wake()
        return row_id, created

    async def send_message(self, chat_id: int, text: str, **kw: Any) -> int:
        return await self.enqueue(chat_id, "sendMessage", text=text, **kw)

    async def send_document(self, chat_id: int, document: str, **kw: Any) -> int:
        """`document` is a Telegram file_id; bytes go by reference (`enqueue(file=...)`)."""
        return await self.enqueue(chat_id, "sendDocument", document=document, **kw)

    async def send_photo(self, chat_id: int, photo: str, **kw: Any) -> int:
        return await self.enqueue(chat_id, "sendPhoto", photo=photo, **kw)

    async def delete_message(self, chat_id: int, message_id: int, **kw: Any) -> int:
        return await self.enqueue(chat_id, "deleteMessage", message_id=message_id, **kw)


class Pacer:
    """Sliding-window global limit, minimum spacing per chat, and 429 holds (monotonic time).

    Telegram counts a message when it arrives, somewhere between our request and its answer.
    A chat's next send waits one gap after the previous one was answered. For the global
    window, a send occupies its slot from when it starts until one period after its arrival
    could have been at the latest. That is its answer, which is always safe but costs a whole
    round trip per slot: 30 slots per (1 s + RTT), 0.75x of the limit at a 300 ms RTT. When
    the recent round trips are steady, arrival is bounded tighter: the arrivals of two sends
    differ from their starts by at most the spread of the round trips (slowest - fastest), so
    a slot ends one period after `start + spread` (or its answer, if that came first). With
    too few samples, or for a minute after a 429, the answer is used again.
    """

    RTT_SAMPLES = 64
    MIN_SAMPLES = 8
    CAUTIOUS_AFTER_429 = 60.0

    def __init__(self, settings: OutboxSettings) -> None:
        self.s = settings
        self.window: list[list[float]] = []  # [counted until - period, started]; inf in flight
        self.chat_next: dict[int, float] = {}
        self.paused_until = 0.0
        self.rtts: deque[float] = deque(maxlen=self.RTT_SAMPLES)
        self.cautious_until = 0.0
        self.recent_429: deque[tuple[float, int]] = deque()

    @property
    def period(self) -> float:
        return 1.0 + self.s.pacing_margin_seconds

    @property
    def gap(self) -> float:
        return 1.0 / self.s.per_chat_per_second + self.s.pacing_margin_seconds

    def chat_ready_at(self, chat_id: int) -> float:
        return self.chat_next.get(chat_id, 0.0)

    def global_ready_at(self, now: float) -> float:
        self.window = [slot for slot in self.window if slot[0] + self.period > now]
        ready = self.paused_until
        excess = len(self.window) - self.s.global_per_second
        if excess >= 0:
            # the window is full until enough slots end; never "ready now" while it is full
            # (at `now == end + period` rounding kept the slot and admitted sends unbounded)
            end = sorted(slot[0] for slot in self.window)[excess]
            ready = max(ready, end + self.period if end != float("inf") else now + 0.01)
            ready = max(ready, now + 1e-4)
        return ready

    def note_send(self, chat_id: int, now: float) -> list[float]:
        """A send starts; returns its slot, to hand to `note_done` when it is answered."""
        slot = [float("inf"), now]
        self.window.append(slot)
        self.chat_next[chat_id] = max(self.chat_next.get(chat_id, 0.0), now + self.gap)
        if len(self.chat_next) > 50_000:  # forget chats whose spacing has long passed
            self.chat_next = {c: t for c, t in self.chat_next.items() if t > now}
        return slot

    def note_done(self, chat_id: int, slot: list[float], now: float) -> None:
        started = slot[1]
        self.rtts.append(now - started)
        latest_arrival = now
        if len(self.rtts) >= self.MIN_SAMPLES and now >= self.cautious_until:
            latest_arrival = min(now, started + max(self.rtts) - min(self.rtts))
        slot[0] = latest_arrival
        self.chat_next[chat_id] = max(self.chat_next.get(chat_id, 0.0), now + self.gap)

    def note_429(self, chat_id: int, retry_after: float, now: float) -> bool:
        """Hold the chat; pause everything when several chats are throttled. True if paused."""
        until = now + retry_after
        self.cautious_until = max(self.cautious_until, until + self.CAUTIOUS_AFTER_429)
        self.chat_next[chat_id] = max(self.chat_next.get(chat_id, 0.0), until)
        self.recent_429.append((now, chat_id))
        while self.recent_429 and self.recent_429[0][0] < now - 1.0:
            self.recent_429.popleft()
        chats = {c for _, c in self.recent_429}
        if len(chats) >= self.s.global_pause_after_chats:
            self.paused_until = max(self.paused_until, until)
            return True
        return False


_PERMANENT = (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramUnauthorizedError,
    TelegramConflictError,
    TelegramEntityTooLarge,
)


def _surely_unsent(exc: TelegramNetworkError) -> bool:
    """The request never left: connecting failed (refused, DNS). Safe to resend."""
    return "ClientConnectorError" in exc.message or "ClientConnectorDNSError" in exc.message


class Sender:
    """Claims due outbox rows and sends them, paced. One per process; `start()` / `stop()`."""

    def __init__(
        self,
        bot: Bot,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        clock: Clock | None = None,
        settings: OutboxSettings | None = None,
        outbox: Outbox | None = None,
        owner: str | None = None,
    ) -> None:
        self.bot = bot
        self.sessionmaker = sessionmaker
        self.clock = clock or SystemClock()
        self.s = settings or OutboxSettings()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.pacer = Pacer(self.s)
        self.hooks: dict[str, OnSent] = {}
        self.fail_hooks: dict[str, OnFailed] = {}
        self.row_hooks: dict[int, OnSent] = {}
        self.sources: dict[str, UploadSource] = {}
        # FileRef keys this process is resolving or uploading: rows of the same file wait
        self._busy: set[str] = set()
        self._upload_done = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._local: list[ClaimedMessage] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._marks = _SentMarks(self)
        self._claiming: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(self.s.max_in_flight)
        self._last_claim = 0.0
        # counters for metrics and benchmarks
        self.sent_count = 0
        self.failed_count = 0
        self.retry_after_count = 0
        self.retried_count = 0
        self.upload_count = 0  # sends that uploaded bytes
        if outbox is not None:
            outbox.add_waker(self.wake)

    # ------------------------------------------------------------------ public

    def wake(self) -> None:
        self._wake.set()

    def add_hook(self, name: str, fn: OnSent, on_failed: OnFailed | None = None) -> None:
        """Durable hook: rows enqueued with `hook=name` call `fn` after they are sent, and
        `on_failed(failed, session)` when they fail for good, inside the transaction that
        records the failure (whichever process sends them). Register the same names in every
        process."""
        self.hooks[name] = fn
        if on_failed is not None:
            self.fail_hooks[name] = on_failed

    def add_source(self, name: str, source: UploadSource) -> None:
        """Where rows with `FileRef(source=name)` get their bytes. Register in every process."""
        self.sources[name] = source

    def on_sent(self, row_id: int, fn: OnSent) -> None:
        """In-process, one-shot hook for one row (lost on restart; prefer add_hook)."""
        self.row_hooks[row_id] = fn

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            return
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbox-sender")

    async def stop(self) -> None:
        """Stop claiming, let in-flight sends finish (bounded), hand unsent claims back."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._task, self.s.shutdown_timeout_seconds)
        self._task = None
        if self._claiming is not None:  # its rows join _local, handed back below
            await asyncio.wait([self._claiming], timeout=self.s.shutdown_timeout_seconds)
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.s.shutdown_timeout_seconds)
        cancelled = list(self._in_flight)
        for task in cancelled:
            task.cancel()  # a send cancelled before its request was whole hands its row back
        if cancelled:
            await asyncio.wait(cancelled, timeout=5.0)
        await self._release([m.id for m in self._local])
        self._local.clear()
        await self._marks.drain()

    # ------------------------------------------------------------------ loop

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                await self._step(loop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox sender step failed; retrying shortly")
                await asyncio.sleep(1.0)

    async def _step(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        since = now - self._last_claim
        # rows waiting for an upload of their file do not count: other chats must not starve
        active = sum(1 for m in self._local if not self._held(m))
        room = min(self.s.batch_size - active, 2 * self.s.batch_size - len(self._local))
        if active < max(1, self.s.batch_size // 2) and room > 0:
            due = self._wake.is_set() or since >= self.s.poll_seconds
            if due and (not active or since >= 0.1) and self._claiming is None:
                self._wake.clear()
                if active:
                    # rows are ready to go: claim more meanwhile rather than stop sending
                    # while the claim waits for the database (behind a claim storm's writes)
                    self._claiming = asyncio.create_task(self._claim_aside(room))
                else:
                    await self._claim(room)
                    self._last_claim = loop.time()
        if not self._local:
            if self._claiming is not None:  # rows are on their way
                await asyncio.wait([self._claiming], timeout=self.s.poll_seconds)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.s.poll_seconds)
            return
        await self._hand_back_held()
        ready_rows = [m for m in self._local if not self._held(m)]
        if not ready_rows:  # all wait for an upload of their file in this process
            self._upload_done.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._upload_done.wait(), 0.25)
            return
        # the row whose chat is free the soonest (ties: oldest)
        msg = min(ready_rows, key=lambda m: (self.pacer.chat_ready_at(m.chat_id), m.id))
        now = loop.time()
        ready = max(self.pacer.chat_ready_at(msg.chat_id), self.pacer.global_ready_at(now))
        if ready > now:
            if ready - now > self._lease_left(msg) - self.s.request_timeout_seconds:
                # would outlive its lease: give it back for later
                self._local.remove(msg)
                await self._defer(msg, ready - now)
                return
            await asyncio.sleep(min(ready - now, 0.25))
            return
        self._local.remove(msg)
        if self._lease_left(msg) < self.s.request_timeout_seconds:
            # lease almost gone: hand it back rather than race another sender for it (left to
            # expire, an at-most-once row would be failed as "outcome unknown" unsent)
            await self._defer(msg, 0.0)
            return
        key = self._key_to_resolve(msg)
        if key is not None:
            self._busy.add(key)  # before the task starts: the next step must see it
        await self._slots.acquire()
        slot = self.pacer.note_send(msg.chat_id, loop.time())
        task = asyncio.create_task(self._send(msg, slot, key))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    @staticmethod
    def _key_to_resolve(msg: ClaimedMessage) -> str | None:
        """The FileRef key of a row its source must be asked about (no file_id in the row)."""
        ref = FileRef.of(msg.params)
        if ref is None or isinstance(msg.params.get(ref.field), str):
            return None
        return ref.key

    def _held(self, msg: ClaimedMessage) -> bool:
        if not self._busy:  # the usual case: no upload under way, nothing to look at
            return False
        key = self._key_to_resolve(msg)
        return key is not None and key in self._busy

    def _release_key(self, key: str) -> None:
        self._busy.discard(key)
        self._upload_done.set()

    async def _hand_back_held(self) -> None:
        """Rows waiting on an upload whose lease would run out first go back to the table."""
        margin = self.s.request_timeout_seconds + 5.0
        for msg in [m for m in self._local if self._held(m) and self._lease_left(m) < margin]:
            self._local.remove(msg)
            await self._defer(msg, 1.0)

    async def _claim_aside(self, limit: int) -> None:
        try:
            await self._claim(limit)
        except Exception:
            log.exception("outbox sender: claiming rows failed; retrying shortly")
        finally:
            self._last_claim = asyncio.get_running_loop().time()
            self._claiming = None

    def _lease_left(self, msg: ClaimedMessage) -> float:
        return (msg.lease_expires_at - self.clock.now()).total_seconds()

    async def _claim(self, limit: int) -> None:
        if limit <= 0:
            return
        async with self.sessionmaker() as session:
            claimed = await repo.claim(
                session,
                owner=self.owner,
                now=self.clock.now(),
                lease=timedelta(seconds=self.s.lease_seconds),
                limit=limit,
            )
            await session.commit()
        ambiguous = [m for m in claimed if m.was_sending and not m.retry_ambiguous]
        for msg in ambiguous:
            await self._fail(
                msg, "outcome unknown: a sender stopped mid-send; not resent", FailCause.unknown
            )
        self._local.extend(m for m in claimed if not (m.was_sending and not m.retry_ambiguous))

    # ------------------------------------------------------------------ one send

    def _method(self, msg: ClaimedMessage, params: dict[str, Any]) -> methods.TelegramMethod[Any]:
        name = msg.method[:1].upper() + msg.method[1:]
        cls = getattr(methods, name, None)
        if cls is None:
            raise ValueError(f"unknown Bot API method {msg.method!r}")
        return cls(chat_id=msg.chat_id, **params)

    async def _resolve(
        self, msg: ClaimedMessage, ref: FileRef | None
    ) -> tuple[dict[str, Any], _TrackedUpload | None]:
        """The call's params, with a file by reference turned into a file_id or an upload."""
        params = {k: v for k, v in msg.params.items() if k != UPLOAD_PARAM}
        if ref is None or isinstance(params.get(ref.field), str):
            return params, None
        source = self.sources.get(ref.source)
        if source is None:
            raise SourceUnavailable(f"no upload source {ref.source!r} in this process")
        got = await source.open(ref.ref, refused=ref.refused)
        if isinstance(got, str):
            params[ref.field] = got
            return params, None
        upload = _TrackedUpload(got)
        params[ref.field] = upload
        return params, upload

    async def _send(self, msg: ClaimedMessage, slot: list[float], key: str | None = None) -> None:
        """One row: resolve its file (if by reference), call Telegram, record the outcome.
        `key`: the FileRef key this send holds (rows of the same file wait until released)."""
        loop = asyncio.get_running_loop()
        ref = FileRef.of(msg.params)
        upload: _TrackedUpload | None = None
        keeper: asyncio.Task[None] | None = None
        requested = False  # the call went out (for an upload: maybe only part of its body)
        in_flight = _Once(self._slots.release)
        try:
            try:
                params, upload = await self._resolve(msg, ref)
            except SourceUnavailable as exc:
                self.pacer.note_done(msg.chat_id, slot, loop.time())
                await self._fail(msg, f"file unavailable: {exc}", FailCause.source)
                return
            except Exception as exc:  # the source's own storage hiccuped (database, network)
                self.pacer.note_done(msg.chat_id, slot, loop.time())
                log.exception("outbox row %s: file source failed", msg.id)
                await self._retry_or_fail(msg, f"file source: {type(exc).__name__}: {exc}")
                return
            if key is not None and upload is None:  # sent by file_id: the file's rows may go
                self._release_key(key)
                key = None
            timeout = self.s.request_timeout_seconds
            if upload is not None:
                self.upload_count += 1
                timeout = self.s.upload_timeout_seconds
                keeper = asyncio.create_task(self._keep_lease(msg))
            try:
                try:
                    method = self._method(msg, params)
                    requested = True
                    result = await self.bot(method, request_timeout=max(1, int(timeout)))
                except Exception as exc:
                    if upload is not None and upload.error is not None:
                        raise SourceUnavailable(
                            f"reading the bytes failed: {upload.error}"
                        ) from exc
                    raise
                finally:
                    self.pacer.note_done(msg.chat_id, slot, loop.time())
                    if keeper is not None:
                        keeper.cancel()
                    # the in-flight bound is about Telegram: the outcome's bookkeeping below
                    # (a database write that may queue behind others) must not hold a slot
                    in_flight.release()
            except SourceUnavailable as exc:
                await self._fail(msg, f"file unavailable: {exc}", FailCause.source)
            except TelegramRetryAfter as exc:
                await self._on_429(msg, exc.retry_after)
            except TelegramMigrateToChat as exc:
                await self._retry(
                    msg,
                    f"migrated to {exc.migrate_to_chat_id}",
                    0.0,
                    False,
                    chat_id=exc.migrate_to_chat_id,
                )
            except TelegramServerError as exc:
                await self._retry_or_fail(msg, f"server error: {exc.message}")
            except TelegramNetworkError as exc:
                # a body still streaming when the call broke off never reached Telegram whole
                unsent = _surely_unsent(exc) or (upload is not None and not upload.complete)
                if unsent or msg.retry_ambiguous:
                    await self._retry_or_fail(msg, f"network: {exc.message}")
                else:
                    await self._fail(
                        msg, f"outcome unknown ({exc.message}); not resent", FailCause.unknown
                    )
            except _PERMANENT as exc:
                if ref is not None and upload is None and _file_refused(exc) and not ref.refused:
                    await self._upload_instead(msg, ref, exc)
                else:
                    await self._fail(msg, f"{type(exc).__name__}: {exc.message}", _cause(exc))
            except TelegramAPIError as exc:
                await self._retry_or_fail(msg, f"{type(exc).__name__}: {exc.message}")
            except Exception as exc:  # a bad row (params aiogram rejects): never retried forever
                log.exception("outbox row %s could not be sent", msg.id)
                await self._fail(msg, f"{type(exc).__name__}: {exc}", FailCause.rejected)
            else:
                await self._mark_sent(msg, result)
                if upload is not None and ref is not None:
                    await self._record_upload(ref, result)
                await self._run_hooks(msg, result)
        except asyncio.CancelledError:
            # stopped mid-send: a row whose request never went out whole is handed back
            # (left `sending`, an at-most-once row would be failed as "outcome unknown")
            if not requested or (upload is not None and not upload.complete):
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._release([msg.id]))
            raise
        finally:
            if keeper is not None and not keeper.done():
                keeper.cancel()
            if key is not None:
                self._release_key(key)
            in_flight.release()

    async def _keep_lease(self, msg: ClaimedMessage) -> None:
        """While an upload runs, keep the row's lease from expiring (another sender would
        take the row and upload it a second time)."""
        while True:
            await asyncio.sleep(max(1.0, self.s.lease_seconds / 3))
            try:
                async with self.sessionmaker() as session:
                    until = self.clock.now() + timedelta(seconds=self.s.lease_seconds)
                    await repo.extend_lease(session, msg.id, self.owner, until=until)
                    await session.commit()
            except Exception:
                log.exception("outbox row %s: extending its lease failed", msg.id)

    async def _record_upload(self, ref: FileRef, result: Any) -> None:
        """Hand the file_id of what was just uploaded back to the row's source."""
        sent = _sent_file(result, ref.field)
        source = self.sources.get(ref.source)
        if sent is None or source is None:
            log.warning("outbox: no file_id for an upload of %s in Telegram's answer", ref.key)
            return
        try:
            await source.uploaded(ref.ref, sent[0], sent[1])
        except Exception:
            log.exception("outbox: keeping the file_id of %s failed", ref.key)

    async def _upload_instead(
        self, msg: ClaimedMessage, ref: FileRef, exc: TelegramAPIError
    ) -> None:
        """Telegram refused the row's file_id: send it again with the bytes, at once (once)."""
        refused = msg.params.get(ref.field)
        params = {k: v for k, v in msg.params.items() if k != ref.field}
        params[UPLOAD_PARAM] = FileRef(
            ref.source, ref.field, ref.key, ref.ref, refused=str(refused)
        ).to_json()
        log.warning("outbox row %s: file_id refused (%s); uploading the bytes", msg.id, exc.message)
        await self._retry(msg, f"file_id refused: {exc.message}", 0.0, True, params=params)

    async def _mark_sent(self, msg: ClaimedMessage, result: Any) -> None:
        held = await self._marks.mark(msg.id, getattr(result, "message_id", None))
        if not held:
            log.warning("outbox row %s was sent after its lease passed to another sender", msg.id)
        self.sent_count += 1
        self._wake.set()  # the chat's next row (if any) is claimable now

    async def _run_hooks(self, msg: ClaimedMessage, result: Any) -> None:
        sent = SentMessage(msg.id, msg.chat_id, msg.method, result, msg.hook_data)
        for fn in (self.hooks.get(msg.hook or ""), self.row_hooks.pop(msg.id, None)):
            if fn is None:
                continue
            try:
                await fn(sent)
            except Exception:
                log.exception("outbox on_sent hook failed for row %s", msg.id)

    async def _on_429(self, msg: ClaimedMessage, retry_after: float) -> None:
        self.retry_after_count += 1
        paused = self.pacer.note_429(msg.chat_id, retry_after, asyncio.get_running_loop().time())
        if paused:
            log.warning("Telegram 429 across chats: pausing all sends for %ss", retry_after)
        await self._retry(msg, f"429 retry after {retry_after}", retry_after, count=False)

    async def _retry_or_fail(self, msg: ClaimedMessage, error: str) -> None:
        if msg.attempts >= msg.max_attempts:
            await self._fail(msg, f"gave up after {msg.attempts} tries: {error}", FailCause.gave_up)
            return
        self.retried_count += 1
        delay = min(
            self.s.backoff_cap_seconds, self.s.backoff_base_seconds * 2 ** (msg.attempts - 1)
        )
        await self._retry(msg, error, delay, count=True)

    async def _retry(
        self,
        msg: ClaimedMessage,
        error: str,
        delay: float,
        count: bool,
        chat_id: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        now = self.clock.now()
        async with self.sessionmaker() as session:
            await repo.reschedule(
                session,
                msg.id,
                self.owner,
                now=now,
                not_before=now + timedelta(seconds=delay),
                error=error,
                count_attempt=count,
                chat_id=chat_id,
                params=params,
            )
            await session.commit()
        if delay <= self.s.poll_seconds:
            self._wake.set()

    async def _fail(self, msg: ClaimedMessage, error: str, cause: FailCause) -> None:
        log.warning("outbox row %s to %s failed (%s): %s", msg.id, msg.chat_id, cause, error)
        fn = self.fail_hooks.get(msg.hook or "")
        failed = FailedMessage(msg.id, msg.chat_id, msg.method, error, cause, msg.hook_data)
        now = self.clock.now()
        async with self.sessionmaker() as session:
            held = await repo.mark_failed(session, msg.id, self.owner, now=now, error=error)
            # not held: another sender owns the row's outcome now (and its hook)
            if held and fn is not None:
                try:
                    await fn(failed, session)
                except Exception:
                    log.exception("outbox on_failed hook failed for row %s", msg.id)
                    await session.rollback()
                    await repo.mark_failed(session, msg.id, self.owner, now=now, error=error)
            await session.commit()
        self.failed_count += 1
        self.row_hooks.pop(msg.id, None)
        self._wake.set()

    async def _defer(self, msg: ClaimedMessage, delay: float) -> None:
        now = self.clock.now()
        async with self.sessionmaker() as session:
            await repo.reschedule(
                session,
                msg.id,
                self.owner,
                now=now,
                not_before=now + timedelta(seconds=delay),
                error=None,
                count_attempt=False,
            )
            await session.commit()

    async def _release(self, ids: list[int]) -> None:
        if not ids:
            return
        async with self.sessionmaker() as session:
            await repo.release(session, self.owner, ids, now=self.clock.now())
            await session.commit()


def _file_refused(exc: Exception) -> bool:
    """A 400 about the file itself (wrong/expired file_id, type of file mismatch)."""
    return isinstance(exc, TelegramBadRequest) and "file" in exc.message.lower()


def _cause(exc: Exception) -> FailCause:
    if isinstance(exc, TelegramForbiddenError | TelegramNotFound):
        return FailCause.unreachable
    if isinstance(exc, TelegramBadRequest) and "chat not found" in exc.message.lower():
        return FailCause.unreachable
    return FailCause.rejected


def _sent_file(result: Any, field: str) -> tuple[str, str | None] | None:
    """(file_id, file_unique_id) of the file Telegram stored for a message we sent."""
    obj = getattr(result, field, None)
    if isinstance(obj, list):  # photo: the sizes, largest last
        obj = obj[-1] if obj else None
    if obj is None:  # e.g. an animation also comes back as a document
        obj = getattr(result, "document", None)
    file_id = getattr(obj, "file_id", None)
    return (file_id, getattr(obj, "file_unique_id", None)) if file_id else None


class _Once:
    """Calls `fn` the first time it is called, never again."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn: Callable[[], object] | None = fn

    def release(self) -> None:
        fn, self.fn = self.fn, None
        if fn is not None:
            fn()


class _SentMarks:
    """Group commit of "sent" marks: one transaction for every send answered meanwhile.

    Each answered send must be recorded before its hooks run and its chat's next row goes.
    One transaction each made the sender take SQLite's write lock once per message, queued
    behind every other writer (a claim storm's claims); marks that arrive while a flush is
    under way now go together in the next one. Nothing waits on purpose: alone, a mark is
    written at once as before."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.pending: list[tuple[int, int | None, asyncio.Future[bool]]] = []
        self.flushing: asyncio.Task[None] | None = None

    async def mark(self, row_id: int, message_id: int | None) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.pending.append((row_id, message_id, done))
        if self.flushing is None:
            self.flushing = asyncio.create_task(self._flush())
        return await asyncio.shield(done)  # a cancelled send still gets its row marked

    async def drain(self) -> None:
        if self.flushing is not None:
            await asyncio.wait([self.flushing], timeout=10.0)

    async def _flush(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    held = await self._write(batch)
                except Exception as exc:
                    for _, _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for (_, _, done), ok in zip(batch, held, strict=True):
                    if not done.done():
                        done.set_result(ok)
        finally:
            self.flushing = None

    async def _write(self, batch: list[tuple[int, int | None, asyncio.Future[bool]]]) -> list[bool]:
        sender = self.sender
        for attempt in range(8):  # the database connection lost mid-write: write it again,
            try:  # or the rows stay `sending` and are resent once their lease runs out
                async with sender.sessionmaker() as session:
                    now = sender.clock.now()
                    held = [
                        await repo.mark_sent(
                            session, row_id, sender.owner, now=now, message_id=message_id
                        )
                        for row_id, message_id, _ in batch
                    ]
                    await session.commit()
                return held
            except Exception as exc:
                if attempt == 7 or not is_connection_lost(exc):
                    raise
                await asyncio.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")


async def wait_idle(
    sessionmaker: async_sessionmaker[AsyncSession], within: float = 10.0
) -> dict[str, int]:
    """Until no row is pending or sending (tests, benchmarks); returns the status counts."""
    deadline = time.monotonic() + within
    while True:
        async with sessionmaker() as session:
            counts = await repo.counts(session)
        if not counts.get("pending") and not counts.get("sending"):
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"outbox not idle after {within}s: {counts}")
        await asyncio.sleep(0.05)
