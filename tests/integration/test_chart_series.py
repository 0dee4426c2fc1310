"""The chart series come from the seeded rows of the actor's workspace (SQLite, PostgreSQL),
and the pictures drawn from them are PNGs of the promised size."""

from __future__ import annotations

import struct
from datetime import UTC, date, datetime, timedelta

import pytest

from core.actor import Actor
from core.charts import render
from core.charts.series import ChartData
from core.clock import FrozenClock
from core.errors import InvalidInput
from storage.models import Job, Role, Tenant
from storage.reddit_models import RedditAccount, RedditPost
from storage.uow import UnitOfWork
from storage.vault_models import VaultClaim, VaultItem, VaultLink

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the PNG signature."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind, width, height = struct.unpack(">I4sII", png[8:24])
    assert kind == b"IHDR" and length == 13
    return width, height


async def seed(uow: UnitOfWork) -> tuple[int, int]:
    """Two workspaces; ours has two accounts' posts over 40 days, jobs and claims; the other
    has rows in the same period that must never show."""
    async with uow.write() as s:
        ours, theirs = (Tenant(slug=n, name=n, created_at=NOW) for n in ("ours", "theirs"))
        s.add_all([ours, theirs])
        await s.flush()
        accounts = {
            (tid, name): RedditAccount(tenant_id=tid, username=name, username_key=name,
                                       auth_kind="none", status="active", created_at=NOW,
                                       updated_at=NOW)
            for tid, name in ((ours.id, "main"), (ours.id, "alt"), (theirs.id, "spy"))
        }  # fmt: skip
        s.add_all(accounts.values())
        await s.flush()

        def post(tid, account, sub, at, score, comments, status="published"):
            s.add(RedditPost(tenant_id=tid, account_id=accounts[(tid, account)].id,
                             subreddit=sub, subreddit_key=sub.lower(), kind="self", title="t",
                             status=status, published_at=at, score=score,
                             num_comments=comments, created_at=NOW, updated_at=NOW))  # fmt: skip

        post(ours.id, "main", "python", NOW - timedelta(hours=1), 10, 2)  # today
        post(ours.id, "main", "python", NOW - timedelta(days=1), 5, 1)  # yesterday
        post(ours.id, "alt", "aiogram", NOW - timedelta(days=1, hours=2), 7, None)
        post(ours.id, "alt", "aiogram", NOW - timedelta(days=20), 100, 30)  # 30d only
        post(ours.id, "main", "python", NOW - timedelta(days=40), 999, 999)  # too old
        post(ours.id, "main", "python", None, None, None, status="queued")  # not published
        post(theirs.id, "spy", "python", NOW - timedelta(hours=1), 1000, 1000)

        def job(tid, status, created, ended=None):
            s.add(Job(tenant_id=tid, kind="test.ok", payload={}, status=status,
                      run_at=created, created_at=created, updated_at=ended or created,
                      finished_at=ended))  # fmt: skip

        job(ours.id, "queued", NOW - timedelta(hours=3, minutes=10))  # waiting 4 hour edges
        job(ours.id, "succeeded", NOW - timedelta(hours=5, minutes=50),
            NOW - timedelta(hours=4, minutes=50))  # fmt: skip
        job(ours.id, "dead", NOW - timedelta(hours=2, minutes=40),
            NOW - timedelta(hours=2, minutes=10))  # fmt: skip
        job(ours.id, "succeeded", NOW - timedelta(days=3), NOW - timedelta(days=3))  # 7d only
        job(theirs.id, "queued", NOW - timedelta(hours=3))

        item = VaultItem(tenant_id=ours.id, mime="text/plain", kind="document", name="a.txt",
                         size=1, created_at=NOW)  # fmt: skip
        s.add(item)
        await s.flush()
        link = VaultLink(tenant_id=ours.id, item_id=item.id, code_hash="c" * 64, max_uses=9,
                         expires_at=NOW + timedelta(days=1), created_at=NOW)  # fmt: skip
        s.add(link)
        await s.flush()
        for n, outcome in enumerate(("delivered", "redelivered", "denied:used_up")):
            s.add(VaultClaim(tenant_id=ours.id, link_id=link.id, item_id=item.id,
                             claimer_kind="telegram", claimer_id=str(n), channel="telegram",
                             outcome=outcome, at=NOW - timedelta(minutes=n)))  # fmt: skip
        return ours.id, link.id


