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
* restart: rows left `sending` whose lease expired are claimed again and resent.

Delivery is at least once. A send whose answer never came (timeout, connection reset after the
request went out, a crash between sending and recording) may have reached the chat; Telegram
has no idempotency key for sendMessage, so resending can duplicate. To keep that window small
the outcome is recorded right after each call, connection failures that provably happened
before the request was sent (connect refused/DNS) are retried freely, and callers that prefer
"at most once" (e.g. a one-time secret) enqueue with `retry_ambiguous=False`: such a row is
marked failed ("outcome unknown") instead of being resent. `dedupe_key` makes enqueueing
idempotent (the same logical message is never queued twice).

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
from datetime import datetime, timedelta
from typing import Any

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
from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import Clock, SystemClock
from storage.db import is_connection_lost
from storage.repositories import outbox as repo
from storage.repositories.outbox import ClaimedMessage

log = logging.getLogger(__name__)


class OutboxSettings(BaseSettings):
    """Sender tuning; env OUTBOX_* (e.g. OUTBOX_GLOBAL_PER_SECOND=20)."""

    model_config = SettingsConfigDict(env_prefix="OUTBOX_", extra="ignore")

    global_per_second: int = 30
    per_chat_per_second: float = 1.0
    # slack added to every pacing wait so network jitter never lets the server count one more
    pacing_margin_seconds: float = 0.03
    batch_size: int = 60
    max_in_flight: int = 16
    lease_seconds: float = 60.0
    poll_seconds: float = 1.0
    request_timeout_seconds: float = 30.0
    backoff_base_seconds: float = 2.0
    backoff_cap_seconds: float = 300.0
    # this many distinct chats answered 429 within a second pause all sending
    global_pause_after_chats: int = 3
    shutdown_timeout_seconds: float = 10.0


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    # None is kept: parse_mode=None means "no parse mode", not the Bot's default (HTML)
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json", exclude_none=True)
        out[key] = value
    return out


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

    async def enqueue(
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
        **params: Any,
    ) -> int:
        """Queue one Bot API call (`method` as Telegram names it, `params` without chat_id;
        aiogram models such as reply_markup are stored as JSON). Returns the row id — the
        existing row's id when `dedupe_key` was queued before."""
        values = dict(
            now=self.clock.now(),
            chat_id=chat_id,
            method=method,
            params=_json_params(params),
            dedupe_key=dedupe_key,
            not_before=not_before,
            tenant_id=tenant_id,
            max_attempts=max_attempts,
            retry_ambiguous=retry_ambiguous,
            hook=hook,
            hook_data=hook_data,
        )
        if session is not None:
            row_id, _ = await repo.insert(session, **values)
            event.listen(session.sync_session, "after_commit", lambda _s: self.wake(), once=True)
            return row_id
        async with self.sessionmaker() as own:
            row_id, _ = await repo.insert(own, **values)
            await own.commit()
        self.wake()
        return row_id

    async def send_message(self, chat_id: int, text: str, **kw: Any) -> int:
        return await self.enqueue(chat_id, "sendMessage", text=text, **kw)

    async def send_document(self, chat_id: int, document: str, **kw: Any) -> int:
        """`document` is a Telegram file_id (uploads of bytes do not go through the outbox)."""
        return await self.enqueue(chat_id, "sendDocument", document=document, **kw)

    async def send_photo(self, chat_id: int, photo: str, **kw: Any) -> int:
        return await self.enqueue(chat_id, "sendPhoto", photo=photo, **kw)

    async def delete_message(self, chat_id: int, message_id: int, **kw: Any) -> int:
        return await self.enqueue(chat_id, "deleteMessage", message_id=message_id, **kw)


