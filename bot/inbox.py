"""The inbox runner: Telegram updates are stored before they are acknowledged and handled from
the `inbox` table under a lease (DESIGN §10).

* **In**: the webhook and the long poll hand updates to `Inbox.ingest`, which returns once
  they are committed (group commit: whatever arrived while the previous transaction ran goes
  into the next one). Only then does the webhook answer 200, or the poll move its offset. A
  replayed `update_id` is ignored by the INSERT (ON CONFLICT DO NOTHING); every distinct id
  is kept, in whatever order Telegram delivers them.
* **Out**: one loop per process owns every inbox transaction. Each round stores what was
  received, marks what was handled, renews the leases of what is in handling (heartbeat) and
  claims as many updates as there are free slots — one short transaction, no network call
  inside. What it claims runs at once through the dispatcher; an update stored by this
  process is claimed in the very transaction that stored it, so the hot path has no poll
  delay. A chat's updates run one at a time in `update_id` order, across processes (the
  claim statement, `storage.repositories.inbox.claim`).
* **Crashes**: an update whose process died is claimed again once its lease (a short one,
  renewed every third of it while the handler runs) has run out, by whichever process polls
  first. Handling is therefore at least once: handlers whose effects are one database write
  mark the update handled in that very transaction (`handled_in`), the others are idempotent
  (conditional updates, dedupe keys).

Memory stays bounded under a burst: at most `max_waiting` updates wait to be stored (then
`ingest` waits, and answers `InboxUnavailable` → 503 at `ingest_timeout_seconds`); the backlog
itself lives in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError
from aiogram.methods import GetUpdates
from aiogram.types import TelegramObject, Update
from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock, SystemClock
from core.crypto import SecretBox
from core.errors import Forbidden
from core.settings import InboxSettings
from storage.repositories import inbox as repo
from storage.repositories.inbox import ClaimedUpdate, NewUpdate
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 60.0
# how often an idle process looks for updates other processes left (or could not take)
POLL_SECONDS = 1.0
# handled update ids are kept this long to ignore resends: Telegram keeps an update 24 h
KEEP_HANDLED = timedelta(hours=24)
# an update whose handling killed its process this many times is given up (and logged)
MAX_ATTEMPTS = 5
MAX_ROWS_PER_ROUND = 500  # stored per transaction; the rest go in the next round
# A busy inbox starts a round at most this often, so each transaction carries the updates of
# several POSTs and handlers (SQLite through aiosqlite: ~1 ms of CPU per transaction, more
# than a bare update's whole handling). A lone update after a quiet spell goes at once.
LINGER_SECONDS = 0.02


class InboxUnavailable(Exception):
    """The update could not be stored (database down or too slow, shutting down, full): the
    webhook answers 503 and Telegram sends it again."""


@dataclass(frozen=True, slots=True)
class Received:
    """An update as it arrived: its JSON text is what is stored; `update` is the parsed one,
    handed straight to the dispatcher if this process claims it."""

    update_id: int
    chat_key: int | None
    raw: str
    update: Update | None = None


@dataclass(frozen=True, slots=True)
class Handling:
    """The update the current task handles (see `handled_in`)."""

    update_id: int
    owner: str
    attempt: int
    inbox: Inbox


_CURRENT: ContextVar[Handling | None] = ContextVar("opsdeck_inbox_update", default=None)


def current() -> Handling | None:
    """The inbox update this task is handling, if any."""
    return _CURRENT.get()


async def handled_in(session: AsyncSession) -> None:
    """Mark the update being handled as handled in `session`'s transaction.

    For effects that must not be applied twice (a claim: the use, its access-log row and its
    queued answer): once that transaction commits, a crash can no longer make the update run
    again; if it rolls back, the update runs again with nothing of it done. Every update's own
    session gets this (`HandledWithUpdate`); a handler that writes in a unit of work of its
    own calls it there."""
    now = current()
    if now is None:
        return
    await repo.finish(session, owner=now.owner, ids=[now.update_id], now=now.inbox.clock.now())


class HandledWithUpdate(BaseMiddleware):
    """Outer `update` middleware inside the unit-of-work middleware: an update whose handler
    wrote through the update's session is marked handled in that same transaction.

    So what a handler commits there — a claim's use with its queued file, a guided flow's
    next step — and "this update is done" commit together: a crash can no longer run the
    update again on top of its own effects (a claim delivering twice, a flow step applied
    twice). A handler that never opened a transaction is marked by the runner's next round
    (no write transaction just for that)."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        result = await handler(event, data)
        session = data.get("session")
        if isinstance(session, AsyncSession) and session.in_transaction():
            await handled_in(session)
        return result