def actor(tenant_id: int, role: Role = Role.viewer, tz: str = "UTC") -> Actor:
    return Actor(operator_id=1, user_id=1, tenant_id=tenant_id, role=role, timezone=tz)


async def test_post_series_counts_the_workspace_published_rows(uow: UnitOfWork) -> None:
    tid, _ = await seed(uow)
    charts = ChartData(uow, FrozenClock(NOW))
    week = await charts.posts(actor(tid), "7d")
    assert week.days[0] == date(2026, 3, 4) and week.days[-1] == date(2026, 3, 10)
    assert week.by_account == {"alt": [0] * 5 + [1, 0], "main": [0] * 5 + [1, 1]}
    assert week.by_subreddit == {"aiogram": [0] * 5 + [1, 0], "python": [0] * 5 + [1, 1]}
    assert week.score == [0] * 5 + [12, 10] and week.comments == [0] * 5 + [1, 2]
    month = await charts.posts(actor(tid), "30d")
    assert len(month.days) == 30 and month.total == 4 and sum(month.score) == 122

    # the actor's calendar: 14:30 UTC today is 03:30 tomorrow in Auckland (UTC+13)
    auckland = await charts.posts(actor(tid, tz="Pacific/Auckland"), "7d")
    assert auckland.days[-1] == date(2026, 3, 11)


async def test_job_series_has_hourly_depth_and_failures(uow: UnitOfWork) -> None:
    tid, _ = await seed(uow)
    charts = ChartData(uow, FrozenClock(NOW))
    day = await charts.jobs(actor(tid), "24h")
    assert len(day.hours) == 24 and day.hours[-1] == datetime(2026, 3, 10, 14, tzinfo=UTC)
    # edges 09:00 … 14:00, then now (14:30); queued since 11:20, dead 11:50 → 12:20,
    # succeeded 08:40 → 09:40
    assert day.depth[-7:] == [1, 0, 0, 2, 1, 1, 1]
    assert day.failures[-3] == 1 and sum(day.failures) == 1
    week = await charts.jobs(actor(tid), "7d")
    assert len(week.hours) == 168 and week.depth[-1] == 1 and sum(week.failures) == 1


async def test_claim_series_counts_deliveries_per_link(uow: UnitOfWork) -> None:
    tid, link_id = await seed(uow)
    series = await ChartData(uow, FrozenClock(NOW)).claims(actor(tid), "7d")
    assert series.by_link == {f"link #{link_id}": [0] * 6 + [2]}


async def test_other_workspace_and_bad_input(uow: UnitOfWork) -> None:
    tid, _ = await seed(uow)
    charts = ChartData(uow, FrozenClock(NOW))
    stranger = actor(tid + 1)  # "theirs": sees only its own rows
    assert (await charts.posts(stranger, "7d")).by_account == {"spy": [0] * 6 + [1]}
    assert (await charts.claims(stranger, "30d")).total == 0
    with pytest.raises(InvalidInput):
        await charts.jobs(actor(tid), "30d")
    with pytest.raises(InvalidInput):
        await charts.posts(actor(tid), "24h")


async def test_pictures_are_pngs_of_the_promised_size(uow: UnitOfWork) -> None:
    tid, _ = await seed(uow)
    charts = ChartData(uow, FrozenClock(NOW))
    posts = render.posts_png(await charts.posts(actor(tid), "30d"))
    assert png_size(posts) == (1000, 900)
    assert png_size(render.jobs_png(await charts.jobs(actor(tid), "24h"))) == (1000, 500)
    assert png_size(render.claims_png(await charts.claims(actor(tid), "7d"))) == (1000, 500)
    empty = await charts.posts(actor(tid + 1), "7d")
    assert png_size(render.posts_png(empty)) == (1000, 900)
