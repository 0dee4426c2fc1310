"""The HTTP door of the vault: `GET /claim/<code>` and `GET|HEAD /files/<signed token>`.

`/claim/<code>` spends a use (or re-delivers to the same address for free) and answers with
JSON metadata and a signed download URL when the client asks for JSON, otherwise with a 303
redirect to that URL. `/files/<token>` streams the bytes from the blob store in bounded
memory with single-range support, an ETag (the sha256) and a safe Content-Disposition.

Status codes: 403 forged or expired signature, 404 unknown or malformed code, 409 a
Telegram-only file, 410 an expired, used-up or revoked link (or a deleted file), 416 an
unsatisfiable range, 429 too many requests from one address (with Retry-After).

The per-address limits are counted in the database (`core.ratelimit.SharedLimiter`, one
upsert per request), so several web processes behind one balancer share them: the limit is
per address whichever process a request lands on.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from ipaddress import ip_address
from typing import Any
from urllib.parse import quote

from aiohttp import web

from core.errors import Forbidden
from core.ratelimit import Limit, SharedLimiter
from core.vault.errors import Gone, NotDownloadable
from core.vault.gateway import Download, VaultGateway
from core.vault.names import ascii_fallback
from storage.blobs.errors import BlobNotFound
from storage.vault_models import ClaimOutcome

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 256 * 1024

# What each refusal of a claim answers over HTTP.
REFUSAL_STATUS: dict[ClaimOutcome, int] = {
    ClaimOutcome.denied_malformed: 404,
    ClaimOutcome.denied_unknown: 404,
    ClaimOutcome.denied_expired: 410,
    ClaimOutcome.denied_used_up: 410,
    ClaimOutcome.denied_revoked: 410,
    ClaimOutcome.denied_deleted: 410,
    ClaimOutcome.denied_telegram_only: 409,
    ClaimOutcome.denied_rate_limited: 429,
}

# The bytes are whatever an operator uploaded: never let a browser render them on our origin.
SAFE_FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Referrer-Policy": "no-referrer",
}
NO_STORE = {"Cache-Control": "no-store", "Vary": "Accept", "Referrer-Policy": "no-referrer"}

_DIGITS = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True, slots=True)
class ClaimRoutesConfig:
    """Limits and addressing of the claim routes.

    `trusted_proxy_hops`: 0 (default) uses the socket's peer address; N > 0 trusts N
    reverse proxies and takes the Nth address from the right of X-Forwarded-For. Turn it
    on only behind a proxy that sets that header, or clients can pick their own address.
    """

    claim_limit: int = 20
    claim_window_seconds: float = 60.0
    download_limit: int = 240
    download_window_seconds: float = 60.0
    trusted_proxy_hops: int = 0
    public_base_url: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE


def add_claim_routes(
    app: web.Application, vault: VaultGateway, config: ClaimRoutesConfig | None = None
) -> None:
    """Register `/claim/{code}` and `/files/{token}` on `app`."""
    routes = _ClaimRoutes(vault, config or ClaimRoutesConfig())
    # No HEAD on /claim: a HEAD must not spend a use.
    app.router.add_get("/claim/{code}", routes.claim, allow_head=False)
    app.router.add_get("/files/{token}", routes.files)


class _ClaimRoutes:
    def __init__(self, vault: VaultGateway, config: ClaimRoutesConfig) -> None:
        self.vault = vault
        self.config = config
        self.claim_limiter = SharedLimiter(
            "claim:http", Limit(config.claim_limit, config.claim_window_seconds), vault.clock
        )
        self.download_limiter = SharedLimiter(
            "download:http",
            Limit(config.download_limit, config.download_window_seconds),
            vault.clock,
        )

    async def _hit(self, limiter: SharedLimiter, address: str) -> float | None:
        """Count a request against `address` (one short write); seconds to wait, or None."""
        async with self.vault.uow.write() as session:
            return await limiter.hit_in(session, address)

    # -- /claim/{code} ---------------------------------------------------------------------------
    async def claim(self, request: web.Request) -> web.StreamResponse:
        wants_json = "application/json" in request.headers.get("Accept", "").lower()
        address = client_address(request, self.config.trusted_proxy_hops)
        retry_after = await self._hit(self.claim_limiter, address)
        if retry_after is not None:
            return _too_many(retry_after, wants_json)

        result = await self.vault.claim(request.match_info["code"], address)
        if not result.delivers:
            status = REFUSAL_STATUS.get(result.outcome, 410)
            return _refusal(status, result.outcome.value, result.reason_text, wants_json)

        assert result.item is not None and result.link is not None
        signed = self.vault.sign_download(result)
        url = f"{self._base_url(request)}/files/{signed.token}"
        if not wants_json:
            return web.Response(status=303, headers={"Location": url, **NO_STORE})
        item, link = result.item, result.link
        body = {
            "name": item.name,
            "size": item.size,
            "mime": item.mime,
            "kind": item.kind,
            "sha256": item.sha256,
            "download_url": url,
            "expires_at": _iso(signed.expires_at),
            "link_expires_at": _iso(link.expires_at),
            "uses_left": link.uses_left,
            "redelivered": result.outcome is ClaimOutcome.redelivered,
        }
        return web.json_response(body, headers=NO_STORE)

    def _base_url(self, request: web.Request) -> str:
        if self.config.public_base_url:
            return self.config.public_base_url.rstrip("/")
        return f"{request.scheme}://{request.host}"

    # -- /files/{token} ----------------------------------------------------------------------------
    async def files(self, request: web.Request) -> web.StreamResponse:
        address = client_address(request, self.config.trusted_proxy_hops)
        retry_after = await self._hit(self.download_limiter, address)
        if retry_after is not None:
            return _too_many(retry_after, wants_json=False)
        try:
            download = await self.vault.open_download(request.match_info["token"])
        except Forbidden as exc:
            return _refusal(403, "forbidden", exc.message, wants_json=False)
        except Gone as exc:
            return _refusal(410, "gone", exc.message, wants_json=False)
        except NotDownloadable as exc:
            return _refusal(409, "telegram_only", exc.message, wants_json=False)

        etag = f'"{download.sha256}"'
        left = (download.expires_at - self.vault.clock.now()).total_seconds()
        headers = _file_headers(download, etag, max(0, int(left)))
        if _etag_matches(request.headers.get("If-None-Match"), etag):
            return web.Response(status=304, headers=headers)

        size = download.size
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if if_range is not None and if_range.strip() != etag:
            range_header = None  # the client's copy is another version: send it all
        wanted = parse_range(range_header, size)
        if wanted is UNSATISFIABLE:
            return web.Response(
                status=416,
                text="The requested range is outside the file.\n",
                headers={**headers, "Content-Range": f"bytes */{size}"},
            )
        start, end = wanted if isinstance(wanted, tuple) else (0, size)
        status = 206 if isinstance(wanted, tuple) else 200
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"

        response = web.StreamResponse(status=status, headers=headers)
        response.content_type = download.mime
        response.content_length = end - start
        if request.method == "HEAD":
            await response.prepare(request)
            await response.write_eof()
            return response
        try:
            reader = await self.vault.blobs.open_range(
                download.blob_key, start, end, chunk_size=self.config.chunk_size
            )
        except BlobNotFound:
            log.error("vault item %s: blob %s is missing", download.item_id, download.blob_key)
            return _refusal(410, "gone", "The file is no longer available.", wants_json=False)
        async with reader:
            await response.prepare(request)
            try:
                async for chunk in reader:
                    await response.write(chunk)  # waits while the client is slow: bounded memory
            except ConnectionResetError:
                log.debug("download of item %s aborted by the client", download.item_id)
                return response
        await response.write_eof()
        return response


# -- helpers ---------------------------------------------------------------------------------
class _Unsatisfiable:
    def __repr__(self) -> str:
        return "UNSATISFIABLE"


UNSATISFIABLE: Any = _Unsatisfiable()


def parse_range(header: str | None, size: int) -> tuple[int, int] | _Unsatisfiable | None:
    """A single `bytes=` range as `(start, end)` with an exclusive end, `UNSATISFIABLE`, or
    None when the whole file should be sent (no header, a syntax we ignore, several ranges).

    `bytes=a-b`, `bytes=a-` (to the end) and `bytes=-n` (the last n bytes) are understood.
    RFC 9110 lets a server ignore a Range it does not want to serve; multi-range requests
    get the whole file.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    spec = spec.strip()
    if unit.strip().lower() != "bytes" or not spec or "," in spec:
        return None
    first, dash, last = spec.partition("-")
    first, last = first.strip(), last.strip()
    if not dash:
        return None
    if not first:
        if not _DIGITS.fullmatch(last):
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - suffix), size
    if not _DIGITS.fullmatch(first) or (last and not _DIGITS.fullmatch(last)):
        return None
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return UNSATISFIABLE
    end = size if not last else min(int(last) + 1, size)
    return start, end


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII `filename` and the exact name as RFC 8187 `filename*`."""
    fallback = ascii_fallback(name).replace('"', "_").replace("\\", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def client_address(request: web.Request, trusted_proxy_hops: int = 0) -> str:
    """The address a claim is counted against (see `ClaimRoutesConfig.trusted_proxy_hops`)."""
    peer = request.remote or "unknown"
    if trusted_proxy_hops <= 0:
        return peer
    hops = [
        part.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for part in header.split(",")
        if part.strip()
    ]
    if len(hops) < trusted_proxy_hops:
        return peer
    candidate = hops[-trusted_proxy_hops]
    try:
        return str(ip_address(candidate))
    except ValueError:
        return peer


def _file_headers(download: Download, etag: str, ttl_seconds: int) -> dict[str, str]:
    return {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": f"private, max-age={ttl_seconds}",
        "Last-Modified": format_datetime(download.created_at.astimezone(UTC), usegmt=True),
        "Content-Disposition": content_disposition(download.name),
        **SAFE_FILE_HEADERS,
    }


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)


def _refusal(status: int, error: str, message: str, wants_json: bool) -> web.Response:
    headers = dict(NO_STORE)
    if wants_json:
        return web.json_response(
            {"error": error, "message": message}, status=status, headers=headers
        )
    return web.Response(status=status, text=f"{message}\n", headers=headers)


def _too_many(retry_after: float, wants_json: bool) -> web.Response:
    response = _refusal(
        429, "rate_limited", "Too many requests; try again in a moment.", wants_json
    )
    response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
