"""Vault rows: items, claim links and the claim access log.

Callers own the transaction; nothing here commits. The one statement that matters for
correctness is `spend_use`: the validity check and the count are a single conditional
UPDATE … RETURNING, so concurrent claims can never spend more uses than a link has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage import upsert
from storage.vault_models import (
    FILE_KINDS,
    ClaimOutcome,
    VaultAlbumPart,
    VaultBatchMember,
    VaultClaim,
    VaultItem,
    VaultLink,
)


@dataclass(frozen=True, slots=True)
class KindTotals:
    kind: str
    count: int
    bytes: int
    telegram_only: int


# -- items ---------------------------------------------------------------------------------------
async def add_item(session: AsyncSession, values: dict[str, Any]) -> VaultItem:
    """Insert an item and flush (a duplicate raises IntegrityError here, not at commit)."""
    item = VaultItem(**values)
    session.add(item)
    await session.flush()
    return item


async def get_item(
    session: AsyncSession,
    item_id: int,
    tenant_id: int | None = None,
    *,
    include_deleted: bool = False,
) -> VaultItem | None:
    stmt = select(VaultItem).where(VaultItem.id == item_id)
    if tenant_id is not None:
        stmt = stmt.where(VaultItem.tenant_id == tenant_id)
    if not include_deleted:
        stmt = stmt.where(VaultItem.deleted_at.is_(None))
    return (await session.execute(stmt)).scalar_one_or_none()


async def live_item_by_sha256(
    session: AsyncSession, tenant_id: int, sha256: str
) -> VaultItem | None:
    stmt = select(VaultItem).where(
        VaultItem.tenant_id == tenant_id,
        VaultItem.sha256 == sha256,
        VaultItem.deleted_at.is_(None),
    )
    return (await session.execute(stmt.limit(1))).scalar_one_or_none()


async def live_item_by_unique_id(
    session: AsyncSession, tenant_id: int, file_unique_id: str
) -> VaultItem | None:
    """A live item Telegram knows under `file_unique_id` (with bytes preferred)."""
    stmt = (
        select(VaultItem)
        .where(
            VaultItem.tenant_id == tenant_id,
            VaultItem.tg_file_unique_id == file_unique_id,
            VaultItem.deleted_at.is_(None),
        )
        .order_by(VaultItem.blob_key.is_(None), VaultItem.id)
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def update_item(
    session: AsyncSession, *, item_id: int, tenant_id: int, values: dict[str, Any]
) -> VaultItem | None:
    """Change a live item; None when it does not exist (or was deleted meanwhile)."""
    stmt = (
        update(VaultItem)
        .where(
            VaultItem.id == item_id,
            VaultItem.tenant_id == tenant_id,
            VaultItem.deleted_at.is_(None),
        )
        .values(**values)
        .returning(VaultItem)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def set_telegram_file(
    session: AsyncSession, *, item_id: int, file_id: str, file_unique_id: str | None
) -> bool:
    values: dict[str, Any] = {"tg_file_id": file_id}
    if file_unique_id:
        values["tg_file_unique_id"] = file_unique_id
    stmt = (
        update(VaultItem)
        .where(VaultItem.id == item_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).rowcount == 1


def _item_filters(
    tenant_id: int, kind: str | None, nsfw: bool | None, files_only: bool = False
) -> list[Any]:
    conds: list[Any] = [VaultItem.tenant_id == tenant_id, VaultItem.deleted_at.is_(None)]
    if files_only:
        conds.append(VaultItem.kind.in_(FILE_KINDS))
    if kind:
        conds.append(VaultItem.kind == kind)
    if nsfw is not None:
        conds.append(VaultItem.nsfw.is_(nsfw))
    return conds


async def page_items(
    session: AsyncSession,
    *,
    tenant_id: int,
    kind: str | None,
    nsfw: bool | None,
    offset: int,
    limit: int,
    files_only: bool = False,
) -> tuple[list[VaultItem], int]:
    conds = _item_filters(tenant_id, kind, nsfw, files_only)
    total = (
        await session.execute(select(func.count()).select_from(VaultItem).where(*conds))
    ).scalar_one()
    stmt = (
        select(VaultItem)
        .where(*conds)
        .order_by(VaultItem.created_at.desc(), VaultItem.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars().all()), total


async def totals_by_kind(session: AsyncSession, tenant_id: int) -> list[KindTotals]:
    stmt = (
        select(
            VaultItem.kind,
            func.count(),
            func.coalesce(func.sum(VaultItem.size), 0),
            func.count(VaultItem.id).filter(VaultItem.blob_key.is_(None)),
        )
        .where(
            VaultItem.tenant_id == tenant_id,
            VaultItem.deleted_at.is_(None),
            VaultItem.kind.in_(FILE_KINDS),  # files: batches and short links hold no bytes
        )
        .group_by(VaultItem.kind)
        .order_by(VaultItem.kind)
    )
    return [
        KindTotals(kind, int(n), int(size), int(tg_only))
        for kind, n, size, tg_only in (await session.execute(stmt)).all()
    ]


async def uploads_since(
    session: AsyncSession, tenant_id: int, user_id: int, since: datetime
) -> list[tuple[datetime, int]]:
    """(created_at, size) of every item `user_id` added in the workspace after `since`, oldest
    first; deleted items included (deleting a file does not give its upload back)."""
    stmt = (
        select(VaultItem.created_at, func.coalesce(VaultItem.size, 0))
        .where(
            VaultItem.tenant_id == tenant_id,
            VaultItem.uploaded_by == user_id,
            VaultItem.created_at > since,
            VaultItem.kind.in_(FILE_KINDS),  # batches and short links upload nothing
        )
        .order_by(VaultItem.created_at, VaultItem.id)
    )
    return [(at, int(size)) for at, size in (await session.execute(stmt)).all()]


async def lock_uploader(session: AsyncSession, operator_id: int) -> None:
    """Serialise one operator's concurrent uploads until the transaction ends (PostgreSQL row
    lock on the operator; SQLite's BEGIN IMMEDIATE already holds the database's write lock)."""
    from storage.models import Operator

    await session.execute(select(Operator.id).where(Operator.id == operator_id).with_for_update())


async def blob_in_use(session: AsyncSession, blob_key: str) -> bool:
    """Whether any item (deleted ones included: they may be restored) refers to `blob_key`."""
    stmt = select(exists().where(VaultItem.blob_key == blob_key))
    return bool((await session.execute(stmt)).scalar())


# -- batches -------------------------------------------------------------------------------------
async def add_batch_members(session: AsyncSession, batch_id: int, item_ids: list[int]) -> None:
    await session.execute(
        insert(VaultBatchMember),
        [
            {"batch_id": batch_id, "position": n, "item_id": item_id}
            for n, item_id in enumerate(item_ids)
        ],
    )


async def batch_members(
    session: AsyncSession, batch_id: int, *, include_deleted: bool = False
) -> list[VaultItem]:
    """The batch's items in the order they were chosen (live ones unless `include_deleted`)."""
    stmt = (
        select(VaultItem)
        .join(VaultBatchMember, VaultBatchMember.item_id == VaultItem.id)
        .where(VaultBatchMember.batch_id == batch_id)
        .order_by(VaultBatchMember.position)
    )
    if not include_deleted:
        stmt = stmt.where(VaultItem.deleted_at.is_(None))
    return list((await session.execute(stmt)).scalars().all())


