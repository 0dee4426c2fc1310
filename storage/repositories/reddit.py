"""Reddit rows: accounts, posts, inbox, backfill cursors, subreddit pacing.

Callers own the transaction; nothing here commits. State changes are conditional UPDATEs
(`from_statuses`) that return the row as it is afterwards, or None when it was not in one of
those states any more, so a double press or a race changes a row once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import upsert
from storage.models import Job, JobStatus
from storage.reddit_models import (
    PostKind,
    PostSource,
    PostStatus,
    RedditAccount,
    RedditCursor,
    RedditInboxMessage,
    RedditPost,
    SubredditPacing,
)
from storage.vault_models import VaultItem

# Posts that hold a slot in the pacing plan, and those that are still to go out.
PLANNED = (PostStatus.pending_approval, PostStatus.queued)
UPCOMING = (PostStatus.pending_approval, PostStatus.queued, PostStatus.publishing)
EDITABLE = (PostStatus.draft, PostStatus.pending_approval, PostStatus.queued, PostStatus.failed)


# == accounts ====================================================================================


async def add_account(session: AsyncSession, account: RedditAccount) -> RedditAccount:
    session.add(account)
    await session.flush()
    return account


async def get_account(
    session: AsyncSession,
    account_id: int,
    tenant_id: int | None = None,
    *,
    for_update: bool = False,
) -> RedditAccount | None:
    stmt = select(RedditAccount).where(RedditAccount.id == account_id)
    if tenant_id is not None:
        stmt = stmt.where(RedditAccount.tenant_id == tenant_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def account_by_username(
    session: AsyncSession, tenant_id: int, username: str
) -> RedditAccount | None:
    stmt = select(RedditAccount).where(
        RedditAccount.tenant_id == tenant_id, RedditAccount.username_key == username.lower()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_accounts(session: AsyncSession, tenant_id: int) -> list[RedditAccount]:
    stmt = (
        select(RedditAccount)
        .where(RedditAccount.tenant_id == tenant_id)
        .order_by(RedditAccount.username_key)
    )
    return list((await session.execute(stmt)).scalars().all())


async def accounts_with_status(
    session: AsyncSession, statuses: Sequence[str], tenant_id: int | None = None
) -> list[RedditAccount]:
    """Accounts in one of `statuses`, of one workspace or (tenant_id None) of all."""
    stmt = select(RedditAccount).where(RedditAccount.status.in_(statuses))
    if tenant_id is not None:
        stmt = stmt.where(RedditAccount.tenant_id == tenant_id)
    return list((await session.execute(stmt.order_by(RedditAccount.id))).scalars().all())


async def update_account(
    session: AsyncSession,
    account_id: int,
    values: dict[str, Any],
    *,
    tenant_id: int | None = None,
    from_statuses: Sequence[str] | None = None,
) -> RedditAccount | None:
    """Update an account (only while in `from_statuses`, if given); the row afterwards or None."""
    conds = [RedditAccount.id == account_id]
    if tenant_id is not None:
        conds.append(RedditAccount.tenant_id == tenant_id)
    if from_statuses is not None:
        conds.append(RedditAccount.status.in_(from_statuses))
    stmt = (
        update(RedditAccount)
        .where(*conds)
        .values(**values)
        .returning(RedditAccount)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def delete_account(session: AsyncSession, account_id: int, tenant_id: int) -> bool:
    """Delete an account with its posts, inbox and cursors (ON DELETE CASCADE)."""
    stmt = delete(RedditAccount).where(
        RedditAccount.id == account_id, RedditAccount.tenant_id == tenant_id
    )
    return (await session.execute(stmt.execution_options(synchronize_session=False))).rowcount == 1


# == posts =======================================================================================


async def add_post(session: AsyncSession, post: RedditPost) -> RedditPost:
    session.add(post)
    await session.flush()
    return post


async def get_post(
    session: AsyncSession, post_id: int, tenant_id: int | None = None
) -> RedditPost | None:
    stmt = select(RedditPost).where(RedditPost.id == post_id)
    if tenant_id is not None:
        stmt = stmt.where(RedditPost.tenant_id == tenant_id)
    stmt = stmt.execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def update_post(
    session: AsyncSession,
    post_id: int,
    values: dict[str, Any],
    *,
    tenant_id: int | None = None,
    from_statuses: Sequence[str] | None = None,
) -> RedditPost | None:
    """Update a post (only while in `from_statuses`, if given); the row afterwards or None."""
    conds = [RedditPost.id == post_id]
    if tenant_id is not None:
        conds.append(RedditPost.tenant_id == tenant_id)
    if from_statuses is not None:
        conds.append(RedditPost.status.in_(from_statuses))
    stmt = (
        update(RedditPost)
        .where(*conds)
        .values(**values)
        .returning(RedditPost)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_posts(
    session: AsyncSession,
    tenant_id: int,
    *,
    statuses: Sequence[str] | None = None,
    account_id: int | None = None,
    limit: int = 20,
    offset: int = 0,
    newest_first: bool = False,
) -> list[RedditPost]:
    conds = [RedditPost.tenant_id == tenant_id]
    if statuses:
        conds.append(RedditPost.status.in_(statuses))
    if account_id is not None:
        conds.append(RedditPost.account_id == account_id)
    if newest_first:
        order = (func.coalesce(RedditPost.published_at, RedditPost.updated_at).desc(),)
    else:
        order = (RedditPost.scheduled_for.asc(), RedditPost.id.asc())
    stmt = select(RedditPost).where(*conds).order_by(*order, RedditPost.id).offset(offset)
    return list((await session.execute(stmt.limit(limit))).scalars().all())


async def count_posts(
    session: AsyncSession,
    tenant_id: int,
    *,
    statuses: Sequence[str] | None = None,
    account_id: int | None = None,
) -> int:
    conds = [RedditPost.tenant_id == tenant_id]
    if statuses:
        conds.append(RedditPost.status.in_(statuses))
    if account_id is not None:
        conds.append(RedditPost.account_id == account_id)
    stmt = select(func.count()).select_from(RedditPost).where(*conds)
    return (await session.execute(stmt)).scalar_one()


async def pacing_times(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    account_id: int | None = None,
    tenant_id: int | None = None,
    subreddit_key: str | None = None,
    include_planned: bool,
    exclude_post_id: int | None = None,
) -> list[datetime]:
    """Times of the posts that count for pacing between `start` and `end`, sorted.

    A published post counts at `published_at`, one being submitted at `attempted_at`, and
    (only when planning, `include_planned`) a queued or pending one at `scheduled_for`.
    Dry-run publications count too, so a dry run shows the pacing a real day would have.
    Give `account_id` for an account's posts, or `tenant_id` and `subreddit_key` for the
    workspace's posts to one subreddit.
    """
    going_at = func.coalesce(RedditPost.attempted_at, RedditPost.scheduled_for)
    windows = [
        and_(
            RedditPost.status == PostStatus.published,
            RedditPost.published_at >= start,
            RedditPost.published_at <= end,
        ),
        and_(RedditPost.status == PostStatus.publishing, going_at >= start, going_at <= end),
    ]
    if include_planned:
        windows.append(
            and_(
                RedditPost.status.in_(PLANNED),
                RedditPost.scheduled_for >= start,
                RedditPost.scheduled_for <= end,
            )
        )
    conds = [RedditPost.source == PostSource.opsdeck, or_(*windows)]
    if account_id is not None:
        conds.append(RedditPost.account_id == account_id)
    if tenant_id is not None:
        conds.append(RedditPost.tenant_id == tenant_id)
    if subreddit_key is not None:
        conds.append(RedditPost.subreddit_key == subreddit_key)
    if exclude_post_id is not None:
        conds.append(RedditPost.id != exclude_post_id)
    stmt = select(
        RedditPost.status, RedditPost.scheduled_for, RedditPost.published_at, going_at
    ).where(*conds)
    times: list[datetime] = []
    for status, scheduled_for, published_at, going in (await session.execute(stmt)).all():
        if status == PostStatus.published:
            when = published_at
        elif status == PostStatus.publishing:
            when = going
        else:
            when = scheduled_for
        if when is not None:
            times.append(when)
    return sorted(times)


async def in_flight(
    session: AsyncSession,
    *,
    since: datetime,
    exclude_post_id: int,
    account_id: int | None = None,
    tenant_id: int | None = None,
    subreddit_key: str | None = None,
) -> int:
    """Posts being submitted right now (status publishing, attempted after `since`)."""
    conds = [
        RedditPost.status == PostStatus.publishing,
        RedditPost.id != exclude_post_id,
        RedditPost.attempted_at >= since,
    ]
    if account_id is not None:
        conds.append(RedditPost.account_id == account_id)
    if tenant_id is not None:
        conds.append(RedditPost.tenant_id == tenant_id)
    if subreddit_key is not None:
        conds.append(RedditPost.subreddit_key == subreddit_key)
    stmt = select(func.count()).select_from(RedditPost).where(*conds)
    return (await session.execute(stmt)).scalar_one()


async def posts_to_sync(
    session: AsyncSession, account_id: int, since: datetime, limit: int = 1000
) -> list[RedditPost]:
    """Published (really sent) posts of an account since `since`, newest first, and older
    ones that were not visible to it (to see them come back)."""
    stmt = (
        select(RedditPost)
        .where(
            RedditPost.account_id == account_id,
            RedditPost.status == PostStatus.published,
            RedditPost.dry_run.is_(False),
            RedditPost.fullname.is_not(None),
            RedditPost.kind != PostKind.comment,  # comments have no post stats to refresh
            RedditPost.content_deleted_at.is_(None),
            or_(RedditPost.published_at >= since, RedditPost.hidden_since.is_not(None)),
        )
        .order_by(RedditPost.published_at.desc(), RedditPost.id.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars().all())


async def update_posts_by_id(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk UPDATE by primary key: each row is {"id": …, column: value, …} (one executemany)."""
    if rows:
        await session.execute(update(RedditPost), list(rows))