class Pacer:
    """Sliding-window global limit, minimum spacing per chat, and 429 holds (monotonic time).

    Telegram counts a message when it arrives, somewhere between our request and its answer.
    So a send occupies its window slot from when it starts until one period after it was
    answered, and a chat's next send waits one gap after the previous one was answered.
    """

    def __init__(self, settings: OutboxSettings) -> None:
        self.s = settings
        self.window: list[list[float]] = []  # [answered at]; inf while in flight
        self.chat_next: dict[int, float] = {}
        self.paused_until = 0.0
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
        self.window = [slot for slot in self.window if slot[0] > now - self.period]
        ready = self.paused_until
        if len(self.window) >= self.s.global_per_second:
            first = min(slot[0] for slot in self.window)
            ready = max(ready, first + self.period if first != float("inf") else now + 0.01)
        return ready

    def note_send(self, chat_id: int, now: float) -> list[float]:
        """A send starts; returns its slot, to hand to `note_done` when it is answered."""
        slot = [float("inf")]
        self.window.append(slot)
        self.chat_next[chat_id] = max(self.chat_next.get(chat_id, 0.0), now + self.gap)
        if len(self.chat_next) > 50_000:  # forget chats whose spacing has long passed
            self.chat_next = {c: t for c, t in self.chat_next.items() if t > now}
        return slot

    def note_done(self, chat_id: int, slot: list[float], now: float) -> None:
        slot[0] = now
        self.chat_next[chat_id] = max(self.chat_next.get(chat_id, 0.0), now + self.gap)

    def note_429(self, chat_id: int, retry_after: float, now: float) -> bool:
        """Hold the chat; pause everything when several chats are throttled. True if paused."""
        until = now + retry_after
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
        self.row_hooks: dict[int, OnSent] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._local: list[ClaimedMessage] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self.s.max_in_flight)
        self._last_claim = 0.0
        # counters for metrics and benchmarks
        self.sent_count = 0
        self.failed_count = 0
        self.retry_after_count = 0
        self.retried_count = 0
        if outbox is not None:
            outbox.add_waker(self.wake)

    # ------------------------------------------------------------------ public

    def wake(self) -> None:
        self._wake.set()

    def add_hook(self, name: str, fn: OnSent) -> None:
        """Durable hook: rows enqueued with `hook=name` call `fn` after they are sent
        (whichever process sends them). Register the same names in every process."""
        self.hooks[name] = fn

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
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.s.shutdown_timeout_seconds)
        for task in list(self._in_flight):
            task.cancel()
        await self._release([m.id for m in self._local])
        self._local.clear()

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
        if len(self._local) < max(1, self.s.batch_size // 2):
            due = self._wake.is_set() or since >= self.s.poll_seconds
            if due and (not self._local or since >= 0.1):
                self._wake.clear()
                await self._claim(self.s.batch_size - len(self._local))
                self._last_claim = loop.time()
        if not self._local:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.s.poll_seconds)
            return
        # the row whose chat is free the soonest (ties: oldest)
        self._local.sort(key=lambda m: (self.pacer.chat_ready_at(m.chat_id), m.id))
        msg = self._local[0]
        now = loop.time()
        ready = max(self.pacer.chat_ready_at(msg.chat_id), self.pacer.global_ready_at(now))
        if ready > now:
            if ready - now > self._lease_left(msg) - self.s.request_timeout_seconds:
                # would outlive its lease: give it back for later
                self._local.pop(0)
                await self._defer(msg, ready - now)
                return
            await asyncio.sleep(min(ready - now, 0.25))
            return
        self._local.pop(0)
        if self._lease_left(msg) < self.s.request_timeout_seconds:
            return  # lease almost gone: another sender may take it; do not race it
        await self._slots.acquire()
        slot = self.pacer.note_send(msg.chat_id, loop.time())
        task = asyncio.create_task(self._send(msg, slot))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

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
            await self._fail(msg, "outcome unknown: a sender stopped mid-send; not resent")
        self._local.extend(m for m in claimed if not (m.was_sending and not m.retry_ambiguous))

    # ------------------------------------------------------------------ one send

    def _method(self, msg: ClaimedMessage) -> methods.TelegramMethod[Any]:
        name = msg.method[:1].upper() + msg.method[1:]
        cls = getattr(methods, name, None)
        if cls is None:
            raise ValueError(f"unknown Bot API method {msg.method!r}")
        return cls(chat_id=msg.chat_id, **msg.params)

    async def _send(self, msg: ClaimedMessage, slot: list[float]) -> None:
        loop = asyncio.get_running_loop()
        try:
            try:
                method = self._method(msg)
                try:
                    result = await self.bot(
                        method, request_timeout=int(self.s.request_timeout_seconds)
                    )
                finally:
                    self.pacer.note_done(msg.chat_id, slot, loop.time())
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
                if _surely_unsent(exc) or msg.retry_ambiguous:
                    await self._retry_or_fail(msg, f"network: {exc.message}")
                else:
                    await self._fail(msg, f"outcome unknown ({exc.message}); not resent")
            except _PERMANENT as exc:
                await self._fail(msg, f"{type(exc).__name__}: {exc.message}")
            except TelegramAPIError as exc:
                await self._retry_or_fail(msg, f"{type(exc).__name__}: {exc.message}")
            except Exception as exc:  # a bad row (params aiogram rejects): never retried forever
                log.exception("outbox row %s could not be sent", msg.id)
                await self._fail(msg, f"{type(exc).__name__}: {exc}")
            else:
                await self._sent(msg, result)
        finally:
            self._slots.release()

    async def _sent(self, msg: ClaimedMessage, result: Any) -> None:
        message_id = getattr(result, "message_id", None)
        for attempt in range(8):  # the database connection lost mid-write: write it again,
            try:  # or the row stays `sending` and is resent once its lease runs out
                async with self.sessionmaker() as session:
                    held = await repo.mark_sent(
                        session, msg.id, self.owner, now=self.clock.now(), message_id=message_id
                    )
                    await session.commit()
                break
            except Exception as exc:
                if attempt == 7 or not is_connection_lost(exc):
                    raise
                await asyncio.sleep(0.05 * 2**attempt)
        if not held:
            log.warning("outbox row %s was sent after its lease passed to another sender", msg.id)
        self.sent_count += 1
        self._wake.set()  # the chat's next row (if any) is claimable now
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
            await self._fail(msg, f"gave up after {msg.attempts} tries: {error}")
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
            )
            await session.commit()
        if delay <= self.s.poll_seconds:
            self._wake.set()

    async def _fail(self, msg: ClaimedMessage, error: str) -> None:
        log.warning("outbox row %s to %s failed: %s", msg.id, msg.chat_id, error)
        async with self.sessionmaker() as session:
            await repo.mark_failed(session, msg.id, self.owner, now=self.clock.now(), error=error)
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
