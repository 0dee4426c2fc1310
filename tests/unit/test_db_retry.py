"""ConnectionLossRetry: an update is handled again after a lost database connection only while
it has answered nothing (the PostgreSQL e2e case is tests/faults/test_postgres_faults.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

from bot.db_retry import ConnectionLossRetry, SentTracker
from storage.db import is_connection_lost


def lost() -> DBAPIError:
    return DBAPIError(
        "UPDATE operators …", {}, Exception("connection closed"), connection_invalidated=True
    )


async def send(tracker: SentTracker, api_method: str) -> None:
    async def make_request(bot, method):
        return "ok"

    await tracker(make_request, None, SimpleNamespace(__api_method__=api_method))  # type: ignore[arg-type]


def test_is_connection_lost_follows_the_cause() -> None:
    assert is_connection_lost(lost())
    wrapped = RuntimeError("while handling")
    wrapped.__cause__ = lost()
    assert is_connection_lost(wrapped)
    assert not is_connection_lost(OperationalError("SELECT 1", {}, Exception("database is locked")))
    assert not is_connection_lost(ValueError("x"))
    assert not is_connection_lost(None)


async def test_retried_while_nothing_was_answered() -> None:
    retry, tracker, tries = ConnectionLossRetry(), SentTracker(), []

    async def handler(event, data):
        tries.append(1)
        await send(tracker, "getChat")  # reading from Telegram answers nobody
        if len(tries) == 1:
            raise lost()
        await send(tracker, "sendMessage")
        return "handled"

    assert await retry(handler, SimpleNamespace(update_id=7), {}) == "handled"  # type: ignore[arg-type]
    assert len(tries) == 2 and retry.retried == 1


async def test_not_retried_once_something_was_sent() -> None:
    retry, tracker, tries = ConnectionLossRetry(), SentTracker(), []

    async def handler(event, data):
        tries.append(1)
        await send(tracker, "sendMessage")
        raise lost()

    with pytest.raises(DBAPIError):
        await retry(handler, SimpleNamespace(update_id=8), {})  # type: ignore[arg-type]
    assert len(tries) == 1 and retry.retried == 0


async def test_other_errors_and_endless_loss_are_not_retried_forever() -> None:
    retry, tries = ConnectionLossRetry(tries=3), []

    async def broken(event, data):
        tries.append(1)
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        await retry(broken, SimpleNamespace(update_id=9), {})  # type: ignore[arg-type]
    assert len(tries) == 1

    async def down(event, data):
        tries.append(1)
        raise lost()

    with pytest.raises(DBAPIError):
        await retry(down, SimpleNamespace(update_id=10), {})  # type: ignore[arg-type]
    assert len(tries) == 1 + 3