async def mark_removal_notified(session: AsyncSession, ids: Sequence[int]) -> list[int]:
    """Flag removal alerts as sent; returns only the posts this call flagged (alert once)."""
    if not ids:
        return []
    stmt = (
        update(RedditPost)
        .where(RedditPost.id.in_(ids), RedditPost.removal_notified.is_(False))
        .values(removal_notified=True)
        .returning(RedditPost.id)
        .execution_options(synchronize_session=False)
    )
    return [row[0] for row in (await session.execute(stmt)).all()]


async def mark_hidden(session: AsyncSession, ids: Sequence[int], now: datetime) -> list[int]:
    """Posts missing from /api/info: not visible since `now` (kept if already set); returns
    the posts this call flagged for an alert (each is told once until it shows again)."""
    if not ids:
        return []
    await session.execute(
        update(RedditPost)
        .where(RedditPost.id.in_(ids), RedditPost.hidden_since.is_(None))
        .values(hidden_since=now)
        .execution_options(synchronize_session=False)
    )
    stmt = (
        update(RedditPost)
        .where(RedditPost.id.in_(ids), RedditPost.hidden_notified.is_(False))
        .values(hidden_notified=True)
        .returning(RedditPost.id)
        .execution_options(synchronize_session=False)
    )
    return [row[0] for row in (await session.execute(stmt)).all()]


