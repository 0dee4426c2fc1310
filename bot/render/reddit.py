"""Reddit accounts and posts as chat messages: lists, cards, the compose preview."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.callbacks import RedditAccountAct, RedditCompose, RedditPostAct
from bot.render.common import clip, h, keyboard, shorten
from core.actor import Actor
from core.reddit_ops import AccountView, PacingDecision, PostView, PreflightReport
from core.reddit_ops.fate import fate
from core.reddit_ops.listing import ListedEntry
from core.timefmt import fmt
from storage.models import Role

STATUS_ICON = {
    "active": "🟢",
    "paused": "⏸",
    "suspended": "⛔",
    "auth_failed": "🔑",
}
AUTH_KIND = {"script": "script app", "refresh_token": "refresh token", "none": "no credentials"}


def _status(status: str) -> str:
    return f"{STATUS_ICON.get(status, '•')} {status.replace('_', ' ')}"


def account_list(accounts: list[AccountView]):
    if not accounts:
        return (
            "<b>Reddit accounts</b>\nNone connected yet. Connect one with /accounts add.",
            None,
        )
    lines = ["<b>Reddit accounts</b>"]
    rows = []
    for a in accounts:
        dry = " · dry run" if a.dry_run else ""
        lines.append(f"• u/{h(a.username)} · {_status(a.status)}{dry}")
        rows.append([(f"u/{a.username}", RedditAccountAct(act="card", id=a.id).pack())])
    lines.append("\nTap an account for its card; connect another with /accounts add.")
    return clip("\n".join(lines)), keyboard(rows)


def account_text(a: AccountView, tz: str) -> str:
    reason = f" — {h(a.status_reason)}" if a.status_reason else ""
    dry = "yes" + ("" if a.has_credentials else " (no credentials)") if a.dry_run else "no"
    pacing = f"{a.posts_per_day or 'no limit'} posts/day · {a.min_gap_minutes} min between posts"
    karma = (
        f"{a.link_karma} link · {a.comment_karma} comment"
        if a.link_karma is not None or a.comment_karma is not None
        else "—"
    )
    lines = [
        f"<b>u/{h(a.username)}</b> (#{a.id})",
        f"Status: {_status(a.status)}{reason}",
        f"Login: {AUTH_KIND.get(a.auth_kind, h(a.auth_kind))}",
    ]
    if a.has_credentials:
        lines.append(f"App id: <code>{h(a.client_id or '—')}</code>")
        lines.append(f"App secret: <code>{h(a.client_secret)}</code>")
        if a.auth_kind == "script":
            lines.append(f"Password: <code>{h(a.password)}</code>")
        else:
            lines.append(f"Refresh token: <code>{h(a.refresh_token)}</code>")
    lines += [
        f"Dry run: {dry}",
        f"Pacing: {pacing}",
        f"Last check: {fmt(a.last_check_at, tz)}",
        f"Karma: {karma}",
    ]
    return "\n".join(lines)


def account_card(a: AccountView, actor: Actor):
    rows: list[list[tuple[str, str]]] = []
    if actor.at_least(Role.operator):
        row = [("Check now", RedditAccountAct(act="check", id=a.id).pack())]
        if a.status == "active":
            row.append(("Pause", RedditAccountAct(act="pause", id=a.id).pack()))
        else:
            row.append(("Resume", RedditAccountAct(act="resume", id=a.id).pack()))
        rows.append(row)
        rows.append(
            [
                ("Backfill history", RedditAccountAct(act="backfill", id=a.id).pack()),
                ("Refresh stats", RedditAccountAct(act="stats", id=a.id).pack()),
                ("Inbox", RedditAccountAct(act="inbox", id=a.id).pack()),
            ]
        )
    if actor.at_least(Role.owner):
        rows.append([("Remove", RedditAccountAct(act="remove", id=a.id).pack())])
    rows.append([("« Accounts", RedditAccountAct(act="list").pack())])
    return clip(account_text(a, actor.timezone)), keyboard(rows)


def remove_confirm(a: AccountView):
    text = (
        f"Remove u/{h(a.username)}? Its tokens are revoked on Reddit, and its stored secrets, "
        "queued posts, inbox and history in Opsdeck are deleted (its posts stay on Reddit)."
    )
    return text, keyboard(
        [
            [
                ("Yes, remove", RedditAccountAct(act="remove_yes", id=a.id).pack()),
                ("No", RedditAccountAct(act="card", id=a.id).pack()),
            ]
        ]
    )


# -- posts ------------------------------------------------------------------------------------


def post_text(p: PostView, tz: str) -> str:
    marks = []
    if p.nsfw:
        marks.append("NSFW")
    if p.spoiler:
        marks.append("spoiler")
    if p.flair_text or p.flair_id:
        marks.append(f"flair: {h(p.flair_text or p.flair_id)}")
    if p.kind == "comment":
        lines = [
            f"<b>💬 Comment #{p.id}</b> · u/{h(p.username or '?')} → r/{h(p.subreddit)}",
            f"↩ on “{h(shorten(p.title, 120))}”" + (f" ({h(p.url)})" if p.url else ""),
            h(shorten(p.body, 400)),
        ]
    else:
        lines = [
            f"<b>Post #{p.id}</b> · u/{h(p.username or '?')} → r/{h(p.subreddit)} · {h(p.kind)}",
            f"<b>{h(p.title)}</b>",
        ]
    if p.kind == "comment":
        pass
    elif p.kind == "link" and p.url:
        lines.append(h(p.url))
    elif p.kind == "image" and p.has_image:
        where = f"vault item #{p.vault_item_id}" if p.vault_item_id is not None else "uploaded"
        lines.append(f"🖼 {h(p.image_name or 'image')} ({where})")
    elif p.body:
        lines.append(h(shorten(p.body, 400)))
    if marks:
        lines.append(" · ".join(marks))
    lines.append(f"Status: {p.status.replace('_', ' ')}")
    if p.scheduled_for is not None and p.status not in ("published", "cancelled"):
        lines.append(f"When: {fmt(p.scheduled_for, tz)}")
    if p.pacing_note:
        lines.append(f"⏩ Moved by pacing: {h(p.pacing_note)}")
    if p.permalink:
        dry = " (dry run: nothing was sent)" if p.dry_run else ""
        lines.append(f"Published: {h(p.permalink)}{dry}")
    if p.status == "published" and not p.dry_run:
        lines.append(f"On Reddit: {h(fate(p))}")
    if p.last_error_message and p.status in ("failed", "cancelled"):
        lines.append(f"Why: {h(p.last_error_message)}")
    return "\n".join(lines)


def preview(
    p: PostView, report: PreflightReport, decision: PacingDecision, when: datetime, tz: str
):
    lines = ["<b>Preview</b>", post_text(p, tz), ""]
    lines.append(f"Goes out: {fmt(decision.scheduled_for, tz)}")
    if decision.moved and decision.reason:
        lines.append(f"⏩ Moved by pacing: {h(decision.reason)}")
    findings = list(report.findings)
    if findings:
        lines.append("<b>Pre-flight</b>")
        for f in findings:
            icon = {"error": "❌", "warn": "⚠️", "ok": "✅"}.get(str(f.level), "•")
            lines.append(f"{icon} {h(f.text)}")
    else:
        lines.append("Pre-flight: ✅ nothing to fix")
    blocked = any(str(f.level) == "error" for f in findings)
    rows: list[list[tuple[str, str]]] = []
    if blocked:
        lines.append("\nFix the errors (Edit) or cancel.")
    else:
        rows.append(
            [
                ("Queue", RedditPostAct(act="queue", id=p.id).pack()),
                ("Send for approval", RedditPostAct(act="approval", id=p.id).pack()),
            ]
        )
    rows.append(
        [
            ("Edit", RedditPostAct(act="edit", id=p.id).pack()),
            ("Cancel", RedditPostAct(act="cancel", id=p.id).pack()),
        ]
    )
    return clip("\n".join(lines)), keyboard(rows)


def post_card(p: PostView, actor: Actor):
    rows: list[list[tuple[str, str]]] = []
    if actor.at_least(Role.operator) and p.status in ("pending_approval", "queued", "draft"):
        if p.status == "pending_approval":
            rows.append(
                [
                    ("Approve", RedditPostAct(act="approve", id=p.id).pack()),
                    ("Reject", RedditPostAct(act="reject", id=p.id).pack()),
                ]
            )
        rows.append(
            [
                ("Post now", RedditPostAct(act="now", id=p.id).pack()),
                ("Reschedule", RedditPostAct(act="resched", id=p.id).pack()),
                ("Cancel", RedditPostAct(act="cancel", id=p.id).pack()),
            ]
        )
        if p.kind != "comment":  # a reply is cancelled and written again, not edited
            rows.append([("Edit", RedditPostAct(act="edit", id=p.id).pack())])
    return clip(post_text(p, actor.timezone)), keyboard(rows)


EDIT_FIELDS = {
    "title": "Title",
    "body": "Text / link / picture",
    "flair": "Flair",
    "flags": "NSFW / spoiler",
    "when": "Time",
}


def edit_menu(p: PostView):
    """What to change in a post: one button per step of /post."""
    labels = dict(EDIT_FIELDS)
    labels["body"] = {"link": "Link", "image": "Picture"}.get(p.kind, "Text")
    rows = [[(label, RedditCompose(step="edit", val=key).pack())] for key, label in labels.items()]
    text = f"Edit post #{p.id}: what should change?\n/cancel stops."
    return text, keyboard(rows)


def edited_card(p: PostView, report: PreflightReport, actor: Actor):
    """A queued post's card after an edit, with the pre-flight run again."""
    text, markup = post_card(p, actor)
    lines = ["Saved.", text]
    findings = [f for f in report.findings if str(f.level) != "ok"]
    if findings:
        lines.append("<b>Pre-flight</b>")
        for f in findings:
            icon = {"error": "❌", "warn": "⚠️"}.get(str(f.level), "•")
            lines.append(f"{icon} {h(f.text)}")
    else:
        lines.append("Pre-flight: ✅ nothing to fix")
    return clip("\n".join(lines)), markup


