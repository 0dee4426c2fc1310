"""The HTTP door of the vault: `GET|POST /claim/<code>` and `GET|HEAD /files/<signed token>`.

`GET /claim/<code>` is a landing page (or, with `Accept: application/json`, the metadata) and
spends nothing: link previewers (Telegram, Slack, WhatsApp, mail scanners) fetch every URL
they see. Its Download button is a form that POSTs to the same URL with a CSRF token bound to
the browser's cookie; `POST /claim/<code>` spends one use (or none for a browser that has the
file already) and answers 303 to a short-lived signed `/files/<token>` (JSON for scripts).
`/files/<token>` streams the bytes from the blob store in bounded memory with single-range
support, an ETag (the sha256) and a safe Content-Disposition.

The claimer is the browser: a random id in a signed, HttpOnly, SameSite=Lax cookie
(`core.vault.browsers`), never an address. Addresses only feed the rate limits.

Status codes: 403 a POST without a valid CSRF token, a forged or expired download signature;
404 unknown or malformed code; 409 a Telegram-only file; 410 an expired, used-up or revoked
link (or a deleted file); 416 an unsatisfiable range; 429 too many requests from one address
(with Retry-After).

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
from urllib.parse import quote, urlsplit

from aiohttp import web

from bot.web_claim_pages import ClaimPages, Refusal, add_static_routes, page_headers
from core.errors import Forbidden
from core.ratelimit import Limit, SharedLimiter
from core.vault.browsers import COOKIE_MAX_AGE_SECONDS, BrowserIds
from core.vault.errors import Gone, NotDownloadable
from core.vault.gateway import Download, VaultGateway
from core.vault.names import ascii_fallback
from core.vault.types import Claimer, ClaimResult
from storage.blobs.errors import BlobNotFound
from storage.vault_models import ClaimOutcome, VaultItem, VaultKind, VaultLink

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
# The headings of the refusal pages; the sentence under each is `ClaimResult.reason_text`.
REFUSAL_HEADING: dict[ClaimOutcome, str] = {
    ClaimOutcome.denied_malformed: "Link not found",
    ClaimOutcome.denied_unknown: "Link not found",
    ClaimOutcome.denied_expired: "Link expired",
    ClaimOutcome.denied_used_up: "No downloads left",
    ClaimOutcome.denied_revoked: "Link withdrawn",
    ClaimOutcome.denied_deleted: "File removed",
    ClaimOutcome.denied_telegram_only: "Only in Telegram",
    ClaimOutcome.denied_rate_limited: "Too many attempts",
}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
COOKIE_NAME = "opsdeck_claimer"
# Over https the cookie is `__Host-` prefixed: browsers then insist on Secure, Path=/ and no
# Domain, so no sibling subdomain can plant or overwrite it.
SECURE_COOKIE_NAME = "__Host-opsdeck_claimer"
STALE_FORM = Refusal(
    "Download not started",
    "The Download button you pressed did not come from this browser's copy of the page, "
    "so nothing was downloaded. Open the link again and press Download there. If this "
    "keeps happening, allow cookies for this site.",
    403,
)
TOO_MANY = Refusal("Too many requests", "Too many requests; try again in a moment.", 429)

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
    The address only keys the rate limits: it is never who claims.
    """

    claim_limit: int = 20
    claim_window_seconds: float = 60.0
    download_limit: int = 240
    download_window_seconds: float = 60.0
    trusted_proxy_hops: int = 0
    public_base_url: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE


def add_claim_routes(
    app: web.Application,
    vault: VaultGateway,
    config: ClaimRoutesConfig | None = None,
    *,
    secret_key: bytes,
) -> None:
    """Register `/claim/{code}`, `/files/{token}` and the pages' static files on `app`.

    `secret_key` signs the claimer cookies and CSRF tokens (OPSDECK_SECRET_KEY)."""
    routes = _ClaimRoutes(vault, config or ClaimRoutesConfig(), BrowserIds(secret_key))
    app.router.add_get("/claim/{code}", routes.landing)  # HEAD too: it spends nothing
    app.router.add_post("/claim/{code}", routes.claim)
    app.router.add_get("/files/{token}", routes.files)
    add_static_routes(app)