async def mark_visible(session: AsyncSession, ids: Sequence[int]) -> list[int]:
    """Posts seen again: no longer hidden; returns those whose hiding had been told."""
    if not ids:
        return []
    told = select(RedditPost.id).where(RedditPost.id.in_(ids), RedditPost.hidden_notified.is_(True))
    back = [row[0] for row in (await session.execute(told)).all()]
    await session.execute(
        update(RedditPost)
        .where(RedditPost.id.in_(ids))
        .values(hidden_since=None, hidden_notified=False)
        .execution_options(synchronize_session=False)
    )
    return back


async def drop_history_duplicate(
    session: AsyncSession, account_id: int, fullname: str, keep_post_id: int
) -> int:
    """Delete a history import of a post we published ourselves (the backfill saw it first)."""
    stmt = delete(RedditPost).where(
        RedditPost.account_id == account_id,
        RedditPost.fullname == fullname,
        RedditPost.id != keep_post_id,
        RedditPost.source == PostSource.history,
    )
    return (await session.execute(stmt.execution_options(synchronize_session=False))).rowcount


async def known_fullnames(
    session: AsyncSession, account_id: int, fullnames: Iterable[str]
) -> set[str]:
    names = list(fullnames)
    if not names:
        return set()
    stmt = select(RedditPost.fullname).where(
        RedditPost.account_id == account_id, RedditPost.fullname.in_(names)
    )
    return {row for row in (await session.execute(stmt)).scalars().all() if row}