def upcoming_list(posts: list[PostView], actor: Actor):
    if not posts:
        return "<b>Upcoming Reddit posts</b>\nNothing queued. Compose one with /post.", None
    lines = ["<b>Upcoming Reddit posts</b>"]
    rows = []
    by_account: dict[str, list[PostView]] = {}
    for p in posts:
        by_account.setdefault(p.username or "?", []).append(p)
    for name, items in by_account.items():
        lines.append(f"\n<b>u/{h(name)}</b>")
        for p in items:
            when = fmt(p.scheduled_for, actor.timezone)
            state = "" if p.status == "queued" else f" · {p.status.replace('_', ' ')}"
            what = "💬 " if p.kind == "comment" else ""
            lines.append(
                f"• #{p.id} {when} → r/{h(p.subreddit)}: {what}{h(shorten(p.title, 50))}{state}"
            )
            rows.append(
                [(f"#{p.id} {shorten(p.title, 30)}", RedditPostAct(act="card", id=p.id).pack())]
            )
    return clip("\n".join(lines)), keyboard(rows)


# The button that opens an entry of `/posts published|all`, per kind of entry.
ENTRY_CARD: dict[str, Callable[[int], str]] = {
    "post": lambda entry_id: RedditPostAct(act="card", id=entry_id).pack(),
    "comment": lambda entry_id: RedditPostAct(act="card", id=entry_id).pack(),  # /reply
}
HISTORY_TITLE = {"published": "Published on Reddit", "all": "Reddit posts"}


def history_list(entries: list[ListedEntry], which: str, actor: Actor):
    """`/posts published|all`: newest first, each with what became of it on Reddit."""
    title = f"<b>{HISTORY_TITLE.get(which, 'Reddit posts')}</b>"
    if not entries:
        return f"{title}\nNothing yet. Compose a post with /post.", None
    lines = [title]
    rows = []
    for e in entries:
        when = fmt(e.at, actor.timezone)
        what = "💬 " if e.kind == "comment" else ""
        lines.append(
            f"• #{e.id} {when} u/{h(e.username or '?')} → r/{h(e.subreddit)}: "
            f"{what}{h(shorten(e.text, 50) or '(deleted)')}\n  {h(e.state)}"
        )
        card = ENTRY_CARD.get(e.kind)
        if card is not None:
            rows.append([(f"#{e.id} {shorten(e.text, 30) or e.kind}", card(e.id))])
    lines.append("\n/posts — upcoming · /posts published · /posts all")
    return clip("\n".join(lines)), keyboard(rows)
