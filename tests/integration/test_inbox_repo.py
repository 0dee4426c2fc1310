"""The inbox table on SQLite and PostgreSQL: replays ignored, every distinct id kept (in any
order), one chat at a time in update_id order, leases that run out, handled rows pruned."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from storage.repositories import inbox as repo
from storage.repositories.inbox import NewUpdate
from storage.uow import UnitOfWork

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=15)


def row(update_id: int, chat: int | None) -> NewUpdate:
    return NewUpdate(update_id, chat, f'{{"update_id": {update_id}}}')


async def claim(uow: UnitOfWork, owner: str, now: datetime = T0, limit: int = 10) -> list[int]:
    async with uow.write() as s:
        got = await repo.claim(s, owner=owner, now=now, lease=LEASE, limit=limit)
    return [c.update_id for c in got]


async def finish(uow: UnitOfWork, owner: str, ids: list[int], now: datetime = T0) -> int:
    async with uow.write() as s:
        return await repo.finish(s, owner=owner, ids=ids, now=now)


async def test_replays_are_ignored_and_out_of_order_ids_kept(engine) -> None:
    uow = UnitOfWork(engine)
    async with uow.write() as s:
        await repo.insert_many(s, [row(12, 1), row(10, 1)], T0)
    async with uow.write() as s:  # a resend of 12, and 11 arriving after both
        await repo.insert_many(s, [row(12, 1), row(11, 1)], T0)
    async with uow.read() as s:
        backlog = await repo.backlog(s, T0)
    assert backlog.unhandled == 3
    # one chat: strictly in update_id order, one at a time, whatever the arrival order
    assert await claim(uow, "a") == [10]
    assert await claim(uow, "b") == []  # 11 waits for 10 even on another process
    assert await finish(uow, "a", [10]) == 1
    assert await claim(uow, "b") == [11]
    assert await finish(uow, "b", [11]) == 1
    assert await claim(uow, "a") == [12]
    assert await finish(uow, "a", [12]) == 1
    async with uow.write() as s:  # a resend after handling: still nothing new
        await repo.insert_many(s, [row(12, 1)], T0)
    assert await claim(uow, "a") == []
    async with uow.read() as s:
        handled = await repo.get(s, 12)
    # handled: only the id stays (for dedupe), not what the update said
    assert handled is not None and handled.raw is None and handled.handled_at is not None
    await uow.dispose()


async def test_chats_run_side_by_side_and_chatless_updates_are_unordered(engine) -> None:
    uow = UnitOfWork(engine)
    async with uow.write() as s:
        await repo.insert_many(
            s, [row(1, 100), row(2, 200), row(3, 100), row(4, None), row(5, None)], T0
        )
    assert await claim(uow, "a", limit=2) == [1, 2]
    assert await claim(uow, "b") == [4, 5]  # 3 waits for 1; chat-less ones do not wait
    await uow.dispose()


async def test_a_dead_owners_lease_runs_out_and_heartbeats_keep_it(engine) -> None:
    uow = UnitOfWork(engine)
    async with uow.write() as s:
        await repo.insert_many(s, [row(1, 100), row(2, 200)], T0)
    assert await claim(uow, "dead") == [1, 2]
    later = T0 + timedelta(seconds=10)
    async with uow.write() as s:  # the live owner of 2 renews it; 1's owner is gone
        held = await repo.heartbeat(s, owner="dead", ids=[2], now=later, lease=LEASE)
    assert held == {2}
    assert await claim(uow, "b", now=later) == []
    expired = T0 + LEASE + timedelta(seconds=1)
    async with uow.write() as s:
        taken = await repo.claim(s, owner="b", now=expired, lease=LEASE, limit=10)
    assert [(c.update_id, c.attempts) for c in taken] == [(1, 2)]  # counted as a second try
    assert await finish(uow, "dead", [1], now=expired) == 0  # no longer its lease
    assert await finish(uow, "b", [1], now=expired) == 1
    await uow.dispose()


async def test_concurrent_claimers_never_share_an_update(engine) -> None:
    uow = UnitOfWork(engine)
    async with uow.write() as s:
        await repo.insert_many(s, [row(n, n % 7) for n in range(1, 201)], T0)
    taken: list[int] = []
    owners = [f"w{n}" for n in range(6)]

    async def worker(owner: str) -> None:
        while True:
            got = await claim(uow, owner, limit=5)
            if not got:
                async with uow.read() as s:
                    if (await repo.backlog(s, T0)).unhandled == 0:
                        return
                await asyncio.sleep(0.01)
                continue
            taken.extend(got)
            await finish(uow, owner, got)

    await asyncio.wait_for(asyncio.gather(*(worker(o) for o in owners)), 120)
    assert sorted(taken) == list(range(1, 201))  # each exactly once
    await uow.dispose()


async def test_release_and_prune(engine) -> None:
    uow = UnitOfWork(engine)
    async with uow.write() as s:
        await repo.insert_many(s, [row(1, 1), row(2, 2)], T0)
    assert await claim(uow, "a") == [1, 2]
    async with uow.write() as s:
        assert await repo.release(s, owner="a", ids=[2]) == 1
    async with uow.write() as s:
        again = await repo.claim(s, owner="b", now=T0, lease=LEASE, limit=10)
    assert [(c.update_id, c.attempts) for c in again] == [(2, 1)]  # at once, try not counted
    await finish(uow, "a", [1])
    async with uow.write() as s:
        assert await repo.prune_handled(s, T0 - timedelta(seconds=1)) == 0
        assert await repo.prune_handled(s, T0 + timedelta(seconds=1)) == 1
    async with uow.read() as s:
        assert (await repo.backlog(s, T0)).unhandled == 1  # 2 is still being handled
    await uow.dispose()