async def is_batch_member(session: AsyncSession, batch_id: int, item_id: int) -> bool:
    stmt = select(
        exists().where(VaultBatchMember.batch_id == batch_id, VaultBatchMember.item_id == item_id)
    )
    return bool((await session.execute(stmt)).scalar())


async def batches_left_empty(session: AsyncSession, item_id: int) -> list[int]:
    """Live batches holding `item_id` that have no other live member."""
    member, batch = aliased(VaultItem), aliased(VaultItem)
    others = (
        select(VaultBatchMember.batch_id)
        .join(member, member.id == VaultBatchMember.item_id)
        .where(member.deleted_at.is_(None), member.id != item_id)
    )
    stmt = (
        select(batch.id)
        .join(VaultBatchMember, VaultBatchMember.batch_id == batch.id)
        .where(
            VaultBatchMember.item_id == item_id,
            batch.deleted_at.is_(None),
            batch.id.not_in(others),
        )
    )
    return list((await session.execute(stmt)).scalars().all())


async def add_album_part(
    session: AsyncSession,
    *,
    tenant_id: int,
    media_group_id: str,
    item_id: int,
    message_id: int,
    now: datetime,
) -> None:
    """Remember that `item_id` came in album `media_group_id` (idempotent)."""
    stmt = (
        upsert.insert(session, VaultAlbumPart)
        .values(
            tenant_id=tenant_id,
            media_group_id=media_group_id,
            item_id=item_id,
            message_id=message_id,
            created_at=now,
        )
        .on_conflict_do_nothing()
    )
    await session.execute(stmt)