async def import_history(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """Insert imported posts (rows of one account); ones already stored are left alone.

    Known fullnames are filtered out first, so a page with nothing new writes nothing; the
    ON CONFLICT clause still covers a post stored meanwhile by a concurrent submit.
    """
    if not rows:
        return 0
    known = await known_fullnames(session, rows[0]["account_id"], [r["fullname"] for r in rows])
    fresh = [r for r in rows if r["fullname"] not in known]
    if not fresh:
        return 0
    stmt = (
        upsert.insert(session, RedditPost.__table__)
        .on_conflict_do_nothing(index_elements=["account_id", "fullname"])
        .returning(RedditPost.id)
    )
    return len((await session.execute(stmt, fresh)).all())


async def wake_account_jobs(session: AsyncSession, account_id: int, now: datetime) -> int:
    """Run the account's overdue submit jobs now (after a resume) instead of at their retry."""
    job_ids = select(RedditPost.job_id).where(
        RedditPost.account_id == account_id,
        RedditPost.status.in_([PostStatus.queued, PostStatus.publishing]),
        RedditPost.scheduled_for <= now,
        RedditPost.job_id.is_not(None),
    )
    stmt = (
        update(Job)
        .where(
            Job.id.in_(job_ids),
            Job.status.in_([JobStatus.queued, JobStatus.failed]),
            Job.run_at > now,
        )
        .values(run_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).rowcount


async def cancel_account_jobs(
    session: AsyncSession, account_id: int, now: datetime, reason: str
) -> int:
    """Cancel the waiting submit jobs of an account's posts (before the account is removed)."""
    job_ids = select(RedditPost.job_id).where(
        RedditPost.account_id == account_id, RedditPost.job_id.is_not(None)
    )
    stmt = (
        update(Job)
        .where(
            Job.id.in_(job_ids),
            Job.status.in_([JobStatus.pending_approval, JobStatus.queued, JobStatus.failed]),
        )
        .values(status=JobStatus.cancelled, finished_at=now, updated_at=now, last_error=reason)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).rowcount


# == vault =======================================================================================


@dataclass(frozen=True, slots=True)
class VaultImage:
    blob_key: str | None
    mime: str
    name: str
    size: int | None = None


async def vault_image(session: AsyncSession, tenant_id: int, item_id: int) -> VaultImage | None:
    """The bytes reference of a (not deleted) vault item of the workspace."""
    stmt = select(VaultItem.blob_key, VaultItem.mime, VaultItem.name, VaultItem.size).where(
        VaultItem.id == item_id, VaultItem.tenant_id == tenant_id, VaultItem.deleted_at.is_(None)
    )
    row = (await session.execute(stmt)).one_or_none()
    return VaultImage(*row) if row is not None else None


# == inbox =======================================================================================


async def insert_inbox(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Insert inbox messages (rows of one account) not stored yet; {fullname: id} of new rows."""
    if not rows:
        return {}
    known = await known_inbox(session, rows[0]["account_id"], [r["fullname"] for r in rows])
    fresh = [r for r in rows if r["fullname"] not in known]
    if not fresh:
        return {}
    stmt = (
        upsert.insert(session, RedditInboxMessage.__table__)
        .on_conflict_do_nothing(index_elements=["account_id", "fullname"])
        .returning(RedditInboxMessage.fullname, RedditInboxMessage.id)
    )
    return {name: row_id for name, row_id in (await session.execute(stmt, fresh)).all()}


async def known_inbox(session: AsyncSession, account_id: int, fullnames: Iterable[str]) -> set[str]:
    names = list(fullnames)
    if not names:
        return set()
    stmt = select(RedditInboxMessage.fullname).where(
        RedditInboxMessage.account_id == account_id, RedditInboxMessage.fullname.in_(names)
    )
    return set((await session.execute(stmt)).scalars().all())


async def inbox_by_ids(session: AsyncSession, ids: Sequence[int]) -> list[RedditInboxMessage]:
    if not ids:
        return []
    stmt = (
        select(RedditInboxMessage)
        .where(RedditInboxMessage.id.in_(ids))
        .order_by(RedditInboxMessage.created_utc.desc(), RedditInboxMessage.id.desc())
    )
    return list((await session.execute(stmt)).scalars().all())


async def mark_inbox_notified(session: AsyncSession, ids: Sequence[int]) -> list[int]:
    """Flag messages as notified; returns only those this call flagged (notify once)."""
    if not ids:
        return []
    stmt = (
        update(RedditInboxMessage)
        .where(RedditInboxMessage.id.in_(ids), RedditInboxMessage.notified.is_(False))
        .values(notified=True)
        .returning(RedditInboxMessage.id)
        .execution_options(synchronize_session=False)
    )
    return [row[0] for row in (await session.execute(stmt)).all()]


async def list_inbox(
    session: AsyncSession,
    tenant_id: int,
    *,
    account_id: int | None = None,
    unseen_only: bool = False,
    limit: int = 20,
    offset: int = 0,
) -> list[RedditInboxMessage]:
    conds = [RedditInboxMessage.tenant_id == tenant_id]
    if account_id is not None:
        conds.append(RedditInboxMessage.account_id == account_id)
    if unseen_only:
        conds.append(RedditInboxMessage.seen.is_(False))
    stmt = (
        select(RedditInboxMessage)
        .where(*conds)
        .order_by(RedditInboxMessage.created_utc.desc(), RedditInboxMessage.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars().all())


async def mark_inbox_seen(session: AsyncSession, tenant_id: int, ids: Sequence[int]) -> int:
    if not ids:
        return 0
    stmt = (
        update(RedditInboxMessage)
        .where(RedditInboxMessage.tenant_id == tenant_id, RedditInboxMessage.id.in_(ids))
        .values(seen=True)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).rowcount


# == backfill cursors ============================================================================


async def get_cursor(session: AsyncSession, account_id: int, kind: str) -> RedditCursor | None:
    stmt = (
        select(RedditCursor)
        .where(RedditCursor.account_id == account_id, RedditCursor.kind == kind)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def save_cursor(
    session: AsyncSession,
    *,
    tenant_id: int,
    account_id: int,
    kind: str,
    cursor: str | None,
    progress: int,
    passes: int,
    started_at: datetime | None,
    now: datetime,
) -> None:
    values = {
        "cursor": cursor,
        "progress": progress,
        "passes": passes,
        "started_at": started_at,
        "updated_at": now,
    }
    stmt = (
        upsert.insert(session, RedditCursor.__table__)
        .values(tenant_id=tenant_id, account_id=account_id, kind=kind, **values)
        .on_conflict_do_update(index_elements=["account_id", "kind"], set_=values)
    )
    await session.execute(stmt)


# == subreddit pacing ============================================================================


async def subreddit_pacing(
    session: AsyncSession, tenant_id: int, subreddit_key: str, *, for_update: bool = False
) -> SubredditPacing | None:
    stmt = select(SubredditPacing).where(
        SubredditPacing.tenant_id == tenant_id, SubredditPacing.subreddit_key == subreddit_key
    )
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def set_subreddit_pacing(
    session: AsyncSession,
    *,
    tenant_id: int,
    subreddit: str,
    minutes: int,
    by: int | None,
    now: datetime,
) -> None:
    values = {
        "subreddit": subreddit,
        "min_gap_minutes": minutes,
        "updated_by": by,
        "updated_at": now,
    }
    stmt = (
        upsert.insert(session, SubredditPacing.__table__)
        .values(tenant_id=tenant_id, subreddit_key=subreddit.lower(), **values)
        .on_conflict_do_update(index_elements=["tenant_id", "subreddit_key"], set_=values)
    )
    await session.execute(stmt)


async def delete_subreddit_pacing(
    session: AsyncSession, tenant_id: int, subreddit_key: str
) -> bool:
    stmt = delete(SubredditPacing).where(
        SubredditPacing.tenant_id == tenant_id, SubredditPacing.subreddit_key == subreddit_key
    )
    return (await session.execute(stmt.execution_options(synchronize_session=False))).rowcount == 1


async def list_subreddit_pacing(session: AsyncSession, tenant_id: int) -> list[SubredditPacing]:
    stmt = (
        select(SubredditPacing)
        .where(SubredditPacing.tenant_id == tenant_id)
        .order_by(SubredditPacing.subreddit_key)
    )
    return list((await session.execute(stmt)).scalars().all())
