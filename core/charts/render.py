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
from matplotlib.ticker import MaxNLocator

from core.charts.series import ClaimSeries, JobSeries, PostSeries

WIDTH_PX = 1000
DPI = 100
MAX_TICKS = 8  # date labels per axis
MAX_SERIES = 8  # more stacked colours than this is unreadable: the rest becomes "other"


def _top(series: dict[str, list[int]], n: int) -> dict[str, list[int]]:
    ranked = sorted(series.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    if len(ranked) <= MAX_SERIES:
        return dict(ranked)
    kept = dict(ranked[: MAX_SERIES - 1])
    kept["other"] = [sum(v[i] for _, v in ranked[MAX_SERIES - 1 :]) for i in range(n)]
    return kept


def _day_ticks(ax, labels: Sequence[str]) -> None:
    step = max(1, len(labels) // MAX_TICKS)  # text is the costliest thing to draw
    ticks = list(range(len(labels)))[::-1][::step][::-1]  # always today's
    ax.set_xticks(ticks, [labels[i] for i in ticks], fontsize=8)


def _stacked(ax, series: dict[str, list[int]], n: int, title: str) -> None:
    """Stacked areas (one polygon per series, not one rectangle per day: far cheaper)."""
    x = range(n)
    bottom = [0] * n
    for name, values in _top(series, n).items():
        top = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.fill_between(x, bottom, top, step="mid", label=name, linewidth=0)
        bottom = top
    ax.set_title(title, loc="left", fontsize=11)
    if series:
        ax.legend(fontsize=8, loc="upper left", ncols=4)
    else:
        ax.text(0.5, 0.5, "nothing in this period", ha="center", transform=ax.transAxes)
    ax.set_ylim(0, max(max(bottom, default=0), 1) * 1.35)  # room for the legend
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", alpha=0.3)


def _figure(height_in: float) -> Figure:
    # fixed margins rather than a layout engine: constrained layout draws everything twice
    fig = Figure(figsize=(WIDTH_PX / DPI, height_in), dpi=DPI)
    fig.subplots_adjust(left=0.06, right=0.98, top=1 - 0.45 / height_in, bottom=0.6 / height_in)
    return fig


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def posts_png(series: PostSeries) -> bytes:
    """Three panels: posts per day by account, by subreddit, then score and comments."""
    fig = _figure(9)
    labels = [d.strftime("%d %b") for d in series.days]
    n = len(labels)
    top, middle, bottom = fig.subplots(3, 1, sharex=True, gridspec_kw={"hspace": 0.3})
    _stacked(top, series.by_account, n, "Posts per day by account")
    _stacked(middle, series.by_subreddit, n, "Posts per day by subreddit")
    x = range(n)
    bottom.plot(x, series.score, marker="o", label="score")
    bottom.plot(x, series.comments, marker="s", label="comments")
    bottom.set_title("Score and comments of the day's posts", loc="left", fontsize=11)
    bottom.legend(fontsize=8, loc="upper left")
    bottom.grid(alpha=0.3)
    _day_ticks(bottom, labels)
    return _png(fig)


def jobs_png(series: JobSeries) -> bytes:
    """Queue depth (line) and failures (shaded) per UTC hour."""
    fig = _figure(5)
    ax = fig.subplots()
    x = range(len(series.hours))
    ax.fill_between(x, 0, series.failures, step="mid", color="tab:red", alpha=0.5,
                    linewidth=0, label="failures in the hour")  # fmt: skip
    ax.plot(x, series.depth, color="tab:blue", label="waiting or running at the hour's end")
    step = 24 if len(series.hours) > 24 else 3  # days over a week, every 3 hours over a day
    ticks = [i for i in x if series.hours[i].hour % step == 0]
    fmt = "%H:%M" if len(series.hours) <= 24 else "%d %b %H:%M"
    ax.set_xticks(ticks, [series.hours[i].strftime(fmt) for i in ticks], fontsize=8)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # jobs come whole
    ax.set_title("Job queue (UTC hours)", loc="left", fontsize=11)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return _png(fig)


def claims_png(series: ClaimSeries) -> bytes:
    """Deliveries per day, stacked by claim link."""
    fig = _figure(5)
    labels = [d.strftime("%d %b") for d in series.days]
    ax = fig.subplots()
    _stacked(ax, series.by_link, len(labels), "Claims per day by link")
    _day_ticks(ax, labels)
    return _png(fig)
