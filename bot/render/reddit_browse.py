"""/browse: a subreddit listing page and one post with its top comments."""

from __future__ import annotations

from datetime import datetime

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.callbacks import BrowseOpen, BrowsePage, ReplyTo
from bot.render.common import clip, h, shorten
from core.reddit.thread_models import Comment, ThreadPost
from core.reddit_ops.browse import BrowsePage as Page
from core.reddit_ops.browse import ThreadView

SELFTEXT_MAX = 1500
COMMENT_MAX = 350


def age(created_utc: float | None, now: datetime) -> str:
    if created_utc is None:
        return "?"
    seconds = max(0, int(now.timestamp() - created_utc))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return "just now"


def _meta(p: ThreadPost, now: datetime) -> str:
    post = p.post
    flair = f" · [{h(shorten(post.link_flair_text, 30))}]" if post.link_flair_text else ""
    flags = ("🔞 " if post.over_18 else "") + ("🔒 " if p.locked or p.archived else "")
    return (
        f"{flags}⬆ {post.score} · 💬 {post.num_comments} · {age(post.created_utc, now)}"
        f" · u/{h(post.author)}{flair}"
    )


def listing(page: Page) -> tuple[str, InlineKeyboardMarkup]:
    now = page.fetched_at
    lines = [
        f"<b>r/{h(page.subreddit)}</b> · {page.sort} · page {page.page + 1} "
        f"<i>(read as u/{h(page.reader)})</i>",
        "",
    ]
    if not page.posts:
        lines.append("No posts here." if page.page == 0 else "No more posts.")
    for n, p in enumerate(page.posts, start=page.first_number):
        lines.append(f"{n}. <b>{h(shorten(p.post.title, 140))}</b>")
        lines.append(f"    {_meta(p, now)}")
    rows: list[list[InlineKeyboardButton]] = []
    opens = [
        InlineKeyboardButton(
            text=str(n),
            callback_data=BrowseOpen(id=p.post.id, sr=page.subreddit, sort=page.sort).pack(),
        )
        for n, p in enumerate(page.posts, start=page.first_number)
    ]
    rows.extend(opens[i : i + 4] for i in range(0, len(opens), 4))
    nav = []
    if page.page > 0:
        nav.append(
            InlineKeyboardButton(
                text="⏮ First",
                callback_data=BrowsePage(sr=page.subreddit, sort=page.sort).pack(),
            )
        )
    if page.after:
        nav.append(
            InlineKeyboardButton(
                text="Next ▶",
                callback_data=BrowsePage(
                    sr=page.subreddit, sort=page.sort, page=page.page + 1, after=page.after
                ).pack(),
            )
        )
    if nav:
        rows.append(nav)
    return clip("\n".join(lines)), InlineKeyboardMarkup(inline_keyboard=rows)


def reply_rows(view: ThreadView, sr: str) -> list[list[InlineKeyboardButton]]:
    """Reply to the post, or to one of the top comments (none when the thread is closed)."""
    p = view.thread.post
    if p.closed_reason or not p.post.fullname:
        return []
    rows = [
        [
            InlineKeyboardButton(
                text="💬 Reply to the post",
                callback_data=ReplyTo.of(p.post.fullname, sr).pack(),
            )
        ]
    ]
    to_comments = [
        InlineKeyboardButton(text=f"↩ {n}", callback_data=ReplyTo.of(c.fullname, sr).pack())
        for n, c in enumerate(view.thread.comments, start=1)
        if c.fullname and not c.deleted
    ]
    if to_comments:
        rows.append(to_comments)
    return rows


def _comment(n: int, c: Comment, now: datetime) -> str:
    body = "<i>deleted</i>" if c.deleted else h(shorten(c.body, COMMENT_MAX))
    return f"{n}. u/{h(c.author)} · ⬆ {c.score} · {age(c.created_utc, now)}\n{body}"


def thread(
    view: ThreadView, sr: str, sort: str, reply_rows: list[list[InlineKeyboardButton]]
) -> tuple[str, InlineKeyboardMarkup]:
    t, reader, now = view.thread, view.reader, view.fetched_at
    p = t.post
    post = p.post
    parts = [
        f"<b>{h(post.title)}</b>",
        f"r/{h(post.subreddit)} · {_meta(p, now)}",
    ]
    if not post.is_self and post.url:
        parts.append(h(post.url))
    if p.selftext and not p.gone:
        text = p.selftext
        if len(text) > SELFTEXT_MAX:
            text = text[: SELFTEXT_MAX - 1] + "…"
        parts.append("\n" + h(text))
    closed = p.closed_reason
    if closed:
        parts.append(f"\n🔒 No replies possible: {closed}.")
    parts.append("\n<b>Top comments</b>" if t.comments else "\nNo comments yet.")
    parts.extend(_comment(n, c, now) for n, c in enumerate(t.comments, start=1))
    parts.append(f"\n<i>read as u/{h(reader)}</i>")
    rows = list(reply_rows)
    link = post.permalink_url
    nav = [
        InlineKeyboardButton(
            text="⬅ Back to the list", callback_data=BrowsePage(sr=sr, sort=sort).pack()
        )
    ]
    if link:
        nav.append(InlineKeyboardButton(text="Open on Reddit", url=link))
    rows.append(nav)
    return clip("\n".join(parts)), InlineKeyboardMarkup(inline_keyboard=rows)
