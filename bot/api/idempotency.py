"""`Idempotency-Key`: a retried mutation answers its first result instead of running twice.

A key belongs to one token. The first request reserves it (one INSERT racing on a unique
constraint, so two concurrent retries cannot both run), runs, and stores its answer; a retry
with the same method, path and body gets that answer again. The same key with a different
request is refused (422); a retry while the first one still runs is told so (409). A first
request that fails on our side (5xx) frees its key, so it can be retried for real."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from core.clock import Clock
from storage.api_models import IdempotencyRecord
from storage.repositories import api_tokens as token_repo
from storage.uow import UnitOfWork

KEY_RE = re.compile(r"^[\x21-\x7e]{1,128}$")


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    body: Any


class KeyInProgress(Exception):
    pass


class KeyMismatch(Exception):
    pass


def fingerprint(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class IdempotencyKeys:
    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self.uow = uow
        self.clock = clock

    async def begin(self, token_id: int, key: str, print_: str) -> Replay | None:
        """Reserve `key`; a Replay when it already has an answer (raises when it cannot run)."""
        now = self.clock.now()
        async with self.uow.write() as session:
            existing = await token_repo.reserve_key(session, token_id, key, print_, now)
            if existing is not None and existing.created_at < now - token_repo.KEY_RETENTION:
                await token_repo.release_key(session, token_id, key)
                existing = await token_repo.reserve_key(session, token_id, key, print_, now)
        return _decide(existing, print_)

    async def finish(self, token_id: int, key: str, status: int, body: Any) -> None:
        async with self.uow.write() as session:
            if status >= 500:
                await token_repo.release_key(session, token_id, key)
            else:
                await token_repo.complete_key(session, token_id, key, status, body)


def _decide(existing: IdempotencyRecord | None, print_: str) -> Replay | None:
    if existing is None:
        return None
    if existing.fingerprint != print_:
        raise KeyMismatch
    if existing.status is None:
        raise KeyInProgress
    return Replay(existing.status, existing.body)
