"""Enqueueing: every Bot API call the bot makes on its own is an outbox row first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.outbox.uploads import UPLOAD_PARAM, FileRef
from core.clock import Clock
from storage.repositories import outbox as repo
from storage.uow import UnitOfWork


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    # None is kept: parse_mode=None means "no parse mode", not the Bot's default (HTML)
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json", exclude_none=True)
        out[key] = value
    return out


class Outbox:
    """Durable enqueue through the unit of work: inside the caller's `uow.write()` the row
    commits with the caller's writes (the local sender is woken after that commit); outside
    one, in a short write of its own. `session=` (a session whose transaction the caller
    commits itself) is still taken for callers not yet on the unit of work."""

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self.uow = uow
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
        if session is not None and not self.uow.in_write():
            row_id, created = await repo.insert(session, **values)
            event.listen(session.sync_session, "after_commit", lambda _s: self.wake(), once=True)
            return row_id, created
        async with self.uow.write() as own:  # joins the caller's write, if any
            row_id, created = await repo.insert(session or own, **values)
            self.uow.after_commit(self.wake)
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


async def wait_idle(
    db: async_sessionmaker[AsyncSession] | UnitOfWork, within: float = 10.0
) -> dict[str, int]:
    """Until no row is pending or sending (tests, benchmarks); returns the status counts."""
    deadline = time.monotonic() + within
    read = db.read if isinstance(db, UnitOfWork) else db
    while True:
        async with read() as session:
            counts = await repo.counts(session)
        if not counts.get("pending") and not counts.get("sending"):
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"outbox not idle after {within}s: {counts}")
        await asyncio.sleep(0.05)
