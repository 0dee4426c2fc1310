"""The paced sender: claims due rows with a lease, sends them within the bot's shared
budget, records each outcome and runs the rows' hooks (see `bot.outbox` for the contract)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import uuid
from collections.abc import Callable
from datetime import timedelta
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

from bot.outbox.budget import SharedBudget, wall_ms
from bot.outbox.hooks import FailCause, FailedMessage, OnFailed, OnSent, SentMessage
from bot.outbox.pacer import Pacer
from bot.outbox.queue import Outbox
from bot.outbox.uploads import (
    UPLOAD_PARAM,
    FileRef,
    SourceUnavailable,
    TrackedUpload,
    UploadSource,
)
from core.clock import Clock, SystemClock
from core.settings import OutboxSettings
from storage.db import is_connection_lost
from storage.repositories import outbox as repo
from storage.repositories.outbox import ClaimedMessage
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

PRUNE_PACES_EVERY = 60.0  # seconds


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
        uow: UnitOfWork,
        *,
        clock: Clock | None = None,
        settings: OutboxSettings | None = None,
        outbox: Outbox | None = None,
        owner: str | None = None,
    ) -> None:
        self.bot = bot
        self.uow = uow
        self.clock = clock or SystemClock()
        self.s = settings or OutboxSettings()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.pacer = Pacer(self.s)
        # the global pace is the bot token's, shared with every process on the database
        self.budget = SharedBudget(uow, f"bot:{bot.id}", self.s)
        self._pruned_at = 0.0
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
        await self.budget.close()

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
        if self._slots.locked():  # wait for room first: a slot waited for would go stale
            self._local.append(msg)
            await self._slots.acquire()
            self._slots.release()
            return
        # a slot of the bot's shared pace: granted a few at a time, sent at its moment
        wait = self.budget.due_in(len(ready_rows))
        if wait is None or wait > 0:
            self._local.append(msg)
            if wait is None:
                await self.budget.wait_granted(self.s.poll_seconds)
            else:
                await asyncio.sleep(min(wait, 0.25))
            return
        self.budget.use()
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
        async with self.uow.write() as session:
            claimed = await repo.claim(
                session,
                owner=self.owner,
                now=self.clock.now(),
                lease=timedelta(seconds=self.s.lease_seconds),
                limit=limit,
            )
        self._note_chat_paces(claimed)
        await self._prune_paces()
        ambiguous = [m for m in claimed if m.was_sending and not m.retry_ambiguous]
        for msg in ambiguous:
            await self._fail(
                msg, "outcome unknown: a sender stopped mid-send; not resent", FailCause.unknown
            )
        self._local.extend(m for m in claimed if not (m.was_sending and not m.retry_ambiguous))

    def _note_chat_paces(self, claimed: list[ClaimedMessage]) -> None:
        """A chat another process sent to lately waits out its gap here too."""
        loop_now, now_ms = asyncio.get_running_loop().time(), wall_ms()
        for msg in claimed:
            if msg.chat_ready_ms > now_ms:
                at = loop_now + (msg.chat_ready_ms - now_ms) / 1000.0
                self.pacer.chat_next[msg.chat_id] = max(self.pacer.chat_ready_at(msg.chat_id), at)

    async def _prune_paces(self) -> None:
        """Chat paces that have passed decide nothing: forget them once a minute."""
        now = asyncio.get_running_loop().time()
        if now - self._pruned_at < PRUNE_PACES_EVERY:
            return
        self._pruned_at = now
        async with self.uow.write() as session:
            await repo.prune_chat_pace(session, before_ms=wall_ms() - 60_000)

    # ------------------------------------------------------------------ one send

    def _method(self, msg: ClaimedMessage, params: dict[str, Any]) -> methods.TelegramMethod[Any]:
        name = msg.method[:1].upper() + msg.method[1:]
        cls = getattr(methods, name, None)
        if cls is None:
            raise ValueError(f"unknown Bot API method {msg.method!r}")
        return cls(chat_id=msg.chat_id, **params)

    async def _resolve(
        self, msg: ClaimedMessage, ref: FileRef | None
    ) -> tuple[dict[str, Any], TrackedUpload | None]:
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
        upload = TrackedUpload(got)
        params[ref.field] = upload
        return params, upload

    async def _send(self, msg: ClaimedMessage, slot: list[float], key: str | None = None) -> None:
        """One row: resolve its file (if by reference), call Telegram, record the outcome.
        `key`: the FileRef key this send holds (rows of the same file wait until released)."""
        loop = asyncio.get_running_loop()
        ref = FileRef.of(msg.params)
        upload: TrackedUpload | None = None
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
                async with self.uow.write() as session:
                    until = self.clock.now() + timedelta(seconds=self.s.lease_seconds)
                    await repo.extend_lease(session, msg.id, self.owner, until=until)
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
        held = await self._marks.mark(msg.id, msg.chat_id, getattr(result, "message_id", None))
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
            with contextlib.suppress(Exception):  # the local pause holds regardless
                await self.budget.pause(retry_after)
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
        async with self.uow.write() as session:
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
        if delay <= self.s.poll_seconds:
            self._wake.set()

    async def _fail(self, msg: ClaimedMessage, error: str, cause: FailCause) -> None:
        log.warning("outbox row %s to %s failed (%s): %s", msg.id, msg.chat_id, cause, error)
        fn = self.fail_hooks.get(msg.hook or "")
        failed = FailedMessage(msg.id, msg.chat_id, msg.method, error, cause, msg.hook_data)
        now = self.clock.now()
        async with self.uow.write() as session:
            held = await repo.mark_failed(session, msg.id, self.owner, now=now, error=error)
            # not held: another sender owns the row's outcome now (and its hook)
            if held and fn is not None:
                try:
                    async with session.begin_nested():  # a failing hook undoes only its own
                        await fn(failed, session)
                except Exception:
                    log.exception("outbox on_failed hook failed for row %s", msg.id)
        self.failed_count += 1
        self.row_hooks.pop(msg.id, None)
        self._wake.set()

    async def _defer(self, msg: ClaimedMessage, delay: float) -> None:
        now = self.clock.now()
        async with self.uow.write() as session:
            await repo.reschedule(
                session,
                msg.id,
                self.owner,
                now=now,
                not_before=now + timedelta(seconds=delay),
                error=None,
                count_attempt=False,
            )

    async def _release(self, ids: list[int]) -> None:
        if not ids:
            return
        async with self.uow.write() as session:
            await repo.release(session, self.owner, ids, now=self.clock.now())


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
        self.pending: list[tuple[int, int, int | None, int, asyncio.Future[bool]]] = []
        self.flushing: asyncio.Task[None] | None = None

    async def mark(self, row_id: int, chat_id: int, message_id: int | None) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        # the chat's next message, whichever process sends it, waits one gap from this answer
        next_ms = wall_ms() + math.ceil(1000 * self.sender.pacer.gap)
        self.pending.append((row_id, chat_id, message_id, next_ms, done))
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
                    for *_, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for (*_, done), ok in zip(batch, held, strict=True):
                    if not done.done():
                        done.set_result(ok)
        finally:
            self.flushing = None

    async def _write(
        self, batch: list[tuple[int, int, int | None, int, asyncio.Future[bool]]]
    ) -> list[bool]:
        sender = self.sender
        for attempt in range(8):  # the database connection lost mid-write: write it again,
            try:  # or the rows stay `sending` and are resent once their lease runs out
                async with sender.uow.write() as session:
                    now = sender.clock.now()
                    held = [
                        await repo.mark_sent(
                            session, row_id, sender.owner, now=now, message_id=message_id
                        )
                        for row_id, _, message_id, _, _ in batch
                    ]
                    paces: dict[int, int] = {}
                    for _, chat_id, _, next_ms, _ in batch:
                        paces[chat_id] = max(paces.get(chat_id, 0), next_ms)
                    await repo.set_chat_pace(session, paces)
                return held
            except Exception as exc:
                if attempt == 7 or not is_connection_lost(exc):
                    raise
                await asyncio.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")
