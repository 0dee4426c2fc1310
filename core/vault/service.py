"""The vault as operators use it: ingest files, manage them, create and revoke claim links.

On the unit of work (DESIGN §9): reads outside any transaction, each mutation one short
write. Every mutation checks the actor's role, is scoped to the actor's workspace and writes
its audit row in its own transaction. Bytes flow to and from the blob store (S3 is a network
peer) with no transaction open. Claims live in `core.vault.claims`; the HTTP door in
`core.vault.gateway`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.actor import Actor
from core.clock import Clock
from core.crypto import hash_code, new_claim_code
from core.errors import Conflict, InvalidInput, NotFound
from core.services.audit import record
from core.vault import caps
from core.vault.claims import ClaimService
from core.vault.config import (
    MAX_AUTO_DELETE_SECONDS,
    MAX_LINK_LIFETIME_SECONDS,
    MAX_LINK_USES,
    MIN_AUTO_DELETE_SECONDS,
    MIN_LINK_LIFETIME_SECONDS,
    VaultConfig,
)
from core.vault.names import clean_text, sanitize_name, split_extension
from core.vault.sniff import OCTET_STREAM, SNIFF_BYTES, extension_for, normalize_mime, sniff_mime
from core.vault.types import (
    IngestResult,
    IngestSource,
    KindStats,
    NewLink,
    Page,
    VaultStats,
)
from core.vault.urls import check_url, host_of
from storage.blobs.base import BlobStore
from storage.blobs.errors import BlobTooLarge
from storage.models import Role
from storage.repositories import vault as repo
from storage.uow import UnitOfWork
from storage.vault_models import VaultClaim, VaultItem, VaultKind, VaultLink

log = logging.getLogger(__name__)

MAX_DESCRIPTION_CHARS = 4096
MAX_BATCH_ITEMS = 50
BATCH_MIME = "application/vnd.opsdeck.batch"
URL_MIME = "text/uri-list"

# What Telegram sends each kind as, when it does not say.
_KIND_MIME = {
    VaultKind.photo: "image/jpeg",
    VaultKind.voice: "audio/ogg",
    VaultKind.animation: "video/mp4",
    VaultKind.video: "video/mp4",
    VaultKind.audio: "audio/mpeg",
    VaultKind.document: OCTET_STREAM,
}


def human_size(n: int | None) -> str:
    """`1.5 MB`; for messages."""
    if n is None:
        return "unknown size"
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover - loop returns at GB


def _page_count(total: int, size: int) -> int:
    return max(1, -(-total // size))


class VaultService:
    """Files and links of the actor's workspace."""

    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        blobs: BlobStore,
        config: VaultConfig | None = None,
    ) -> None:
        self.uow = uow
        self.clock = clock
        self.blobs = blobs
        self.config = config or VaultConfig()

    # -- ingest ----------------------------------------------------------------------------------
    async def ingest(self, actor: Actor, source: IngestSource) -> IngestResult:
        """Make a vault item of a file an operator sent.

        With `source.content`, the bytes are streamed into the blob store (hashed on the way,
        bounded memory, refused past `max_file_bytes`) and sniffed; the same bytes already in
        the workspace give back that item with `duplicate=True`. Without content the item is
        Telegram-only. The same Telegram file (`file_unique_id`) is recognised before any byte
        is read. Ends any open transaction first: no database lock is held while bytes flow.
        """
        actor.require(Role.operator, "add files to the vault")
        kind = self._kind(source.kind)
        if not kind.is_file:
            raise InvalidInput(f"A {kind.value} is not a file; it cannot be uploaded.")
        cap = self.config.max_file_bytes
        if source.size is not None and source.size > cap:
            await _close(source.content)
            raise self._too_large(source.size)
        if source.file_id is None and source.content is None:
            raise InvalidInput("There is nothing to store: no Telegram file and no content.")

        if source.file_unique_id:
            async with self.uow.read() as session:
                known = await repo.live_item_by_unique_id(
                    session, actor.tenant_id, source.file_unique_id
                )
            if known is not None:
                await _close(source.content)
                return IngestResult(known, duplicate=True)
        # Per-operator caps, before any byte is read: a refused file stores nothing.
        async with self.uow.read() as session:
            day_rows = await self._operator_uploads(session, actor)
        refusal = caps.over_cap(self.config, day_rows, source.size, self.clock.now())
        if refusal is not None:
            await _close(source.content)
            await self._refuse(actor, source, refusal)

        day_left = caps.bytes_left(self.config, day_rows)
        values = await self._store(actor, kind, source, day_left) if source.content else None
        if values is None:
            values = self._telegram_only_values(kind, source)
        else:
            async with self.uow.read() as session:
                existing = await repo.live_item_by_sha256(
                    session, actor.tenant_id, values["sha256"]
                )
            if existing is not None:
                await self._adopt_file_id(existing, kind, source)
                return IngestResult(existing, duplicate=True)

        now = self.clock.now()
        values.update(
            tenant_id=actor.tenant_id,
            kind=kind.value,
            nsfw=bool(source.nsfw),
            description=_description(source.caption),
            tg_file_id=source.file_id,
            tg_file_unique_id=source.file_unique_id,
            uploaded_by=actor.user_id,
            created_at=now,
            deleted_at=None,
        )
        values["name"] = sanitize_name(
            source.name,
            default_stem=f"{kind.value}_{now:%Y-%m-%d_%H-%M-%S}",
            extension=extension_for(values["mime"]),
        )
        try:
            async with self.uow.write() as session:
                # Again in the write that adds the item: uploads that raced this one since
                # the first look count too.
                refusal = caps.over_cap(
                    self.config,
                    await self._operator_uploads(session, actor, lock=True),
                    values["size"],
                    self.clock.now(),
                )
                if refusal is None:
                    item = await repo.add_item(session, values)
                    await record(
                        session,
                        self.clock,
                        tenant_id=actor.tenant_id,
                        actor=actor,
                        action="vault.ingest",
                        target=f"vault_item:{item.id}",
                        details={
                            "kind": item.kind,
                            "size": item.size,
                            "telegram_only": item.blob_key is None,
                        },
                    )
        except IntegrityError:
            # The same file arrived twice at once (an album with a repeat); the other won.
            twin = await self._live_twin(actor.tenant_id, values)
            if twin is None:
                raise
            return IngestResult(twin, duplicate=True)
        if refusal is not None:
            await self._drop_blob(values.get("blob_key"))
            await self._refuse(actor, source, refusal)
        return IngestResult(item, duplicate=False)

    async def _drop_blob(self, key: str | None) -> None:
        """Remove stored bytes no item refers to (after the write: the store may be remote)."""
        if not key:
            return
        async with self.uow.read() as session:
            in_use = await repo.blob_in_use(session, key)
        if not in_use:
            await self.blobs.delete(key)

    async def _operator_uploads(
        self, session: AsyncSession, actor: Actor, *, lock: bool = False
    ) -> list[tuple[Any, int]]:
        """The actor's uploads of the last 24 hours, when a per-operator cap is set. `lock`:
        hold the operator's uploads until this transaction ends (the insert's re-check)."""
        cfg = self.config
        if not (cfg.operator_max_uploads_per_hour or cfg.operator_max_bytes_per_day):
            return []
        if lock:
            await repo.lock_uploader(session, actor.operator_id)
        since = self.clock.now() - caps.DAY
        return await repo.uploads_since(session, actor.tenant_id, actor.user_id, since)

    async def _refuse(self, actor: Actor, source: IngestSource, refusal: caps.CapRefusal) -> None:
        """Audit and log a refusal by a per-operator cap, then raise its answer."""
        details = {
            "cap": refusal.cap,
            "limit": refusal.limit,
            "used": refusal.used,
            "size": refusal.size,
            "kind": str(source.kind),
        }
        log.warning(
            "vault upload by %s refused: %s (%s used of %s, file %s bytes)",
            actor.user_id,
            refusal.cap,
            refusal.used,
            refusal.limit,
            refusal.size,
        )
        async with self.uow.write() as session:
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="vault.ingest_refused",
                target=None,
                details=details,
            )
        raise InvalidInput(refusal.message(self.clock.now(), actor.timezone), **details)

    async def _store(
        self, actor: Actor, kind: VaultKind, source: IngestSource, day_left: int | None = None
    ) -> dict[str, Any]:
        assert source.content is not None
        limit = self.config.max_file_bytes
        if day_left is not None and day_left < limit:
            limit = day_left  # a file of unknown size stops as soon as it passes the daily cap
        head = bytearray()

        async def tapped() -> AsyncIterator[bytes]:
            assert source.content is not None
            async for chunk in source.content:
                if len(head) < SNIFF_BYTES:
                    head.extend(chunk[: SNIFF_BYTES - len(head)])
                yield chunk

        try:
            stored = await self.blobs.put_stream(tapped(), max_size=limit)
        except BlobTooLarge as exc:
            if limit < self.config.max_file_bytes:
                async with self.uow.read() as session:
                    rows = await self._operator_uploads(session, actor)
                refusal = caps.over_cap(self.config, rows, exc.size, self.clock.now())
                if refusal is not None:
                    await self._refuse(actor, source, refusal)
            raise self._too_large(exc.size, at_least=True) from None
        finally:
            await _close(source.content)
        mime = sniff_mime(bytes(head), source.mime or _KIND_MIME[kind])
        return {"sha256": stored.sha256, "size": stored.size, "blob_key": stored.key, "mime": mime}

    def _telegram_only_values(self, kind: VaultKind, source: IngestSource) -> dict[str, Any]:
        return {
            "sha256": None,
            "size": source.size,
            "blob_key": None,
            "mime": normalize_mime(source.mime) or _KIND_MIME[kind],
        }

    async def _adopt_file_id(self, item: VaultItem, kind: VaultKind, source: IngestSource) -> None:
        # A Telegram file_id is only valid for its own kind (a photo id cannot be sent as a
        # document), so an existing item only borrows one sent as the same kind.
        if item.tg_file_id is None and source.file_id and item.kind == kind.value:
            async with self.uow.write() as session:
                await repo.set_telegram_file(
                    session,
                    item_id=item.id,
                    file_id=source.file_id,
                    file_unique_id=source.file_unique_id,
                )
            item.tg_file_id = source.file_id
            item.tg_file_unique_id = source.file_unique_id or item.tg_file_unique_id

    async def _live_twin(self, tenant_id: int, values: dict[str, Any]) -> VaultItem | None:
        async with self.uow.read() as session:
            if values.get("sha256"):
                return await repo.live_item_by_sha256(session, tenant_id, values["sha256"])
            if values.get("tg_file_unique_id"):
                return await repo.live_item_by_unique_id(
                    session, tenant_id, values["tg_file_unique_id"]
                )
        return None

    def _too_large(self, size: int, *, at_least: bool = False) -> InvalidInput:
        cap = self.config.max_file_bytes
        what = f"more than {human_size(cap)}" if at_least else human_size(size)
        return InvalidInput(
            f"This file is {what}; the vault accepts files up to {human_size(cap)}.",
            size=size,
            limit=cap,
        )

    @staticmethod
    def _kind(kind: VaultKind | str) -> VaultKind:
        try:
            return VaultKind(kind)
        except ValueError:
            choices = ", ".join(k.value for k in VaultKind)
            raise InvalidInput(f"Unknown file kind {kind!r}; expected one of {choices}.") from None

    # -- items -----------------------------------------------------------------------------------
    async def get(self, actor: Actor, item_id: int, *, include_deleted: bool = False) -> VaultItem:
        async with self.uow.read() as session:
            item = await repo.get_item(
                session, item_id, actor.tenant_id, include_deleted=include_deleted
            )
        if item is None:
            raise NotFound(f"File #{item_id} does not exist in your workspace.")
        return item

    async def page(
        self,
        actor: Actor,
        *,
        kind: str | None = None,
        nsfw: bool | None = None,
        page: int = 0,
        size: int = 8,
        files_only: bool = False,
    ) -> Page[VaultItem]:
        """Live items, newest first; `kind`/`nsfw` filter (None = any); `files_only`: no
        batches or short links."""
        if kind is not None:
            kind = self._kind(kind).value
        page, size = max(0, page), max(1, size)
        async with self.uow.read() as session:
            rows, total = await repo.page_items(
                session,
                tenant_id=actor.tenant_id,
                kind=kind,
                nsfw=nsfw,
                offset=page * size,
                limit=size,
                files_only=files_only,
            )
        pages = _page_count(total, size)
        if page >= pages and total:
            return await self.page(
                actor, kind=kind, nsfw=nsfw, page=pages - 1, size=size, files_only=files_only
            )
        return Page(rows, total, page, pages)

    async def stats(self, actor: Actor) -> VaultStats:
        async with self.uow.read() as session:
            totals = await repo.totals_by_kind(session, actor.tenant_id)
            active = await repo.count_active_links(session, actor.tenant_id, self.clock.now())
        return VaultStats(
            by_kind={t.kind: KindStats(t.count, t.bytes, t.telegram_only) for t in totals},
            active_links=active,
        )

    async def rename(self, actor: Actor, item_id: int, new_name: str) -> VaultItem:
        """Rename; the old extension is kept when the new name has none."""
        actor.require(Role.operator, "rename files")
        item = await self.get(actor, item_id)
        stem, _ = split_extension(clean_text(new_name or ""))
        if not stem.strip(" ._-"):
            raise InvalidInput("That name has no usable characters; send a different one.")
        _, old_ext = split_extension(item.name)
        name = sanitize_name(new_name, extension=old_ext or None)
        old_name = item.name
        async with self.uow.write() as session:
            updated = await repo.update_item(
                session, item_id=item_id, tenant_id=actor.tenant_id, values={"name": name}
            )
            if updated is None:
                raise Conflict(f"File #{item_id} was deleted meanwhile.")
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="vault.rename",
                target=f"vault_item:{item_id}",
                details={"from": old_name, "to": name},
            )
        return updated

    async def set_nsfw(self, actor: Actor, item_id: int, nsfw: bool) -> VaultItem:
        actor.require(Role.operator, "change files")
        async with self.uow.write() as session:
            updated = await repo.update_item(
                session, item_id=item_id, tenant_id=actor.tenant_id, values={"nsfw": nsfw}
            )
            if updated is None:
                raise NotFound(f"File #{item_id} does not exist in your workspace.")
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="vault.nsfw",
                target=f"vault_item:{item_id}",
                details={"nsfw": nsfw},
            )
        return updated

    async def delete(self, actor: Actor, item_id: int) -> int:
        """Soft-delete an item and revoke its links; returns how many links were revoked.

        The bytes stay in the blob store: other items may share them (content addressing)."""
        actor.require(Role.operator, "delete files")
        now = self.clock.now()
        async with self.uow.write() as session:
            deleted = await repo.update_item(
                session, item_id=item_id, tenant_id=actor.tenant_id, values={"deleted_at": now}
            )
            if deleted is None:
                if await repo.get_item(session, item_id, actor.tenant_id, include_deleted=True):
                    raise Conflict(f"File #{item_id} was already deleted.")
                raise NotFound(f"File #{item_id} does not exist in your workspace.")
            revoked = await repo.revoke_links_of_item(
                session, item_id=item_id, now=now, by=actor.user_id
            )
            # a batch whose last file this was goes with it (its links deliver nothing now)
            for batch_id in await repo.batches_left_empty(session, item_id):
                await repo.update_item(
                    session,
                    item_id=batch_id,
                    tenant_id=actor.tenant_id,
                    values={"deleted_at": now},
                )
                revoked += await repo.revoke_links_of_item(
                    session, item_id=batch_id, now=now, by=actor.user_id
                )
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="vault.delete",
                target=f"vault_item:{item_id}",
                details={"name": deleted.name, "links_revoked": revoked},
            )
        return revoked

    async def record_file_id(
        self, item_id: int, file_id: str, file_unique_id: str | None = None
    ) -> None:
        """Cache the `file_id` Telegram gave an upload of this item's bytes."""
        await ClaimService(self.uow, self.clock).record_file_id(item_id, file_id, file_unique_id)

    # -- batches and short links -------------------------------------------------------------------
    async def create_batch(self, actor: Actor, item_ids: list[int]) -> VaultItem:
        """A batch of the workspace's files, in the given order: one link then delivers all
        of them for one use. Duplicates are dropped; 2 to MAX_BATCH_ITEMS files."""
        actor.require(Role.operator, "create links")
        ids = list(dict.fromkeys(item_ids))
        if len(ids) < 2:
            raise InvalidInput("Choose at least two files for a batch link.")
        if len(ids) > MAX_BATCH_ITEMS:
            raise InvalidInput(f"A batch link holds at most {MAX_BATCH_ITEMS} files.")
        now = self.clock.now()
        async with self.uow.write() as session:
            items = []
            for item_id in ids:
                item = await repo.get_item(session, item_id, actor.tenant_id)
                if item is None:
                    raise NotFound(f"File #{item_id} does not exist in your workspace.")
                if not item.is_file:
                    raise InvalidInput(f"#{item_id} is a {item.kind}, not a file.")
                items.append(item)
            batch = await repo.add_item(
                session,
                {
                    "tenant_id": actor.tenant_id,
                    "kind": VaultKind.batch.value,
                    "name": f"{len(items)} files",
                    "mime": BATCH_MIME,
                    "size": None,  # the members' bytes are counted once, as theirs
                    "nsfw": any(i.nsfw for i in items),
                    "uploaded_by": actor.user_id,
                    "created_at": now,
                },
            )
            await repo.add_batch_members(session, batch.id, ids)
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="vault.batch.create",
                target=f"vault_item:{batch.id}",
                details={"items": ids},
            )
        return batch

    async def note_album_part(
        self, actor: Actor, media_group_id: str, message_id: int, item_id: int
    ) -> None:
        """`item_id` arrived in album `media_group_id` (so `album_items` can link it whole)."""
        actor.require(Role.operator, "add files to the vault")
        async with self.uow.write() as session:
            await repo.add_album_part(
                session,
                tenant_id=actor.tenant_id,
                media_group_id=media_group_id[:64],
                item_id=item_id,
                message_id=message_id,
                now=self.clock.now(),
            )

    async def album_items(self, actor: Actor, media_group_id: str) -> list[VaultItem]:
        """The live files of an album sent to the bot, in the album's order."""
        async with self.uow.read() as session:
            return await repo.album_items(session, actor.tenant_id, media_group_id)

    async def batch_items(self, actor: Actor, batch_id: int) -> list[VaultItem]:
        """A batch's live files, in order."""
        batch = await self.get(actor, batch_id, include_deleted=True)
        if batch.kind != VaultKind.batch:
            raise InvalidInput(f"#{batch_id} is not a batch.")
        async with self.uow.read() as session:
            return await repo.batch_members(session, batch.id)

    async def shorten(self, actor: Actor, url: str) -> VaultItem:
        """A URL item: its links are short links whose clicks are counted (see `check_url`)."""
        actor.require(Role.operator, "create links")
        target = check_url(url)
        async with self.uow.write() as session:
            item = await repo.add_item(
                session,
                {
                    "tenant_id": actor.tenant_id,
                    "kind": VaultKind.url.value,
                    "name": host_of(target)[:255],
                    "mime": URL_MIME,
                    "size": None,
                    "nsfw": False,
                    "target_url": target,
                    "uploaded_by": actor.user_id,
                    "created_at": self.clock.now(),
                },
            )
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="vault.url.create",
                target=f"vault_item:{item.id}",
                details={"host": item.name},
            )
        return item

    # -- links -----------------------------------------------------------------------------------
    async def create_link(
        self,
        actor: Actor,
        item_id: int,
        *,
        lifetime_seconds: int,
        max_uses: int,
        protect_content: bool = False,
        auto_delete_seconds: int | None = None,
        hide_name: bool = False,
    ) -> NewLink:
        """A new claim link. The returned `code` is the only copy: show it once.
        `hide_name`: the HTTP claim page shows the file's kind and size, not its name."""
        actor.require(Role.operator, "create links")
        _check_bounds(lifetime_seconds, max_uses, auto_delete_seconds)
        now = self.clock.now()
        code = new_claim_code()
        async with self.uow.write() as session:
            item = await self.get(actor, item_id)
            link = await repo.add_link(
                session,
                {
                    "tenant_id": actor.tenant_id,
                    "item_id": item.id,
                    "code_hash": hash_code(code),
                    "expires_at": now + timedelta(seconds=lifetime_seconds),
                    "max_uses": max_uses,
                    "used_count": 0,
                    "protect_content": bool(protect_content),
                    "auto_delete_seconds": auto_delete_seconds,
                    "hide_name": bool(hide_name),
                    "created_by": actor.user_id,
                    "created_at": now,
                },
            )
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="vault.link.create",
                target=f"vault_link:{link.id}",
                details={
                    "item_id": item.id,
                    "max_uses": max_uses,
                    "expires_at": link.expires_at.isoformat(),
                    "protect_content": bool(protect_content),
                    "auto_delete_seconds": auto_delete_seconds,
                    "hide_name": bool(hide_name),
                },
            )
        return NewLink(code=code, link=link, item=item)

    async def revoke(self, actor: Actor, link_id: int) -> VaultLink:
        actor.require(Role.operator, "revoke links")
        async with self.uow.write() as session:
            link = await repo.revoke_link(
                session,
                link_id=link_id,
                tenant_id=actor.tenant_id,
                now=self.clock.now(),
                by=actor.user_id,
            )
            if link is None:
                existing = await repo.get_link(session, link_id, actor.tenant_id)
                if existing is None:
                    raise NotFound(f"Link #{link_id} does not exist in your workspace.")
                raise Conflict(
                    f"Link #{link_id} was already revoked.", revoked_at=existing.revoked_at
                )
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="vault.link.revoke",
                target=f"vault_link:{link_id}",
                details={"item_id": link.item_id, "used": link.used_count},
            )
        return link

    async def get_link(self, actor: Actor, link_id: int) -> VaultLink:
        async with self.uow.read() as session:
            link = await repo.get_link(session, link_id, actor.tenant_id)
        if link is None:
            raise NotFound(f"Link #{link_id} does not exist in your workspace.")
        return link

    async def links(
        self,
        actor: Actor,
        *,
        active_only: bool = True,
        item_id: int | None = None,
        page: int = 0,
        size: int = 8,
    ) -> Page[tuple[VaultLink, VaultItem]]:
        """(link, item) pairs. Active: soonest to expire first; all: newest first."""
        page, size = max(0, page), max(1, size)
        async with self.uow.read() as session:
            rows, total = await repo.page_links(
                session,
                tenant_id=actor.tenant_id,
                now=self.clock.now(),
                active_only=active_only,
                item_id=item_id,
                offset=page * size,
                limit=size,
            )
        pages = _page_count(total, size)
        if page >= pages and total:
            return await self.links(
                actor, active_only=active_only, item_id=item_id, page=pages - 1, size=size
            )
        return Page(rows, total, page, pages)

    async def click_counts(self, actor: Actor, link_ids: list[int]) -> dict[int, int]:
        """Every delivery each link made (first and repeated): a short link's clicks."""
        if not link_ids:
            return {}
        async with self.uow.read() as session:
            return await repo.deliveries_by_link(session, actor.tenant_id, link_ids)

    async def access_log(
        self, actor: Actor, item_id: int, *, page: int = 0, size: int = 10
    ) -> Page[VaultClaim]:
        """Every claim attempt on the item's links, newest first (deleted items included)."""
        actor.require(Role.operator, "read the access log")
        await self.get(actor, item_id, include_deleted=True)
        page, size = max(0, page), max(1, size)
        async with self.uow.read() as session:
            rows, total = await repo.page_claims(
                session,
                tenant_id=actor.tenant_id,
                item_id=item_id,
                link_id=None,
                offset=page * size,
                limit=size,
            )
        pages = _page_count(total, size)
        if page >= pages and total:
            return await self.access_log(actor, item_id, page=pages - 1, size=size)
        return Page(rows, total, page, pages)


def _check_bounds(lifetime_seconds: int, max_uses: int, auto_delete_seconds: int | None) -> None:
    if not MIN_LINK_LIFETIME_SECONDS <= lifetime_seconds <= MAX_LINK_LIFETIME_SECONDS:
        raise InvalidInput("A link must live between 1 minute and 365 days.")
    if not 1 <= max_uses <= MAX_LINK_USES:
        raise InvalidInput(f"Max uses must be between 1 and {MAX_LINK_USES:,}.")
    if auto_delete_seconds is not None and not (
        MIN_AUTO_DELETE_SECONDS <= auto_delete_seconds <= MAX_AUTO_DELETE_SECONDS
    ):
        raise InvalidInput("Auto-delete must be between 1 and 2880 minutes (48 hours), or off.")


def _description(caption: str | None) -> str | None:
    text = (caption or "").strip()
    return text[:MAX_DESCRIPTION_CHARS] or None


async def _close(content: AsyncIterator[bytes] | None) -> None:
    aclose = getattr(content, "aclose", None)
    if aclose is not None:
        await aclose()
