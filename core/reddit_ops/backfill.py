"""Backfills: submission history, stats of recent posts, the inbox.

Each job works on one account, reads Reddit page by page through the account's client (so it
shares the OAuth client id's rate budget with everything else), commits after every page with
the listing cursor, and resumes from that cursor when it is run again after a failure.
Progress goes to the optional `progress` dependency (the bot edits one message with it).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from core.jobs.context import JobContext
from core.reddit import InboxMessage, RedditClient, RedditError, Submission
from core.reddit.client import INFO_BATCH, LISTING_MAX
from core.reddit_ops.clients import RedditClients
from core.reddit_ops.common import (
    DEP_CLIENTS,
    INBOX,
    REFRESH_STATS,
    job_uow,
    report_progress,
    short,
)
from core.reddit_ops.fate import NOT_VISIBLE, is_author_deletion, removal_words
from core.reddit_ops.health import fan_out
from core.services.audit import record
from storage.reddit_models import (
    AccountStatus,
    PostKind,
    PostSource,
    PostStatus,
    RedditAccount,
    RedditPost,
)
from storage.repositories import reddit as repo

SUBMITTED_CURSOR = "submitted"
INBOX_CURSOR = "inbox"
DEFAULT_STATS_DAYS = 7
INBOX_SHOWN = 5
STATS_SHOWN = 15


async def _open(ctx: JobContext, what: str) -> tuple[RedditAccount, RedditClient] | dict[str, Any]:
    """The account and its client, or why the backfill `what` has nothing to do (also said in
    the progress message, which would otherwise keep saying "queued…")."""
    account_id = int(ctx.payload["account_id"])
    async with job_uow(ctx).read() as session:
        account = await repo.get_account(session, account_id, ctx.tenant_id)
    if account is None:
        why = "the account was removed"
        await report_progress(ctx, f"Reddit account #{account_id} {what}: skipped, {why}.")
        return {"skipped": why}
    clients: RedditClients = ctx.dep(DEP_CLIENTS)
    client = await clients.client(account)
    if client is None:
        why = "a dry-run account without credentials has nothing on Reddit"
        await report_progress(ctx, f"u/{account.username} {what}: skipped, {why}.")
        return {"skipped": why}
    return account, client


Job = Callable[[JobContext], Awaitable[dict[str, Any]]]


def _says_when_it_fails(what: str) -> Callable[[Job], Job]:
    """A backfill that Reddit stops (down, login refused, …) says so in its progress message,
    and whether the job engine tries again, instead of leaving the last count standing."""

    def wrap(job: Job) -> Job:
        @functools.wraps(job)
        async def run(ctx: JobContext) -> dict[str, Any]:
            try:
                return await job(ctx)
            except RedditError as exc:
                account_id = int(ctx.payload["account_id"])
                async with job_uow(ctx).read() as session:
                    account = await repo.get_account(session, account_id, ctx.tenant_id)
                who = f"u/{account.username}" if account else f"Reddit account #{account_id}"
                again = (
                    "it is tried again shortly"
                    if ctx.attempt < ctx.max_attempts
                    else "no tries left; see /jobs"
                )
                await report_progress(ctx, f"{who} {what}: stopped, {exc.message}; {again}.")
                raise

        return run

    return wrap


def _utc(timestamp: float | None, fallback: datetime) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp is not None else fallback


# == submission history ==========================================================================


def _history_row(account: RedditAccount, post: Submission, now: datetime) -> dict[str, Any]:
    published = _utc(post.created_utc, now)
    return {
        "tenant_id": account.tenant_id,
        "account_id": account.id,
        "source": PostSource.history,
        "subreddit": post.subreddit[:32],
        "subreddit_key": post.subreddit.lower()[:32],
        "kind": PostKind.self if post.is_self else PostKind.link,
        "title": post.title[:300],
        "body": None,
        "url": None if post.is_self else post.url,
        "vault_item_id": None,
        "image_blob_key": None,
        "image_name": None,
        "image_mime": None,
        "flair_id": None,
        "flair_text": (post.link_flair_text or None) and post.link_flair_text[:64],
        "nsfw": post.over_18,
        "spoiler": post.spoiler,
        "send_replies": True,
        "scheduled_for": None,
        "requested_for": None,
        "pacing_note": None,
        "status": PostStatus.published,
        "requires_approval": False,
        "job_id": None,
        "attempted_at": None,
        "reddit_accepted": False,
        "fullname": post.fullname,
        "permalink": post.permalink_url,
        "dry_run": False,
        "published_at": published,
        "score": post.score,
        "num_comments": post.num_comments,
        "upvote_ratio": post.upvote_ratio,
        "removed_by_category": post.removed_by_category,
        # Removals that happened before we knew the post are history, not news.
        "removal_notified": post.removed_by_category is not None,
        "content_deleted_at": None,
        "last_synced_at": now,
        "last_error_code": None,
        "last_error_message": None,
        "created_by": None,
        "created_at": now,
        "updated_at": now,
    }


@_says_when_it_fails("history")
async def backfill_submissions(ctx: JobContext) -> dict[str, Any]:
    """`reddit.backfill_submissions` (payload `account_id`): import the account's post history.

    Walks `/user/{me}/submitted` newest first with the stored `after` cursor. A run that
    stopped half-way continues where it stopped. Once a full pass is done, later runs start
    from the newest post and stop at the first page that holds nothing new.
    """
    opened = await _open(ctx, "history")
    if isinstance(opened, dict):
        return opened
    account, client = opened
    username = await client.username()
    now = ctx.clock.now()
    async with job_uow(ctx).read() as session:
        cursor = await repo.get_cursor(session, account.id, SUBMITTED_CURSOR)
    resuming = cursor is not None and cursor.cursor is not None
    passes = cursor.passes if cursor is not None else 0
    after = cursor.cursor if resuming and cursor is not None else None
    seen = cursor.progress if resuming and cursor is not None else 0
    started_at = (cursor.started_at if resuming and cursor is not None else None) or now
    incremental = passes > 0 and not resuming
    imported = 0
    pages = 0
    while True:
        page = await client.user_submitted(username, limit=LISTING_MAX, after=after)
        pages += 1
        now = ctx.clock.now()
        rows = [_history_row(account, post, now) for post in page.items if post.fullname]
        async with job_uow(ctx).write() as session:
            inserted = await repo.import_history(session, rows)
            seen += len(page.items)
            done = page.after is None or (incremental and inserted < len(rows))
            await repo.save_cursor(
                session,
                tenant_id=account.tenant_id,
                account_id=account.id,
                kind=SUBMITTED_CURSOR,
                cursor=None if done else page.after,
                progress=0 if done else seen,
                passes=passes + 1 if done else passes,
                started_at=None if done else started_at,
                now=now,
            )
        imported += inserted
        await report_progress(
            ctx, f"u/{account.username} history: {seen} posts read, {imported} new so far"
        )
        if done:
            break
        after = page.after
    await report_progress(
        ctx, f"u/{account.username} history done: {seen} posts read, {imported} new"
    )
    return {"account_id": account.id, "read": seen, "imported": imported, "pages": pages}


# == stats =======================================================================================


@_says_when_it_fails("stats")
async def refresh_stats(ctx: JobContext) -> dict[str, Any]:
    """`reddit.refresh_stats` (payload `account_id`, optional `days`, default 7).

    Reads the account's posts of the last `days` days through `/api/info` in batches of 100:
    score, comments, upvote ratio and `removed_by_category`. A newly removed post raises one
    alert; a post deleted on Reddit (its author `[deleted]`, or `removed_by_category` says so)
    has its title, text, link and image wiped from our copy. A post missing from the answer
    is *not visible to this account* (its subreddit went private or quarantined, or the account
    was banned there): our copy is kept, the operators are told once, and they are told again
    when it shows up (such posts are asked about past the `days` window too).
    """
    opened = await _open(ctx, "stats")
    if isinstance(opened, dict):
        return opened
    account, client = opened
    days = int(ctx.payload.get("days", DEFAULT_STATS_DAYS))
    now = ctx.clock.now()
    async with job_uow(ctx).read() as session:
        posts = await repo.posts_to_sync(session, account.id, now - timedelta(days=days))
    total = len(posts)
    updated = 0
    wiped = 0
    to_alert: list[int] = []
    hidden_alerts: list[int] = []
    visible_again: list[int] = []
    hidden_now = 0
    lines: list[str] = []  # what the operator reads at the end, newest post first
    for start in range(0, total, INFO_BATCH):
        batch = posts[start : start + INFO_BATCH]
        fresh = {s.fullname: s for s in await client.info([p.fullname or "" for p in batch])}
        now = ctx.clock.now()
        removed: list[int] = []
        hidden: list[int] = []
        back: list[int] = []
        stats: list[dict[str, Any]] = []
        async with job_uow(ctx).write() as session:
            for post in batch:
                live = fresh.get(post.fullname or "")
                if live is None:  # Reddit hides it from this account; it is not deleted
                    hidden.append(post.id)
                    lines.append(f"• r/{post.subreddit} “{short(post.title, 50)}”: {NOT_VISIBLE}")
                    continue
                if post.hidden_since is not None:
                    back.append(post.id)
                if is_author_deletion(live.removed_by_category, live.author):
                    await _wipe(session, ctx, post, live, now)
                    wiped += 1
                    lines.append(f"• r/{post.subreddit} post {post.fullname}: deleted on Reddit")
                    continue
                lines.append(_stats_line(post, live))
                stats.append(
                    {
                        "id": post.id,
                        "score": live.score,
                        "num_comments": live.num_comments,
                        "upvote_ratio": live.upvote_ratio,
                        "removed_by_category": live.removed_by_category,
                        "last_synced_at": now,
                    }
                )
                if live.removed_by_category and not post.removal_notified:
                    removed.append(post.id)
            await repo.update_posts_by_id(session, stats)
            updated += len(stats)
            # Flagged in the same transaction as the new stats: each removal is told once.
            to_alert += await repo.mark_removal_notified(session, removed)
            hidden_alerts += await repo.mark_hidden(session, hidden, now)
            visible_again += await repo.mark_visible(session, back)
            hidden_now += len(hidden)
        await report_progress(
            ctx, f"u/{account.username} stats: {min(start + INFO_BATCH, total)}/{total} posts"
        )
    alerted = await _alert_removals(ctx, account, to_alert)
    await _alert_visibility(ctx, account, hidden_alerts, visible_again)
    await report_progress(ctx, _stats_summary(account, days, lines))
    return {
        "account_id": account.id,
        "posts": total,
        "updated": updated,
        "wiped": wiped,
        "removal_alerts": alerted,
        "not_visible": hidden_now,
        "not_visible_alerts": len(hidden_alerts),
        "visible_again": len(visible_again),
    }


def _stats_line(post: RedditPost, live: Submission) -> str:
    parts = [
        f"{live.score} point{'s' if live.score != 1 else ''}",
        f"{live.num_comments} comment{'s' if live.num_comments != 1 else ''}",
    ]
    if live.upvote_ratio is not None:
        parts.append(f"{round(live.upvote_ratio * 100)}% upvoted")
    if live.removed_by_category:
        parts.insert(0, f"removed {removal_words(live.removed_by_category)}")
    return f"• r/{post.subreddit} “{short(post.title, 50)}”: " + " · ".join(parts)


def _stats_summary(account: RedditAccount, days: int, lines: list[str]) -> str:
    span = f"the last {days} day{'s' if days != 1 else ''}"
    if not lines:
        return f"u/{account.username} stats: no published posts from {span} to refresh."
    count = len(lines)
    head = f"u/{account.username} stats done: {count} post{'s' if count != 1 else ''} from {span}"
    more = [f"…and {count - STATS_SHOWN} more"] if count > STATS_SHOWN else []
    return "\n".join([head, *lines[:STATS_SHOWN], *more])


async def _wipe(
    session: Any, ctx: JobContext, post: RedditPost, live: Submission | None, now: datetime
) -> None:
    """Deleted on Reddit: keep only ids and numbers (Reddit's policy for deleted content)."""
    await repo.update_post(
        session,
        post.id,
        {
            "title": "",
            "body": None,
            "url": None,
            "permalink": None,
            "flair_text": None,
            "vault_item_id": None,
            "image_blob_key": None,
            "image_name": None,
            "image_mime": None,
            "removed_by_category": (live.removed_by_category if live else None) or "deleted",
            "removal_notified": True,
            "content_deleted_at": now,
            "last_synced_at": now,
            "updated_at": now,
        },
    )
    await record(
        session,
        ctx.clock,
        tenant_id=post.tenant_id,
        actor=None,
        action="reddit.post.content_wiped",
        target=f"reddit_post:{post.id}",
        details={"fullname": post.fullname},
    )


async def _alert_visibility(
    ctx: JobContext, account: RedditAccount, hidden: list[int], back: list[int]
) -> None:
    """Once when posts stop being visible to the account, once when they show again."""
    for ids, head in (
        (
            hidden,
            f"👁 no longer visible to u/{account.username} on Reddit (the subreddit went "
            "private or quarantined, or the account was banned there). Our copies are kept "
            "and looked at again with every stats refresh:",
        ),
        (back, f"👁 visible again to u/{account.username} on Reddit:"),
    ):
        if not ids:
            continue
        async with job_uow(ctx).read() as session:
            posts = [p for p in [await repo.get_post(session, pid) for pid in ids] if p]
        lines = [
            f"• r/{p.subreddit}: “{short(p.title, 60)}”\n  {p.permalink or p.fullname}"
            for p in posts[:20]
        ]
        more = [f"…and {len(posts) - 20} more"] if len(posts) > 20 else []
        if lines:
            await ctx.notifier.tell_operators(ctx.tenant_id, "\n".join([head, *lines, *more]))


async def _alert_removals(ctx: JobContext, account: RedditAccount, post_ids: list[int]) -> int:
    if not post_ids:
        return 0
    async with job_uow(ctx).read() as session:
        posts = [await repo.get_post(session, pid) for pid in post_ids]
    lines = []
    for post in posts:
        if post is None or post.removed_by_category is None:
            continue
        lines.append(
            f"• r/{post.subreddit}: “{short(post.title, 60)}” — removed "
            f"{removal_words(post.removed_by_category)}\n  {post.permalink or post.fullname}"
        )
    if not lines:
        return 0
    head = f"🚫 {len(lines)} post{'s' if len(lines) != 1 else ''} of u/{account.username} "
    head += "removed on Reddit:" if len(lines) != 1 else "was removed on Reddit:"
    await ctx.notifier.tell_operators(ctx.tenant_id, head + "\n" + "\n".join(lines[:20]))
    return len(lines)


# == inbox =======================================================================================


def _inbox_row(account: RedditAccount, message: InboxMessage, now: datetime) -> dict[str, Any]:
    return {
        "tenant_id": account.tenant_id,
        "account_id": account.id,
        "fullname": message.fullname,
        "kind": message.kind,
        "author": (message.author or None) and message.author[:64],
        "subject": (message.subject or "")[:300],
        "body": message.body or "",
        "subreddit": (message.subreddit or None) and message.subreddit[:32],
        "context": message.context,
        "link_title": message.link_title,
        "was_comment": message.was_comment,
        "created_utc": _utc(message.created_utc, now),
        "unread_on_reddit": message.new,
        "seen": False,
        "notified": False,
        "fetched_at": now,
    }


@_says_when_it_fails("inbox")
async def inbox(ctx: JobContext) -> dict[str, Any]:
    """`reddit.inbox` (payload `account_id`): store new inbox messages and announce them once.

    The first pass reads the whole inbox (resumable from its cursor) and announces only what
    is still unread on Reddit; later runs read from the newest message down to the first one
    already stored and announce everything new.
    """
    opened = await _open(ctx, "inbox")
    if isinstance(opened, dict):
        return opened
    account, client = opened
    async with ctx.sessionmaker() as session:
        cursor = await repo.get_cursor(session, account.id, INBOX_CURSOR)
    resuming = cursor is not None and cursor.cursor is not None
    passes = cursor.passes if cursor is not None else 0
    first_pass = passes == 0
    after = cursor.cursor if resuming and cursor is not None else None
    seen = cursor.progress if resuming and cursor is not None else 0
    started_at = (cursor.started_at if resuming and cursor is not None else None) or ctx.clock.now()
    incremental = not first_pass and not resuming
    to_announce: list[int] = []
    stored = 0
    while True:
        page = await client.inbox(limit=LISTING_MAX, after=after)
        now = ctx.clock.now()
        rows = [_inbox_row(account, m, now) for m in page.items if m.fullname]
        unread = {m.fullname for m in page.items if m.new}
        async with job_uow(ctx).write() as session:
            new = await repo.insert_inbox(session, rows)
            seen += len(page.items)
            done = page.after is None or (incremental and len(new) < len(rows))
            await repo.save_cursor(
                session,
                tenant_id=account.tenant_id,
                account_id=account.id,
                kind=INBOX_CURSOR,
                cursor=None if done else page.after,
                progress=0 if done else seen,
                passes=passes + 1 if done else passes,
                started_at=None if done else started_at,
                now=now,
            )
        stored += len(new)
        to_announce += [row_id for name, row_id in new.items() if not first_pass or name in unread]
        await report_progress(ctx, f"u/{account.username} inbox: {seen} read, {stored} new")
        if done:
            break
        after = page.after
    announced = await _announce(ctx, account, to_announce)
    told = f", {announced} announced" if announced else ""
    await report_progress(ctx, f"u/{account.username} inbox done: {seen} read, {stored} new{told}")
    return {"account_id": account.id, "read": seen, "stored": stored, "announced": announced}


async def _announce(ctx: JobContext, account: RedditAccount, ids: list[int]) -> int:
    """One message about the new inbox entries; each entry is announced at most once."""
    if not ids:
        return 0
    async with job_uow(ctx).write() as session:
        flagged = await repo.mark_inbox_notified(session, ids)
        messages = await repo.inbox_by_ids(session, flagged)
    if not messages:
        return 0
    lines = []
    for message in messages[:INBOX_SHOWN]:
        who = f"u/{message.author}" if message.author else "Reddit"
        if message.was_comment:
            where = f" in r/{message.subreddit}" if message.subreddit else ""
            lines.append(f"• {who} replied{where}: {short(message.body, 100)}")
        else:
            lines.append(f"• {who}: “{short(message.subject, 60)}” — {short(message.body, 80)}")
    more = len(messages) - INBOX_SHOWN
    if more > 0:
        lines.append(f"…and {more} more")
    count = len(messages)
    head = f"📬 u/{account.username} has {count} new message{'s' if count != 1 else ''}:"
    await ctx.notifier.tell_operators(ctx.tenant_id, head + "\n" + "\n".join(lines))
    return count


# == fan-out (periodic) ==========================================================================


async def refresh_stats_all(ctx: JobContext) -> dict[str, Any]:
    """`reddit.refresh_stats_all` (periodic): a stats refresh for every usable account."""
    days = int(ctx.payload.get("days", DEFAULT_STATS_DAYS))
    statuses = (AccountStatus.active, AccountStatus.paused)
    return {"queued": await fan_out(ctx, REFRESH_STATS, statuses, days=days)}


async def inbox_all(ctx: JobContext) -> dict[str, Any]:
    """`reddit.inbox_all` (periodic): an inbox read for every usable account."""
    statuses = (AccountStatus.active, AccountStatus.paused)
    return {"queued": await fan_out(ctx, INBOX, statuses)}
