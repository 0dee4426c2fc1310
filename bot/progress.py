"""The job engine's `progress` dependency: a backfill started from chat edits ONE message.

The chat button sends a "queued…" message first and puts its address in the job's payload
(`progress: [chat_id, message_id]`), so a job that resumes after a restart still finds it;
jobs started elsewhere (periodic fan-outs, the shell) have no address and report nowhere.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest

from storage.repositories import jobs as job_repo
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

PAYLOAD_KEY = "progress"
_CACHE_MAX = 1000


def progress_payload(chat_id: int, message_id: int) -> dict[str, Any]:
    """The payload entry that tells `ChatProgress` which message a job edits."""
    return {PAYLOAD_KEY: [chat_id, message_id]}


class ChatProgress:
    """`async (job_id, text)`: edit the message named in the job's payload with `text`."""

    def __init__(self, bot: Bot, uow: UnitOfWork) -> None:
        self.bot = bot
        self.uow = uow
        self._targets: dict[int, tuple[int, int] | None] = {}

    async def _target(self, job_id: int) -> tuple[int, int] | None:
        if job_id in self._targets:
            return self._targets[job_id]
        async with self.uow.read() as session:
            job = await job_repo.get(session, job_id)
        target = None
        raw = (job.payload or {}).get(PAYLOAD_KEY) if job is not None else None
        if isinstance(raw, list | tuple) and len(raw) == 2:
            try:
                target = (int(raw[0]), int(raw[1]))
            except (TypeError, ValueError):
                target = None
        if len(self._targets) >= _CACHE_MAX:
            self._targets.clear()
        self._targets[job_id] = target
        return target

    async def __call__(self, job_id: int, text: str) -> None:
        target = await self._target(job_id)
        if target is None:
            return
        chat_id, message_id = target
        try:
            await self.bot.edit_message_text(
                text=html.escape(text), chat_id=chat_id, message_id=message_id
            )
        except TelegramBadRequest as exc:
            if "not modified" not in str(exc):
                log.warning("progress of job %s: %s", job_id, exc)
        except TelegramAPIError as exc:  # progress never fails the job
            log.warning("progress of job %s: %s", job_id, exc)