def chat_key_of(data: dict[str, Any]) -> int | None:
    """The chat whose updates must run in order: the event's chat (a button press: its
    message's chat), else its user; None for updates with neither."""
    for key, event in data.items():
        if key == "update_id" or not isinstance(event, dict):
            continue
        chat = event.get("chat")
        if not isinstance(chat, dict):
            message = event.get("message")
            chat = message.get("chat") if isinstance(message, dict) else None
        for holder in (chat, event.get("from"), event.get("user")):
            if isinstance(holder, dict):
                ident = holder.get("id")
                if isinstance(ident, int) and not isinstance(ident, bool):
                    return ident
    return None


@dataclass
class _Waiting:
    items: list[Received]
    done: asyncio.Future[None]


@dataclass
class _Stats:
    unhandled: int = 0
    oldest: datetime | None = None
    at: datetime | None = None


@dataclass(eq=False)
class Inbox:
    """One per process: `start()`, `ingest()` from the webhook or the poller, `stop()`."""

    uow: UnitOfWork
    bot: Bot
    dispatcher: Dispatcher
    settings: InboxSettings = field(default_factory=InboxSettings)
    clock: Clock = field(default_factory=SystemClock)
    owner: str = ""
    # seals each stored update: an operator may have typed a secret into a guided flow
    box: SecretBox | None = None

    def __post_init__(self) -> None:
        if not self.owner:
            self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.accepting = False
        self.tasks: set[asyncio.Task[None]] = set()  # handlers running now
        self._handling: dict[int, asyncio.Task[None]] = {}
        self._waiting: list[_Waiting] = []
        self._waiting_rows = 0
        self._room = asyncio.Condition()
        self._finished: list[int] = []
        self._parsed: OrderedDict[int, Update] = OrderedDict()  # stored here, not yet claimed
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._release: list[int] = []
        self._next_heartbeat = 0.0
        self._next_poll = 0.0
        self._next_prune = 0.0
        self._claim_more = True  # at start: take over what earlier runs left
        self._batch_rows = 0
        self._last_round = 0.0
        self.stats = _Stats()
        self.lost_leases = 0

    # -- life cycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self.accepting = True
        self._loop_task = asyncio.create_task(self._run(), name="inbox")
        log.info("inbox %s started (%d at once)", self.owner, self.settings.max_in_handling)

    async def stop(self, grace_seconds: float) -> None:
        """Stop taking updates; let those in handling finish for `grace_seconds`, hand the
        leases of the rest back (claimable at once by another process), end the loop."""
        self.accepting = False
        if self.tasks:
            _, pending = await asyncio.wait(list(self.tasks), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._loop_task, grace_seconds + 5)
        for waiting in self._waiting:
            if not waiting.done.done():
                waiting.done.set_exception(InboxUnavailable("shutting down"))
        log.info("inbox %s stopped", self.owner)

    async def drain(self, seconds: float) -> None:
        """Wait until nothing is waiting or in handling, here or in the table (tests, benches)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self._waiting and not self.tasks:
                async with self.uow.read() as session:
                    if (await repo.backlog(session, self.clock.now())).unhandled == 0:
                        return
            await asyncio.sleep(0.05)

    # -- in ------------------------------------------------------------------------------------
    async def ingest(self, items: Sequence[Received]) -> None:
        """Return once `items` are stored (or were stored before: replays). Raises
        `InboxUnavailable` if that does not happen within `ingest_timeout_seconds`."""
        if not self.accepting:
            raise InboxUnavailable("shutting down")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = _Waiting(list(items), done)
        try:
            async with asyncio.timeout(self.settings.ingest_timeout_seconds):
                if self._waiting_rows + len(items) > self.settings.max_waiting:
                    async with self._room:
                        await self._room.wait_for(
                            lambda: (
                                self._waiting_rows + len(items) <= self.settings.max_waiting
                                or not self._waiting_rows
                            )
                        )
                self._waiting.append(waiting)
                self._waiting_rows += len(items)
                self._wake.set()
                await asyncio.shield(done)
        except TimeoutError:
            raise InboxUnavailable("not stored in time") from None

    # -- the loop --------------------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        while True:
            timeout = self._until_next_timer()
            if not self._wake.is_set() and timeout > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
            self._wake.clear()
            busy_for = LINGER_SECONDS - (time.monotonic() - self._last_round)
            if busy_for > 0 and not self._stopping:
                await asyncio.sleep(busy_for)  # let more arrive: one transaction for all
            self._last_round = time.monotonic()
            if self._stopping:
                await self._final_round()
                return
            try:
                await self._round()
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning(
                    "inbox: database round failed (%s: %s); trying again",
                    type(exc).__name__,
                    exc,
                    exc_info=failures == 1,
                )
                await asyncio.sleep(min(0.05 * 2**failures, 2.0))

    def _until_next_timer(self) -> float:
        now = time.monotonic()
        timers = [self._next_poll]
        if self._handling:
            timers.append(self._next_heartbeat)
        return max(0.0, min(timers) - now)

    async def _round(self) -> None:
        now_mono = time.monotonic()
        batch, rows = self._take_waiting()
        finished, self._finished = self._finished, []
        heartbeat = bool(self._handling) and now_mono >= self._next_heartbeat
        poll = now_mono >= self._next_poll
        # stopping: finish what is in handling, take nothing new
        capacity = self.settings.max_in_handling - len(self._handling) if self.accepting else 0
        claim = capacity > 0 and bool(rows or finished or self._claim_more)
        if poll and capacity > 0 and not claim:
            claim = await self._poll()  # lock-free: is there anything to take?
        if poll:
            self._next_poll = now_mono + POLL_SECONDS
        if not (rows or finished or heartbeat or claim):
            return
        lease = timedelta(seconds=self.settings.lease_seconds)
        claimed: list[ClaimedUpdate] = []
        held: set[int] | None = None
        try:
            async with self.uow.write() as session:
                now = self.clock.now()
                await repo.insert_many(session, rows, now)
                await repo.finish(session, owner=self.owner, ids=finished, now=now)
                if heartbeat:
                    held = await repo.heartbeat(
                        session, owner=self.owner, ids=list(self._handling), now=now, lease=lease
                    )
                if claim:
                    claimed = await repo.claim(
                        session, owner=self.owner, now=now, lease=lease, limit=capacity
                    )
        except BaseException as exc:
            self._finished = finished + self._finished  # written with the next round
            for waiting in batch:
                if not waiting.done.done():
                    waiting.done.set_exception(InboxUnavailable(str(exc)))
            raise
        finally:
            await self._freed(rows)
        for waiting in batch:
            if not waiting.done.done():
                waiting.done.set_result(None)
        if heartbeat:
            self._next_heartbeat = now_mono + self.settings.lease_seconds / 3
            self._check_held(held or set())
        self._claim_more = claim and len(claimed) == capacity  # more may be waiting
        for row in claimed:
            self._begin(row)
        if self._claim_more or self._waiting:
            self._wake.set()

    def _take_waiting(self) -> tuple[list[_Waiting], list[NewUpdate]]:
        batch: list[_Waiting] = []
        rows: dict[int, NewUpdate] = {}
        while self._waiting and len(rows) < MAX_ROWS_PER_ROUND:
            waiting = self._waiting.pop(0)
            batch.append(waiting)
            for item in waiting.items:
                if item.update_id not in rows:
                    raw = self.box.seal(item.raw) if self.box is not None else item.raw
                    rows[item.update_id] = NewUpdate(item.update_id, item.chat_key, raw)
                if item.update is not None:
                    self._remember(item.update)
        self._batch_rows = sum(len(w.items) for w in batch)
        return batch, list(rows.values())

    async def _freed(self, rows: Sequence[NewUpdate]) -> None:
        self._waiting_rows -= self._batch_rows
        self._batch_rows = 0
        async with self._room:
            self._room.notify_all()

    def _remember(self, update: Update) -> None:
        """Keep the parsed update for this process's claim of it (bounded: the rest are
        parsed again from the table)."""
        self._parsed[update.update_id] = update
        while len(self._parsed) > self.settings.max_waiting:
            self._parsed.popitem(last=False)

    async def _poll(self) -> bool:
        async with self.uow.read() as session:
            backlog = await repo.backlog(session, self.clock.now())
        self.stats = _Stats(backlog.unhandled, backlog.oldest, self.clock.now())
        if self._next_prune <= time.monotonic():
            self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
            await self._prune()
        return backlog.free > 0

    async def _prune(self) -> None:
        before = self.clock.now() - KEEP_HANDLED
        async with self.uow.write() as session:
            pruned = await repo.prune_handled(session, before)
        if pruned:
            log.info("inbox: pruned %d handled updates", pruned)

    def _check_held(self, held: set[int]) -> None:
        for update_id in self._handling:
            if update_id not in held:
                self.lost_leases += 1
                log.warning(
                    "inbox: lost the lease on update %s while handling it (database "
                    "unreachable for longer than the lease?); another process may handle it too",
                    update_id,
                )

    async def _final_round(self) -> None:
        """On stop: write what finished, hand back what did not (claimable at once)."""
        finished, self._finished = self._finished, []
        unfinished = [uid for uid in self._release if uid not in finished]
        try:
            async with self.uow.write() as session:
                now = self.clock.now()
                await repo.finish(session, owner=self.owner, ids=finished, now=now)
                await repo.release(session, owner=self.owner, ids=unfinished)
        except Exception:
            log.exception("inbox: could not record the last handled updates (they run again)")

    # -- handling ------------------------------------------------------------------------------
    def _begin(self, row: ClaimedUpdate) -> None:
        update = self._parsed.pop(row.update_id, None)
        task = asyncio.create_task(self._handle(row, update), name=f"update-{row.update_id}")
        self._handling[row.update_id] = task
        self.tasks.add(task)

    async def _handle(self, row: ClaimedUpdate, update: Update | None) -> None:
        done = True
        try:
            if row.attempts > MAX_ATTEMPTS:
                log.error(
                    "inbox: update %s given up: its handling was interrupted %d times",
                    row.update_id,
                    row.attempts - 1,
                )
                return
            if update is None:
                update = self._parse(row)
                if update is None:
                    return
            if row.attempts > 1:
                log.info("inbox: update %s handled again (try %d)", row.update_id, row.attempts)
            token = _CURRENT.set(Handling(row.update_id, self.owner, row.attempts, self))
            try:
                await self.dispatcher.feed_update(self.bot, update)
            finally:
                _CURRENT.reset(token)
        except asyncio.CancelledError:
            done = False  # stopped mid-way: handed back, handled again elsewhere
            self._release.append(row.update_id)
        except Exception:
            log.exception("update %s failed outside the error handler", row.update_id)
        finally:
            self._handling.pop(row.update_id, None)
            self.tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
            if done:
                self._finished.append(row.update_id)
            self._wake.set()

    def _parse(self, row: ClaimedUpdate) -> Update | None:
        try:
            raw = row.raw or ""
            if self.box is not None:
                raw = self.box.reveal(raw)
            return Update.model_validate_json(raw, context={"bot": self.bot})
        except (ValidationError, Forbidden):
            log.error(
                "inbox: update %s cannot be read (not an update, or sealed with another "
                "OPSDECK_SECRET_KEY); skipped",
                row.update_id,
            )
            return None

    # -- metrics -------------------------------------------------------------------------------
    def collect(self) -> Iterable[Metric]:
        """Prometheus: the backlog as of the last poll (at most POLL_SECONDS old)."""
        yield GaugeMetricFamily(
            "opsdeck_inbox_depth",
            "Telegram updates stored and not handled yet (all processes)",
            value=self.stats.unhandled,
        )
        age = 0.0
        if self.stats.oldest is not None and self.stats.at is not None:
            age = max(0.0, (self.stats.at - self.stats.oldest).total_seconds())
        yield GaugeMetricFamily(
            "opsdeck_inbox_oldest_age_seconds",
            "Age of the oldest update not handled yet (0 when there is none)",
            value=age,
        )
        yield GaugeMetricFamily(
            "opsdeck_inbox_in_handling",
            "Updates this process is handling now",
            value=len(self._handling),
        )


class Poller:
    """Long polling into the inbox: the offset moves past a batch only once it is stored, so
    a crash between fetching and storing makes Telegram send the batch again."""

    def __init__(
        self, bot: Bot, inbox: Inbox, allowed_updates: list[str], timeout: int = 25
    ) -> None:
        self.bot, self.inbox, self.allowed, self.timeout = bot, inbox, allowed_updates, timeout
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="polling")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        offset: int | None = None
        failures = 0
        while True:
            try:
                updates = await self.bot(
                    GetUpdates(offset=offset, timeout=self.timeout, allowed_updates=self.allowed),
                    request_timeout=self.timeout + 10,
                )
                if updates:
                    await self.inbox.ingest([received(u) for u in updates])
                    offset = max(u.update_id for u in updates) + 1
                failures = 0
            except (TelegramNetworkError, TelegramAPIError, InboxUnavailable) as exc:
                failures += 1
                delay = min(2.0 ** min(failures, 5), 30.0)
                log.warning(
                    "polling: %s: %s; trying again in %.0f s", type(exc).__name__, exc, delay
                )
                await asyncio.sleep(delay)
            except Exception:
                failures += 1
                log.exception("polling failed; trying again")
                await asyncio.sleep(min(2.0 ** min(failures, 5), 30.0))


def received(update: Update) -> Received:
    """A polled update as the inbox stores it."""
    import json

    raw = update.model_dump_json(exclude_unset=True, by_alias=True)
    return Received(update.update_id, chat_key_of(json.loads(raw)), raw, update)