class _ClaimRoutes:
    def __init__(self, vault: VaultGateway, config: ClaimRoutesConfig, ids: BrowserIds) -> None:
        self.vault = vault
        self.config = config
        self.ids = ids
        self.pages = ClaimPages()
        self.page_headers = page_headers(config.public_base_url)
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

    # -- GET /claim/{code}: the landing page; spends nothing -------------------------------------
    async def landing(self, request: web.Request) -> web.StreamResponse:
        wants_json = _wants_json(request)
        retry_after = await self._limited(request)
        if retry_after is not None:
            return self._too_many(retry_after, wants_json)
        code = request.match_info["code"]
        browser_id = self.ids.read(request.cookies.get(self._cookie_name(request)))
        new_cookie = None
        if browser_id is None:
            browser_id, new_cookie = self.ids.new()
        result = await self.vault.preview(code, Claimer.browser(browser_id))
        if not result.delivers:
            return self._refused(result, wants_json)
        assert result.item is not None and result.link is not None
        item, link = result.item, result.link
        csrf = self.ids.csrf(browser_id, code)
        received_before = result.outcome is ClaimOutcome.redelivered
        response: web.Response
        if item.kind in (VaultKind.url, VaultKind.batch):
            response = await self._other_landing(result, code, csrf, wants_json)
        elif wants_json:
            response = web.json_response(
                {
                    "name": _shown_name(item, link),
                    "size": item.size,
                    "mime": item.mime,
                    "kind": item.kind,
                    "sha256": item.sha256,
                    "expires_at": _iso(link.expires_at),
                    "uses_left": link.uses_left,
                    "max_uses": link.max_uses,
                    "received_before": received_before,
                    "csrf_token": csrf,
                },
                headers=NO_STORE,
            )
        else:
            html = self.pages.landing(
                action=f"/claim/{code}",
                csrf=csrf,
                name=_shown_name(item, link),
                kind=str(item.kind),
                mime=item.mime,
                size=item.size,
                expires_at=link.expires_at,
                uses_left=link.uses_left,
                max_uses=link.max_uses,
                received_before=received_before,
                now=self.vault.clock.now(),
            )
            response = self._html(html, 200)
        if new_cookie is not None:
            self._set_cookie(request, response, new_cookie)
        return response

    # -- POST /claim/{code}: spends a use (or none for a browser that has the file) --------------
    async def claim(self, request: web.Request) -> web.StreamResponse:
        wants_json = _wants_json(request)
        retry_after = await self._limited(request)
        if retry_after is not None:
            return self._too_many(retry_after, wants_json)
        code = request.match_info["code"]
        browser_id = self.ids.read(request.cookies.get(self._cookie_name(request)))
        token = await _csrf_token(request)
        new_cookie = None
        if browser_id is None and token is None and wants_json:
            # A script without a cookie: a new claimer, like a browser on its first visit.
            # (Nothing here can act as anyone else: it has no identity to borrow.)
            browser_id, new_cookie = self.ids.new()
        elif not self.ids.csrf_ok(browser_id, code, token):
            # No cookie (cookies off, a cross-site form), a forged or tampered one, or a token
            # from another browser or another link: never claim in anyone's name.
            return self._stale_form(code, wants_json)
        assert browser_id is not None
        result = await self.vault.claim(code, Claimer.browser(browser_id))
        if not result.delivers:
            return self._refused(result, wants_json)

        assert result.item is not None and result.link is not None
        if result.item.kind in (VaultKind.url, VaultKind.batch):
            response = await self._other_claimed(request, result, browser_id, code, wants_json)
            if new_cookie is not None:
                self._set_cookie(request, response, new_cookie)
            return response
        signed = self.vault.sign_download(result)
        url = f"{self._base_url(request)}/files/{signed.token}"
        if not wants_json:
            response: web.Response = web.Response(
                status=303, headers={"Location": url, **self.page_headers}
            )
        else:
            item, link = result.item, result.link
            body = {
                "name": _shown_name(item, link),
                "size": item.size,
                "mime": item.mime,
                "kind": item.kind,
                "sha256": item.sha256,
                "download_url": url,
                "expires_at": _iso(signed.expires_at),
                "link_expires_at": _iso(link.expires_at),
                "uses_left": link.uses_left,
                "redelivered": result.outcome is ClaimOutcome.redelivered,
                "csrf_token": self.ids.csrf(browser_id, code),
            }
            response = web.json_response(body, headers=NO_STORE)
        if new_cookie is not None:
            self._set_cookie(request, response, new_cookie)
        return response

    # -- short links and batches: the same claim, other answers ---------------------------------
    async def _other_landing(
        self, result: ClaimResult, code: str, csrf: str, wants_json: bool
    ) -> web.Response:
        """The page of a short link (its destination host and Continue) or of a batch (its
        files and one button for all), spending nothing."""
        item, link = result.item, result.link
        assert item is not None and link is not None
        received_before = result.outcome is ClaimOutcome.redelivered
        now = self.vault.clock.now()
        if item.kind == VaultKind.url:
            host = urlsplit(item.target_url or "").hostname or item.name
            if wants_json:
                return web.json_response(
                    {
                        "kind": "url",
                        "host": host,
                        "expires_at": _iso(link.expires_at),
                        "received_before": received_before,
                        "csrf_token": csrf,
                    },
                    headers=NO_STORE,
                )
            html = self.pages.short_link(
                action=f"/claim/{code}", csrf=csrf, host=host, expires_at=link.expires_at, now=now
            )
            headers = page_headers(self.config.public_base_url, item.target_url or "")
            return web.Response(
                status=200, text=html, content_type="text/html", charset="utf-8", headers=headers
            )
        # a link that hides names hides its files' names too, until the claim
        files = [_file_json(m, link) for m in await self.vault.batch_files(item.id)]
        if wants_json:
            return web.json_response(
                {
                    "kind": "batch",
                    "items": files,
                    "expires_at": _iso(link.expires_at),
                    "uses_left": link.uses_left,
                    "max_uses": link.max_uses,
                    "received_before": received_before,
                    "csrf_token": csrf,
                },
                headers=NO_STORE,
            )
        form = {
            "action": f"/claim/{code}",
            "csrf": csrf,
            "uses_left": link.uses_left,
            "max_uses": link.max_uses,
            "received_before": received_before,
        }
        html = self.pages.batch(files=files, expires_at=link.expires_at, now=now, form=form)
        return self._html(html, 200)

    async def _other_claimed(
        self,
        request: web.Request,
        result: ClaimResult,
        browser_id: str,
        code: str,
        wants_json: bool,
    ) -> web.Response:
        """After the claim (one use, counted as a click for a short link): 303 to a short
        link's destination; a batch's files, each with its own download."""
        item, link = result.item, result.link
        assert item is not None and link is not None
        redelivered = result.outcome is ClaimOutcome.redelivered
        csrf = self.ids.csrf(browser_id, code)
        if item.kind == VaultKind.url:
            target = item.target_url or ""
            if wants_json:
                body = {"url": target, "redelivered": redelivered, "csrf_token": csrf}
                return web.json_response(body, headers=NO_STORE)
            headers = page_headers(self.config.public_base_url, target)
            return web.Response(status=303, headers={"Location": target, **headers})
        base = self._base_url(request)
        files = []
        expires_at = link.expires_at
        for entry in await self.vault.batch_entries(result):
            url = f"{base}/files/{entry.download.token}" if entry.download else None
            if entry.download is not None:
                expires_at = min(expires_at, entry.download.expires_at)
            files.append(
                {
                    "item_id": entry.item_id,
                    "name": entry.name,
                    "size": entry.size,
                    "mime": entry.mime,
                    "kind": entry.kind,
                    "sha256": entry.sha256,
                    "url": url,
                }
            )
        if wants_json:
            body = {
                "kind": "batch",
                "items": [{**f, "download_url": f.pop("url")} for f in files],
                "expires_at": _iso(expires_at),
                "link_expires_at": _iso(link.expires_at),
                "uses_left": link.uses_left,
                "redelivered": redelivered,
                "csrf_token": csrf,
            }
            return web.json_response(body, headers=NO_STORE)
        now = self.vault.clock.now()
        return self._html(self.pages.batch(files=files, expires_at=expires_at, now=now), 200)

    # -- shared steps ----------------------------------------------------------------------------
    async def _limited(self, request: web.Request) -> float | None:
        return await self._hit(
            self.claim_limiter, client_address(request, self.config.trusted_proxy_hops)
        )

    def _secure(self, request: web.Request) -> bool:
        if self.config.public_base_url:
            return self.config.public_base_url.lower().startswith("https://")
        return request.secure

    def _cookie_name(self, request: web.Request) -> str:
        return SECURE_COOKIE_NAME if self._secure(request) else COOKIE_NAME

    def _set_cookie(self, request: web.Request, response: web.Response, value: str) -> None:
        response.set_cookie(
            self._cookie_name(request),
            value,
            max_age=COOKIE_MAX_AGE_SECONDS,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=self._secure(request),
        )

    def _html(self, html: str, status: int) -> web.Response:
        return web.Response(
            status=status,
            text=html,
            content_type="text/html",
            charset="utf-8",
            headers=self.page_headers,
        )

    def _refused(self, result: ClaimResult, wants_json: bool) -> web.Response:
        outcome = result.outcome
        status = REFUSAL_STATUS.get(outcome, 410)
        if wants_json:
            return _json_refusal(status, outcome.value, result.reason_text)
        heading = REFUSAL_HEADING.get(outcome, "This link cannot be used")
        return self._html(self.pages.refusal(Refusal(heading, result.reason_text, status)), status)

    def _stale_form(self, code: str, wants_json: bool) -> web.Response:
        if wants_json:
            return _json_refusal(403, "csrf", STALE_FORM.message)
        return self._html(self.pages.refusal(STALE_FORM, retry_url=f"/claim/{code}"), 403)

    def _too_many(self, retry_after: float, wants_json: bool) -> web.Response:
        if wants_json:
            response = _json_refusal(429, "rate_limited", TOO_MANY.message)
        else:
            response = self._html(self.pages.refusal(TOO_MANY), 429)
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        return response

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


def _shown_name(item: VaultItem, link: VaultLink) -> str | None:
    """The file's name for the claim page and its JSON; None when the link hides it (the
    download itself still carries it, in Content-Disposition)."""
    return None if link.hide_name else item.name


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "").lower()


async def _csrf_token(request: web.Request) -> str | None:
    """The form's hidden field, or the `X-CSRF-Token` header of a script."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type not in FORM_TYPES or not request.can_read_body:
        return None
    form = await request.post()
    value = form.get(CSRF_FIELD)
    return value if isinstance(value, str) and value else None


def _json_refusal(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status, headers=NO_STORE)


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


def _file_json(item: VaultItem, link: VaultLink) -> dict[str, Any]:
    name = _shown_name(item, link)
    return {"name": name, "size": item.size, "mime": item.mime, "kind": item.kind}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