async def album_items(
    session: AsyncSession, tenant_id: int, media_group_id: str
) -> list[VaultItem]:
    """The live items of an album, in the order it was sent."""
    stmt = (
        select(VaultItem)
        .join(VaultAlbumPart, VaultAlbumPart.item_id == VaultItem.id)
        .where(
            VaultAlbumPart.tenant_id == tenant_id,
            VaultAlbumPart.media_group_id == media_group_id,
            VaultItem.deleted_at.is_(None),
        )
        .order_by(VaultAlbumPart.message_id, VaultItem.id)
    )
    return list((await session.execute(stmt)).scalars().all())


async def prune_album_parts(session: AsyncSession, before: datetime) -> int:
    stmt = delete(VaultAlbumPart).where(VaultAlbumPart.created_at < before)
    return (await session.execute(stmt.execution_options(synchronize_session=False))).rowcount


# -- links ---------------------------------------------------------------------------------------
def usable(now: datetime) -> Any:
    """SQL: the link itself may still deliver (not revoked, not expired, uses left)."""
    return and_(
        VaultLink.revoked_at.is_(None),
        VaultLink.expires_at > now,
        VaultLink.used_count < VaultLink.max_uses,
    )


async def add_link(session: AsyncSession, values: dict[str, Any]) -> VaultLink:
    link = VaultLink(**values)
    session.add(link)
    await session.flush()
    return link


async def get_link(
    session: AsyncSession, link_id: int, tenant_id: int | None = None, *, fresh: bool = False
) -> VaultLink | None:
    """`fresh`: overwrite an already-loaded copy with what the database holds now."""
    stmt = select(VaultLink).where(VaultLink.id == link_id)
    if tenant_id is not None:
        stmt = stmt.where(VaultLink.tenant_id == tenant_id)
    if fresh:
        stmt = stmt.execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def link_by_code_hash(session: AsyncSession, code_hash: str) -> VaultLink | None:
    stmt = select(VaultLink).where(VaultLink.code_hash == code_hash)
    return (await session.execute(stmt)).scalar_one_or_none()


