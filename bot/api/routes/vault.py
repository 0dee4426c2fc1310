"""The vault over HTTP: upload (streamed), items, links, access log, stats, cleanup.

Uploads go through the same `VaultService.ingest` as a file sent in chat: the same caps,
sha256 dedupe and sniffing, and the bytes stream from the request into the blob store in
chunks, never whole in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, Literal, TypeVar

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.api.models import MAX_ID, PageQuery, Strict, json_int
from bot.api.problems import MalformedRequest
from bot.api.registry import Call, Registry
from bot.api.server import DEPS
from core.errors import InvalidInput
from core.vault.codes import deep_link, http_link
from core.vault.config import (
    MAX_AUTO_DELETE_SECONDS,
    MAX_LINK_LIFETIME_SECONDS,
    MAX_LINK_USES,
    MIN_AUTO_DELETE_SECONDS,
    MIN_LINK_LIFETIME_SECONDS,
)
from core.vault.jobs import EXPIRE_LINKS
from core.vault.types import IngestSource, Page
from storage.models import Role
from storage.vault_models import VaultKind

CHUNK = 256 * 1024
T = TypeVar("T")
ItemKind = Literal[tuple(k.value for k in VaultKind)]  # type: ignore[valid-type]
FileKind = Literal[tuple(k.value for k in VaultKind if k.is_file)]  # type: ignore[valid-type]


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: str
    mime: str
    size: int | None
    sha256: str | None
    nsfw: bool
    description: str | None
    telegram_only: bool = Field(description="Telegram holds the only copy: not downloadable.")
    created_at: datetime
    deleted_at: datetime | None


class UploadOut(BaseModel):
    item: ItemOut
    duplicate: bool = Field(description="These bytes were already in the vault: that item.")


class ItemList(BaseModel):
    items: list[ItemOut]
    total: int
    limit: int
    offset: int


class ItemQuery(PageQuery):
    kind: ItemKind | None = None  # type: ignore[valid-type]
    nsfw: bool | None = None


class ItemPath(Strict):
    item_id: int = Field(ge=1, le=MAX_ID)


class LinkPath(Strict):
    link_id: int = Field(ge=1, le=MAX_ID)


class ItemPatch(Strict):
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    # not nullable: leave a field out to keep it
    name: str = Field(None, min_length=1, max_length=200)  # type: ignore[assignment]
    nsfw: bool = Field(None)  # type: ignore[assignment]

    @model_validator(mode="after")
    def something(self) -> ItemPatch:
        if self.name is None and self.nsfw is None:
            raise ValueError("give name, nsfw or both")
        return self


class DeletedOut(BaseModel):
    id: int
    links_revoked: int


LinkLifetime = json_int(ge=MIN_LINK_LIFETIME_SECONDS, le=MAX_LINK_LIFETIME_SECONDS)
LinkUses = json_int(ge=1, le=MAX_LINK_USES)
AutoDelete = json_int(ge=MIN_AUTO_DELETE_SECONDS, le=MAX_AUTO_DELETE_SECONDS)


class LinkIn(Strict):
    lifetime_seconds: LinkLifetime = Field(description="How long the link works.")
    max_uses: LinkUses
    protect_content: bool = False
    auto_delete_seconds: AutoDelete | None = Field(
        None, description="Delete the delivered file from the claimer's chat after this long."
    )


class LinkOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    item_id: int
    expires_at: datetime
    max_uses: int
    used_count: int
    uses_left: int
    revoked_at: datetime | None
    protect_content: bool
    auto_delete_seconds: int | None
    created_at: datetime


class NewLinkOut(LinkOut):
    code: str = Field(description="Shown once: only its hash is kept.")
    deep_link: str | None = Field(description="null until the bot has first reached Telegram.")
    claim_url: str


class LinkList(BaseModel):
    items: list[LinkOut]
    total: int
    limit: int
    offset: int


class LinkQuery(PageQuery):
    active: bool = Field(True, description="Only links that still work.")


class ClaimOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    link_id: int | None
    channel: str
    claimer_kind: str
    claimer_id: str
    outcome: str
    at: datetime


class ClaimList(BaseModel):
    items: list[ClaimOut]
    total: int
    limit: int
    offset: int


class KindStatsOut(BaseModel):
    count: int
    bytes: int
    telegram_only: int


class StatsOut(BaseModel):
    items: int
    bytes: int
    active_links: int
    by_kind: dict[str, KindStatsOut]


class CleanupOut(BaseModel):
    job_id: int | None = Field(description="The cleanup job; null when one is already queued.")


def item_out(item: Any) -> ItemOut:
    return ItemOut.model_validate(
        {
            **{k: getattr(item, k) for k in ItemOut.model_fields if hasattr(item, k)},
            "telegram_only": item.blob_key is None,
        }
    )


def link_out(link: Any, model: type[LinkOut] = LinkOut, **extra: Any) -> LinkOut:
    values = {k: getattr(link, k) for k in LinkOut.model_fields if hasattr(link, k)}
    values["uses_left"] = max(0, link.max_uses - link.used_count)
    return model.model_validate({**values, **extra})


async def window(
    fetch: Callable[[int, int], Awaitable[Page[T]]], query: PageQuery
) -> tuple[list[T], int]:
    """Rows [offset, offset + limit) from a service that pages by (page, size=limit): at most
    two pages. The services clamp a page past the end to the last one; that is empty here."""
    first = query.offset // query.limit
    skip = query.offset - first * query.limit
    rows: list[T] = []
    total = 0
    for page in (first, first + 1) if skip else (first,):
        result = await fetch(page, query.limit)
        total = result.total
        if result.page == page:
            rows.extend(result.rows)
    return rows[skip : skip + query.limit], total


class UploadQuery(Strict):
    name: str | None = Field(
        None, min_length=1, max_length=200, description="Defaults to the file part's filename."
    )
    kind: FileKind = Field(  # type: ignore[valid-type]
        VaultKind.document.value, description="How Telegram sends it back to claimers."
    )


class FileOnly(Strict):
    """The multipart body: one part, `file`."""


def register(reg: Registry) -> None:
    @reg.route(
        "POST",
        "/vault/items",
        summary="Upload a file (multipart, streamed)",
        tag="vault",
        role=Role.operator,
        response=UploadOut,
        status=201,
        query=UploadQuery,
        form=FileOnly,
    )
    async def upload_item(call: Call[Any, UploadQuery, Any]) -> UploadOut:
        reader, part = await _file_part(call.request)
        source = IngestSource(
            kind=call.query.kind,
            name=call.query.name or part.filename,
            mime=part.headers.get("Content-Type"),
            content=_chunks(reader, part),
        )
        result = await call.services.vault.ingest(call.actor, source)
        return UploadOut(item=item_out(result.item), duplicate=result.duplicate)

    @reg.route(
        "GET",
        "/vault/items",
        summary="List files",
        tag="vault",
        role=Role.viewer,
        response=ItemList,
        query=ItemQuery,
    )
    async def list_items(call: Call[Any, ItemQuery, Any]) -> ItemList:
        q, vault = call.query, call.services.vault
        rows, total = await window(
            lambda page, size: vault.page(
                call.actor, kind=q.kind, nsfw=q.nsfw, page=page, size=size
            ),
            q,
        )
        return ItemList(
            items=[item_out(i) for i in rows], total=total, limit=q.limit, offset=q.offset
        )

    @reg.route(
        "GET",
        "/vault/items/{item_id:\\d+}",
        summary="Get a file",
        tag="vault",
        role=Role.viewer,
        response=ItemOut,
        path_params=ItemPath,
    )
    async def get_item(call: Call[ItemPath, Any, Any]) -> ItemOut:
        return item_out(await call.services.vault.get(call.actor, call.path.item_id))

    @reg.route(
        "PATCH",
        "/vault/items/{item_id:\\d+}",
        summary="Rename a file or mark it NSFW",
        tag="vault",
        role=Role.operator,
        response=ItemOut,
        path_params=ItemPath,
        body=ItemPatch,
    )
    async def update_item(call: Call[ItemPath, Any, ItemPatch]) -> ItemOut:
        vault, item_id = call.services.vault, call.path.item_id
        item = await vault.get(call.actor, item_id)
        if call.body.name is not None and call.body.name != item.name:
            item = await vault.rename(call.actor, item_id, call.body.name)
        if call.body.nsfw is not None and call.body.nsfw != item.nsfw:
            item = await vault.set_nsfw(call.actor, item_id, call.body.nsfw)
        return item_out(item)

    @reg.route(
        "DELETE",
        "/vault/items/{item_id:\\d+}",
        summary="Delete a file (its links stop working)",
        tag="vault",
        role=Role.operator,
        response=DeletedOut,
        path_params=ItemPath,
    )
    async def delete_item(call: Call[ItemPath, Any, Any]) -> DeletedOut:
        revoked = await call.services.vault.delete(call.actor, call.path.item_id)
        return DeletedOut(id=call.path.item_id, links_revoked=revoked)

    @reg.route(
        "POST",
        "/vault/items/{item_id:\\d+}/links",
        summary="Create a claim link",
        tag="vault",
        role=Role.operator,
        response=NewLinkOut,
        status=201,
        path_params=ItemPath,
        body=LinkIn,
    )
    async def create_link(call: Call[ItemPath, Any, LinkIn]) -> NewLinkOut:
        deps = call.request.config_dict[DEPS]
        new = await call.services.vault.create_link(
            call.actor,
            call.path.item_id,
            lifetime_seconds=call.body.lifetime_seconds,
            max_uses=call.body.max_uses,
            protect_content=call.body.protect_content,
            auto_delete_seconds=call.body.auto_delete_seconds,
        )
        return link_out(  # type: ignore[return-value]
            new.link,
            NewLinkOut,
            code=new.code,
            deep_link=deep_link(deps.bot_username, new.code) if deps.bot_username else None,
            claim_url=http_link(deps.public_base_url, new.code),
        )

    @reg.route(
        "GET",
        "/vault/items/{item_id:\\d+}/links",
        summary="A file's links",
        tag="vault",
        role=Role.viewer,
        response=LinkList,
        path_params=ItemPath,
        query=LinkQuery,
    )
    async def item_links(call: Call[ItemPath, LinkQuery, Any]) -> LinkList:
        vault = call.services.vault
        await vault.get(call.actor, call.path.item_id, include_deleted=True)
        return await _links(call, item_id=call.path.item_id)

    @reg.route(
        "GET",
        "/vault/links",
        summary="Claim links",
        tag="vault",
        role=Role.viewer,
        response=LinkList,
        query=LinkQuery,
    )
    async def list_links(call: Call[Any, LinkQuery, Any]) -> LinkList:
        return await _links(call, item_id=None)

    @reg.route(
        "POST",
        "/vault/links/{link_id:\\d+}/revoke",
        summary="Revoke a link",
        tag="vault",
        role=Role.operator,
        response=LinkOut,
        path_params=LinkPath,
    )
    async def revoke_link(call: Call[LinkPath, Any, Any]) -> LinkOut:
        return link_out(await call.services.vault.revoke(call.actor, call.path.link_id))

    @reg.route(
        "GET",
        "/vault/items/{item_id:\\d+}/access-log",
        summary="Every claim of a file's links",
        tag="vault",
        role=Role.operator,
        response=ClaimList,
        path_params=ItemPath,
        query=PageQuery,
    )
    async def access_log(call: Call[ItemPath, PageQuery, Any]) -> ClaimList:
        vault = call.services.vault
        rows, total = await window(
            lambda page, size: vault.access_log(
                call.actor, call.path.item_id, page=page, size=size
            ),
            call.query,
        )
        return ClaimList(
            items=[ClaimOut.model_validate(c) for c in rows],
            total=total,
            limit=call.query.limit,
            offset=call.query.offset,
        )

    @reg.route(
        "GET",
        "/vault/stats",
        summary="Counts and bytes by kind",
        tag="vault",
        role=Role.viewer,
        response=StatsOut,
    )
    async def vault_stats(call: Call[Any, Any, Any]) -> StatsOut:
        s = await call.services.vault.stats(call.actor)
        return StatsOut(
            items=s.items,
            bytes=s.bytes,
            active_links=s.active_links,
            by_kind={
                k: KindStatsOut(count=v.count, bytes=v.bytes, telegram_only=v.telegram_only)
                for k, v in s.by_kind.items()
            },
        )

    @reg.route(
        "POST",
        "/vault/links/cleanup",
        summary="Forget long-dead links and their access log now",
        tag="vault",
        role=Role.operator,
        response=CleanupOut,
    )
    async def cleanup_links(call: Call[Any, Any, Any]) -> CleanupOut:
        job_id = await call.services.jobs.submit(
            call.actor.tenant_id,
            EXPIRE_LINKS,
            {},
            actor=call.actor,
            dedupe_key=f"{EXPIRE_LINKS}:api:{call.actor.tenant_id}:{call.services.jobs.clock.now():%Y%m%d%H%M}",
        )
        return CleanupOut(job_id=job_id)


async def _links(call: Call[Any, LinkQuery, Any], item_id: int | None) -> LinkList:
    vault, q = call.services.vault, call.query
    rows, total = await window(
        lambda page, size: vault.links(
            call.actor, active_only=q.active, item_id=item_id, page=page, size=size
        ),
        q,
    )
    return LinkList(
        items=[link_out(link) for link, _item in rows],
        total=total,
        limit=call.query.limit,
        offset=call.query.offset,
    )


async def _file_part(request: web.Request) -> tuple[MultipartReader, BodyPartReader]:
    """The `file` part, ready to stream; name and kind come in the query string, so they are
    checked before any byte is stored."""
    try:
        reader = await request.multipart()
        part = await reader.next()
    except (HttpProcessingError, ValueError, UnicodeError) as exc:
        raise MalformedRequest("The multipart body cannot be read.") from exc
    if not isinstance(part, BodyPartReader) or part.name != "file":
        raise InvalidInput("Send the file as the multipart part named file (and nothing else).")
    return reader, part


async def _chunks(reader: MultipartReader, part: BodyPartReader) -> AsyncIterator[bytes]:
    """The file's bytes; a part after it fails the upload before anything is kept."""
    try:
        while chunk := await part.read_chunk(CHUNK):
            yield chunk
        extra = await reader.next()
    except (HttpProcessingError, ValueError) as exc:
        raise MalformedRequest("The upload was cut off or is not valid multipart.") from exc
    if extra is not None:
        raise InvalidInput("Send one part, file, and nothing after it.")
