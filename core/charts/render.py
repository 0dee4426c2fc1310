"""Pictures of the chart series: PNG bytes drawn with matplotlib's Agg backend.

CPU-bound and blocking: callers run these in a worker thread (`asyncio.to_thread`). Each
call builds its own `Figure` (no pyplot, no global state), so threads never share one.
Fonts are matplotlib's bundled DejaVu: nothing is fetched.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # before anything else of matplotlib: never a GUI backend

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.charts.series import ClaimSeries, JobSeries, PostSeries

WIDTH_PX = 1000
DPI = 100
MAX_SERIES = 8  # more stacked colours than this is unreadable: the rest becomes "other"


def _top(series: dict[str, list[int]], n: int) -> dict[str, list[int]]:
    ranked = sorted(series.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    if len(ranked) <= MAX_SERIES:
        return dict(ranked)
    kept = dict(ranked[: MAX_SERIES - 1])
    kept["other"] = [sum(v[i] for _, v in ranked[MAX_SERIES - 1 :]) for i in range(n)]
    return kept


def _stacked(ax, labels: Sequence[str], series: dict[str, list[int]], title: str) -> None:
    x = range(len(labels))
    bottom = [0] * len(labels)
    for name, values in _top(series, len(labels)).items():
        ax.bar(x, values, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_xticks(list(x), labels, rotation=90 if len(labels) > 10 else 0, fontsize=8)
    if series:
        ax.legend(fontsize=8, loc="upper left", ncols=2)
    else:
        ax.text(0.5, 0.5, "nothing in this period", ha="center", transform=ax.transAxes)
    ax.grid(axis="y", alpha=0.3)


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def posts_png(series: PostSeries) -> bytes:
    """Three panels: posts per day by account, by subreddit, then score and comments."""
    fig = Figure(figsize=(WIDTH_PX / DPI, 9), dpi=DPI, layout="constrained")
    labels = [d.strftime("%d %b") for d in series.days]
    top, middle, bottom = fig.subplots(3, 1)
    _stacked(top, labels, series.by_account, "Posts per day by account")
    _stacked(middle, labels, series.by_subreddit, "Posts per day by subreddit")
    x = range(len(labels))
    bottom.plot(x, series.score, marker="o", label="score")
    bottom.plot(x, series.comments, marker="s", label="comments")
    bottom.set_title("Score and comments of the day's posts", loc="left", fontsize=11)
    bottom.set_xticks(list(x), labels, rotation=90 if len(labels) > 10 else 0, fontsize=8)
    bottom.legend(fontsize=8, loc="upper left")
    bottom.grid(alpha=0.3)
    return _png(fig)


def jobs_png(series: JobSeries) -> bytes:
    """Queue depth (line) and failures (bars) per UTC hour."""
    fig = Figure(figsize=(WIDTH_PX / DPI, 5), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    x = range(len(series.hours))
    ax.bar(x, series.failures, color="tab:red", alpha=0.6, label="failures in the hour")
    ax.plot(x, series.depth, color="tab:blue", label="waiting or running at the hour's end")
    step = max(1, len(series.hours) // 12)
    ticks = list(x)[::step]
    fmt = "%H:%M" if len(series.hours) <= 24 else "%d %b %H:%M"
    ax.set_xticks(ticks, [series.hours[i].strftime(fmt) for i in ticks], rotation=45, fontsize=8)
    ax.set_title("Job queue (UTC hours)", loc="left", fontsize=11)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return _png(fig)


def claims_png(series: ClaimSeries) -> bytes:
    """Deliveries per day, stacked by claim link."""
    fig = Figure(figsize=(WIDTH_PX / DPI, 5), dpi=DPI, layout="constrained")
    labels = [d.strftime("%d %b") for d in series.days]
    _stacked(fig.subplots(), labels, series.by_link, "Claims per day by link")
    return _png(fig)
