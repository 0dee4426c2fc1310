"""Captions (the plain-text summary screen readers get) and period buttons of the charts."""

from __future__ import annotations

from aiogram.types import InlineKeyboardMarkup

from bot.callbacks import ChartAct
from bot.render.common import h, keyboard
from core.charts.series import ClaimSeries, JobSeries, PostSeries

CAPTION_MAX = 1000  # Telegram's caption limit is 1024 characters after entities
TOP = 5
SPAN_NAME = {"24h": "24 hours", "7d": "7 days", "30d": "30 days"}


def _clip(text: str) -> str:
    return text if len(text) <= CAPTION_MAX else text[: CAPTION_MAX - 1] + "…"


def _leaders(series: dict[str, list[int]], prefix: str = "") -> str:
    ranked = sorted(((sum(v), k) for k, v in series.items()), key=lambda t: (-t[0], t[1]))
    shown = ", ".join(f"{h(prefix + k)} {n}" for n, k in ranked[:TOP])
    more = f" and {len(ranked) - TOP} more" if len(ranked) > TOP else ""
    return shown + more


def posts_caption(series: PostSeries, span: str) -> str:
    lines = [f"<b>Reddit posts, last {SPAN_NAME[span]}</b>: {series.total} published"]
    if series.total:
        best = max(range(len(series.days)), key=lambda i: series.score[i])
        lines += [
            f"By account: {_leaders(series.by_account, 'u/')}",
            f"By subreddit: {_leaders(series.by_subreddit, 'r/')}",
            f"Score {sum(series.score)}, comments {sum(series.comments)}; "
            f"best day {series.days[best]:%d %b} (score {series.score[best]})",
        ]
    return _clip("\n".join(lines))


def jobs_caption(series: JobSeries, span: str) -> str:
    peak = max(range(len(series.hours)), key=lambda i: series.depth[i])
    return _clip(
        f"<b>Job queue, last {SPAN_NAME[span]}</b> (UTC hours)\n"
        f"Waiting or running now: {series.depth[-1]}; most: {series.depth[peak]} "
        f"at {series.hours[peak]:%d %b %H:00}\n"
        f"Failures: {sum(series.failures)}"
    )


def claims_caption(series: ClaimSeries, span: str) -> str:
    lines = [f"<b>Vault claims, last {SPAN_NAME[span]}</b>: {series.total} delivered"]
    if series.total:
        lines.append(f"By link: {_leaders(series.by_link)}")
    return _clip("\n".join(lines))


def period_buttons(act: str, spans: tuple[str, ...], current: str) -> InlineKeyboardMarkup | None:
    return keyboard(
        [
            [
                (("· " if s == current else "") + SPAN_NAME[s], ChartAct(act=act, span=s).pack())
                for s in spans
            ]
        ]
    )
