"""Charts: drawing /stats for 30 days × 10 accounts, off the event loop, in under a second.

    python -m bench.charts_bench              # 10 accounts × 30 days × 4 posts a day
    python -m bench.charts_bench --rounds 3   # fewer rounds, for a smoke run

A fresh SQLite file is migrated and seeded with published posts (10 accounts, 12
subreddits, 4 posts per account per day over 30 days). Then, per round:

* **query** — `ChartData.posts(actor, "30d")`: the lock-free read and the bucketing;
* **render** — `core.charts.render.posts_png` of that series in a worker thread
  (`asyncio.to_thread`, as the handler does), while a ticker on the loop measures how late
  it wakes (the loop must stay free while matplotlib draws);
* **CPU** — the worker thread's own CPU seconds (`time.thread_time`) for both, which the
  load of other processes does not inflate;
* **baseline** — the same-size figure with matplotlib's minimal plot of the same number of
  points (one `plot` line, default everything), also off the loop: the floor of
  matplotlib's figure-to-PNG cost on this machine.

Reported: medians, render / baseline, the worst loop lag, the load average. The first
render (matplotlib's import, font cache) is reported apart and not in the medians.
Exits 1 when the median render takes 1 s or more (issue 15's target).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from core.actor import Actor
from core.charts.series import ChartData
from core.clock import SystemClock
from storage import migrate
from storage.db import create_engine
from storage.models import Role, Tenant
from storage.reddit_models import RedditAccount, RedditPost
from storage.uow import UnitOfWork

TARGET_SECONDS = 1.0
ACCOUNTS, DAYS, PER_DAY, SUBREDDITS = 10, 30, 4, 12


async def seed(uow: UnitOfWork) -> int:
    now = SystemClock().now()
    async with uow.write() as s:
        tenant = Tenant(slug="bench", name="bench", created_at=now)
        s.add(tenant)
        await s.flush()
        accounts = [
            RedditAccount(tenant_id=tenant.id, username=f"account_{n}",
                          username_key=f"account_{n}", auth_kind="none", status="active",
                          created_at=now, updated_at=now)
            for n in range(ACCOUNTS)
        ]  # fmt: skip
        s.add_all(accounts)
        await s.flush()
        n = 0
        for a in accounts:
            for day in range(DAYS):
                for k in range(PER_DAY):
                    n += 1
                    sub = f"sub_{n % SUBREDDITS}"
                    s.add(
                        RedditPost(tenant_id=tenant.id, account_id=a.id, subreddit=sub,
                                   subreddit_key=sub, kind="self", title="t",
                                   status="published",
                                   published_at=now - timedelta(days=day, hours=k * 3),
                                   score=n % 97, num_comments=n % 13, created_at=now,
                                   updated_at=now)
                    )  # fmt: skip
        return tenant.id


def baseline_png(points: int) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 9), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots().plot(range(points), [i % 7 for i in range(points)])
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    return out.getvalue()


def timed_cpu(fn, *args) -> tuple[float, bytes]:
    """(CPU seconds this thread spent, result): what the load of other processes can't inflate."""
    start = time.thread_time()
    result = fn(*args)
    return time.thread_time() - start, result


async def off_loop(fn, *args) -> tuple[float, float, float, bytes]:
    """Run fn in a worker thread; (seconds, CPU seconds, worst loop lag in seconds, result)."""
    lag, stop = 0.0, asyncio.Event()

    async def ticker() -> None:
        nonlocal lag
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lag = max(lag, time.perf_counter() - t - 0.005)

    tick = asyncio.create_task(ticker())
    start = time.perf_counter()
    cpu, result = await asyncio.to_thread(timed_cpu, fn, *args)
    took = time.perf_counter() - start
    stop.set()
    await tick
    return took, cpu, lag, result


async def main(rounds: int) -> int:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        await migrate.upgrade(engine)
        uow = UnitOfWork(engine)
        try:
            tid = await seed(uow)
            actor = Actor(operator_id=1, user_id=1, tenant_id=tid, role=Role.viewer)
            charts = ChartData(uow, SystemClock())
            from core.charts import render  # timed apart: matplotlib's import

            t = time.perf_counter()
            series = await charts.posts(actor, "30d")
            cold, _, _, _ = await off_loop(render.posts_png, series)
            cold += time.perf_counter() - t
            points = sum(len(v) for v in series.by_account.values())
            _, _, idle_lag, _ = await off_loop(time.sleep, 1.0)  # the machine's own lag
            queries, renders, baselines, lags, cpus = [], [], [], [], []
            for _ in range(rounds):
                t = time.perf_counter()
                series = await charts.posts(actor, "30d")
                queries.append(time.perf_counter() - t)
                took, cpu, lag, png = await off_loop(render.posts_png, series)
                renders.append(took)
                cpus.append(cpu)
                lags.append(lag)
                took, cpu, lag, _ = await off_loop(baseline_png, points)
                baselines.append(took)
                cpus.append(cpu)
                lags.append(lag)
        finally:
            await uow.dispose()
            await engine.dispose()
    render_s, base_s = statistics.median(renders), statistics.median(baselines)
    query_s = statistics.median(queries)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"posts: {series.total} over {len(series.days)} days, {len(series.by_account)} "
          f"accounts, {len(series.by_subreddit)} subreddits; PNG {len(png):,} bytes")  # fmt: skip
    print(f"first render (import, font cache, query): {cold:.3f} s")
    print(f"query median {query_s * 1000:.1f} ms over {rounds} rounds")
    print(f"render median {render_s:.3f} s (off the loop), baseline {base_s:.3f} s "
          f"→ {render_s / base_s:.2f}× the minimal plot of {points} points")  # fmt: skip
    print(f"CPU in the worker: render median {statistics.median(cpus[::2]):.3f} s, baseline "
          f"{statistics.median(cpus[1::2]):.3f} s")  # fmt: skip
    print(f"worst loop lag while drawing: {max(lags) * 1000:.1f} ms; over 1 s of a worker "
          f"only sleeping: {idle_lag * 1000:.1f} ms")  # fmt: skip
    print(f"load average before {' '.join(f'{x:.2f}' for x in load_before)}, after {load}")
    ok = render_s < TARGET_SECONDS
    print(("PASS" if ok else "FAIL") + f": render {render_s:.3f} s vs target < {TARGET_SECONDS} s")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    sys.exit(asyncio.run(main(parser.parse_args().rounds)))