async def spend_use(
    session: AsyncSession, *, link_id: int, now: datetime, require_blob: bool = False
) -> VaultLink | None:
    """Count one use if, at this instant, the link may deliver; None when it may not.

    One conditional UPDATE … RETURNING. PostgreSQL re-checks the WHERE clause against the
    newest row version after waiting for a concurrent updater's lock; SQLite holds its
    database write lock for the whole statement. Either way no use is ever over-spent.
    `require_blob`: the item must also have its bytes in the blob store (HTTP delivery of a
    file; the caller passes it for files only).
    """
    item_ok = select(VaultItem.id).where(
        VaultItem.id == VaultLink.item_id, VaultItem.deleted_at.is_(None)
    )
    if require_blob:
        item_ok = item_ok.where(VaultItem.blob_key.is_not(None))
    stmt = (
        update(VaultLink)
        .where(VaultLink.id == link_id, usable(now), item_ok.exists())
        .values(used_count=VaultLink.used_count + 1)
        .returning(VaultLink)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def revoke_link(
    session: AsyncSession, *, link_id: int, tenant_id: int, now: datetime, by: int | None
) -> VaultLink | None:
    """Revoke a link that is not revoked yet; None when it is missing or already revoked."""
    stmt = (
        update(VaultLink)
        .where(
            VaultLink.id == link_id,
            VaultLink.tenant_id == tenant_id,
            VaultLink.revoked_at.is_(None),
        )
        .values(revoked_at=now, revoked_by=by)
        .returning(VaultLink)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def revoke_links_of_item(
    session: AsyncSession, *, item_id: int, now: datetime, by: int | None
) -> int:
    stmt = (
        update(VaultLink)
        .where(VaultLink.item_id == item_id, VaultLink.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by=by)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).rowcount


async def page_links(
    session: AsyncSession,
    *,
    tenant_id: int,
    now: datetime,
    active_only: bool,
    item_id: int | None,
    offset: int,
    limit: int,
) -> tuple[list[tuple[VaultLink, VaultItem]], int]:
    """Links with their items."""
    conds: list[Any] = [VaultLink.tenant_id == tenant_id]
    if active_only:
        conds.append(usable(now))
    if item_id is not None:
        conds.append(VaultLink.item_id == item_id)
    total = (
        await session.execute(select(func.count()).select_from(VaultLink).where(*conds))
    ).scalar_one()
    # Active listings read best soonest-to-expire first; history newest first.
    order = (
        (VaultLink.expires_at, VaultLink.id)
        if active_only
        else (VaultLink.created_at.desc(), VaultLink.id.desc())
    )
    stmt = (
        select(VaultLink, VaultItem)
        .join(VaultItem, VaultItem.id == VaultLink.item_id)
        .where(*conds)
        .order_by(*order)
        .offset(offset)
        .limit(limit)
    )
    rows = (await session.execute(stmt)).all()
    return [(link, item) for link, item in rows], total


async def count_active_links(session: AsyncSession, tenant_id: int, now: datetime) -> int:
    stmt = (
        select(func.count())
        .select_from(VaultLink)
        .where(VaultLink.tenant_id == tenant_id, usable(now))
    )
    return int((await session.execute(stmt)).scalar_one())


async def count_expired_unrevoked(session: AsyncSession, now: datetime) -> int:
    stmt = (
        select(func.count())
        .select_from(VaultLink)
        .where(VaultLink.revoked_at.is_(None), VaultLink.expires_at <= now)
    )
    return int((await session.execute(stmt)).scalar_one())


async def delete_links_finished_before(session: AsyncSession, before: datetime) -> int:
    """Forget links that stopped working (expired or revoked) before `before`."""
    stmt = delete(VaultLink).where(
        or_(VaultLink.expires_at < before, VaultLink.revoked_at < before)
    )
    return (await session.execute(stmt.execution_options(synchronize_session=False))).rowcount


# -- claims (access log) ---------------------------------------------------------------------------
async def add_claim(session: AsyncSession, values: dict[str, Any]) -> None:
    """Append to the access log. A second `delivered` row for one claimer and link raises
    IntegrityError (partial unique index) — the caller turns that into a re-delivery."""
    await session.execute(insert(VaultClaim).values(**values))


async def has_delivered(
    session: AsyncSession, *, link_id: int, claimer_kind: str, claimer_id: str
) -> bool:
    stmt = select(
        exists().where(
            VaultClaim.link_id == link_id,
            VaultClaim.claimer_kind == claimer_kind,
            VaultClaim.claimer_id == claimer_id,
            VaultClaim.outcome == ClaimOutcome.delivered,
        )
    )
    return bool((await session.execute(stmt)).scalar())


async def page_claims(
    session: AsyncSession,
    *,
    tenant_id: int,
    item_id: int | None,
    link_id: int | None,
    offset: int,
    limit: int,
) -> tuple[list[VaultClaim], int]:
    conds: list[Any] = [VaultClaim.tenant_id == tenant_id]
    if item_id is not None:
        conds.append(VaultClaim.item_id == item_id)
    if link_id is not None:
        conds.append(VaultClaim.link_id == link_id)
    total = (
        await session.execute(select(func.count()).select_from(VaultClaim).where(*conds))
    ).scalar_one()
    stmt = (
        select(VaultClaim)
        .where(*conds)
        .order_by(VaultClaim.at.desc(), VaultClaim.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars().all()), total


async def count_claims_by_outcome(
    session: AsyncSession, *, link_id: int | None = None, item_id: int | None = None
) -> dict[str, int]:
    stmt = select(VaultClaim.outcome, func.count()).group_by(VaultClaim.outcome)
    if link_id is not None:
        stmt = stmt.where(VaultClaim.link_id == link_id)
    if item_id is not None:
        stmt = stmt.where(VaultClaim.item_id == item_id)
    return {outcome: int(n) for outcome, n in (await session.execute(stmt)).all()}


async def deliveries_by_link(
    session: AsyncSession, tenant_id: int, link_ids: list[int]
) -> dict[int, int]:
    stmt = (
        select(VaultClaim.link_id, func.count())
        .where(
            VaultClaim.tenant_id == tenant_id,
            VaultClaim.link_id.in_(link_ids),
            VaultClaim.outcome.in_([ClaimOutcome.delivered, ClaimOutcome.redelivered]),
        )
        .group_by(VaultClaim.link_id)
    )
    return {int(link_id): int(n) for link_id, n in (await session.execute(stmt)).all()}


async def prune_claims(session: AsyncSession, before: datetime) -> int:
    stmt = delete(VaultClaim).where(VaultClaim.at < before)
    return (await session.execute(stmt.execution_options(synchronize_session=False))).rowcount
