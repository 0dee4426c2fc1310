"""/reply: who and what a comment answers, and its preview before it is queued."""

from __future__ import annotations

from aiogram.types import InlineKeyboardMarkup

from bot.callbacks import RedditPostAct, ReplyAccount, ReplyWhen
from bot.render.common import clip, h, keyboard, shorten
from core.reddit_ops.comments import ReplyTarget
from core.reddit_ops.pacing import PacingDecision
from core.reddit_ops.when import WHEN_PRESETS
from core.timefmt import fmt
from storage.reddit_models import RedditAccount

CANCEL_HINT = "\n/cancel stops."


def pick_account(accounts: list[RedditAccount]) -> tuple[str, InlineKeyboardMarkup | None]:
    rows = [
        [(f"u/{a.username}" + (" (dry run)" if a.is_dry_run else ""), ReplyAccount(id=a.id).pack())]
        for a in accounts
    ]
    return "Which account replies?" + CANCEL_HINT, keyboard(rows)


def target_text(target: ReplyTarget, username: str) -> str:
    if not target.checked:
        return (
            f"u/{h(username)} will reply to {h(target.thing_id)} in r/{h(target.subreddit)} "
            "(not checked with Reddit: no account can read it; dry run only).\n\n"
            "Send the comment's text (markdown)." + CANCEL_HINT
        )
    what = "comment" if target.thing_id.startswith("t1_") else "post"
    excerpt = f"\n<blockquote>{h(target.parent_text)}</blockquote>" if target.parent_text else ""
    return (
        f"u/{h(username)} replies to the {what} by u/{h(target.parent_author)} in "
        f"r/{h(target.subreddit)} on “{h(shorten(target.post_title, 120))}”:{excerpt}\n"
        "Send the comment's text (markdown: **bold**, *italic*, [links](https://…), > quotes)."
        + CANCEL_HINT
    )


def ask_when(tz: str) -> tuple[str, InlineKeyboardMarkup | None]:
    rows = [[(p, ReplyWhen(i=i).pack())] for i, p in enumerate(WHEN_PRESETS)]
    return (
        f"When? Pick one or type a time in your timezone ({h(tz)}), e.g. 18:30, +2h." + CANCEL_HINT,
        keyboard(rows),
    )


def preview(
    post_id: int,
    username: str,
    target: ReplyTarget,
    body: str,
    decision: PacingDecision,
    tz: str,
) -> tuple[str, InlineKeyboardMarkup | None]:
    when = fmt(decision.scheduled_for, tz)
    moved = (
        f"\n↪ Pacing moves it: {h(decision.reason)}" if decision.moved and decision.reason else ""
    )
    note = "" if target.checked else "\n⚠️ Not checked with Reddit (dry run)."
    text = (
        f"💬 <b>Preview</b> — comment #{post_id} as u/{h(username)} in r/{h(target.subreddit)}\n"
        f"Replying to {'a comment' if target.thing_id.startswith('t1_') else 'the post'} "
        f"on “{h(shorten(target.post_title, 120))}”"
        + (f" ({h(target.permalink)})" if target.permalink else "")
        + f"\n\n<pre>{h(body)}</pre>\n\nWhen: {when}{moved}{note}"
    )
    rows = [
        [
            ("✅ Queue", RedditPostAct(act="queue", id=post_id).pack()),
            ("🙋 Send for approval", RedditPostAct(act="approval", id=post_id).pack()),
        ],
        [("✖ Cancel", RedditPostAct(act="cancel", id=post_id).pack())],
    ]
    return clip(text), keyboard(rows)
