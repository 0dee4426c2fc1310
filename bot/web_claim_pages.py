"""The HTML of the claim door: the landing page, the refusal pages and their static files.

Jinja2 renders them with autoescaping on (file names are whatever an operator uploaded).
The pages load nothing but our own stylesheet and icons, run no script, and carry a strict
CSP; previewers see a neutral title and description, never the file's name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from core.vault.service import human_size

if TYPE_CHECKING:
    from jinja2 import Environment

TEMPLATES = Path(__file__).with_name("web_templates")
STATIC = Path(__file__).with_name("web_static")
STATIC_PATH = "/claim-assets"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}

TITLE = "A shared file"
DESCRIPTION = "A file was shared with you. Open the link to see what it is and download it."
REFUSED_TITLE = "Link not available"

KIND_LABELS = {
    "document": "Document",
    "photo": "Photo",
    "video": "Video",
    "audio": "Audio",
    "voice": "Voice message",
    "animation": "Animation",
}
KIND_ICONS = {
    "photo": "photo",
    "video": "video",
    "animation": "video",
    "audio": "audio",
    "voice": "audio",
}


@dataclass(frozen=True, slots=True)
class Refusal:
    heading: str
    message: str
    status: int


def page_headers(public_base_url: str | None = None, *also: str) -> dict[str, str]:
    """Headers of every HTML page of the claim door.

    `form-action` names the public origin too: Chrome applies it to the redirect that
    follows the form's POST, and that goes to PUBLIC_BASE_URL/files/… (`also`: the origin of a
    short link's destination, where its Continue redirects)."""
    form_action = "'self'"
    for url in (public_base_url, *also):
        parts = urlsplit(url or "")
        if parts.scheme in ("http", "https") and parts.netloc:
            form_action += f" {parts.scheme}://{parts.netloc}"
    csp = (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "Content-Security-Policy": csp,
        "X-Robots-Tag": "noindex, nofollow",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Vary": "Accept, Cookie",
    }


class ClaimPages:
    """Renders the pages; the Jinja2 environment is built on the first page, not at start-up."""

    def __init__(self) -> None:
        self._env: Environment | None = None

    @property
    def env(self) -> Environment:
        if self._env is None:
            from jinja2 import Environment, FileSystemLoader, StrictUndefined

            self._env = Environment(
                loader=FileSystemLoader(TEMPLATES),
                autoescape=True,
                undefined=StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
            )
        return self._env

    def landing(
        self,
        *,
        action: str,
        csrf: str,
        name: str | None,
        kind: str,
        mime: str,
        size: int | None,
        expires_at: datetime,
        uses_left: int,
        max_uses: int,
        received_before: bool,
        now: datetime,
    ) -> str:
        return self._render(
            "landing.html",
            title=TITLE,
            action=action,
            csrf=csrf,
            name=name,
            icon=KIND_ICONS.get(kind, "document"),
            kind_label=KIND_LABELS.get(kind, kind.capitalize()),
            mime=mime,
            size=human_size(size),
            expires_iso=_iso(expires_at),
            expires_text=expires_at.astimezone(UTC).strftime("%-d %b %Y, %H:%M UTC"),
            expires_in=time_left(expires_at, now),
            uses_left=uses_left,
            max_uses=max_uses,
            received_before=received_before,
        )

    def short_link(
        self, *, action: str, csrf: str, host: str, expires_at: datetime, now: datetime
    ) -> str:
        """A short link's page: where it goes, and a Continue button (a POST: previewers
        fetch the page, never the destination, and count no click)."""
        return self._render(
            "short_link.html",
            title="A shared link",
            description="A link was shared with you. Open it to see where it goes.",
            action=action,
            csrf=csrf,
            host=host,
            **_expiry(expires_at, now),
        )

    def batch(
        self,
        *,
        files: list[dict[str, Any]],
        expires_at: datetime,
        now: datetime,
        form: dict[str, Any] | None = None,
    ) -> str:
        """A batch link's page: its files, with one form for all of them (`form`: action,
        csrf, uses_left, max_uses, received_before) or, after the claim, a download each
        (`url` None: that file is only in Telegram)."""
        listed = [
            {
                "name": f["name"] or KIND_LABELS.get(f["kind"], "File"),  # None: name hidden
                "icon": KIND_ICONS.get(f["kind"], "document"),
                "kind_label": KIND_LABELS.get(f["kind"], str(f["kind"]).capitalize()),
                "size": human_size(f["size"]),
                "url": f.get("url"),
            }
            for f in files
        ]
        return self._render(
            "batch.html",
            title="Shared files",
            description="Files were shared with you. Open the link to see them.",
            files=listed,
            form=form is not None,
            **(form or {}),
            **_expiry(expires_at, now),
        )

    def refusal(self, refusal: Refusal, *, retry_url: str | None = None) -> str:
        return self._render(
            "refusal.html",
            title=REFUSED_TITLE,
            icon="unavailable",
            heading=refusal.heading,
            message=refusal.message,
            retry_url=retry_url,
        )

    def _render(self, template: str, **context: Any) -> str:
        context.setdefault("description", DESCRIPTION)
        return self.env.get_template(template).render(static=STATIC_PATH, **context)


def time_left(until: datetime, now: datetime) -> str:
    """`in 5 minutes`, `in 3 hours`, `in 2 days`: minutes rounded up, then whole hours/days."""
    seconds = (until - now).total_seconds()
    if seconds <= 0:
        return "now"
    minutes = math.ceil(seconds / 60)
    count, unit = minutes, "minute"
    if minutes >= 60:
        count, unit = minutes // 60, "hour"
        if count >= 24:
            count, unit = count // 24, "day"
    return f"in {count} {unit}{'' if count == 1 else 's'}"


def add_static_routes(app: web.Application) -> None:
    """Serve the pages' stylesheet and icons: a fixed set of files read once, nothing else."""
    files = {
        path.name: (path.read_bytes(), STATIC_TYPES[path.suffix])
        for path in sorted(STATIC.iterdir())
        if path.suffix in STATIC_TYPES
    }
    headers = {
        "Cache-Control": "public, max-age=86400",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    }

    async def serve(request: web.Request) -> web.Response:
        found = files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound(text="Not found.\n")
        body, content_type = found
        return web.Response(body=body, headers={**headers, "Content-Type": content_type})

    app.router.add_get(STATIC_PATH + "/{name}", serve)


def _expiry(expires_at: datetime, now: datetime) -> dict[str, str]:
    return {
        "expires_iso": _iso(expires_at),
        "expires_text": expires_at.astimezone(UTC).strftime("%-d %b %Y, %H:%M UTC"),
        "expires_in": time_left(expires_at, now),
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
