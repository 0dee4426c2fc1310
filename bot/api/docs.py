"""The API's docs page: rendered once from the operation registry (Jinja2, autoescaped)."""

from __future__ import annotations

from itertools import groupby
from pathlib import Path

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from bot.api.problems import PROBLEMS
from bot.api.registry import Registry

TEMPLATES = Path(__file__).parent / "templates"
CSP = (
    "default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}


def add_docs_routes(app: web.Application, registry: Registry, version: str) -> None:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape())
    ops = sorted(registry.operations, key=lambda o: o.tag)
    html = env.get_template("docs.html").render(
        version=version,
        groups=[(tag, list(group)) for tag, group in groupby(ops, key=lambda o: o.tag)],
        problems=list(PROBLEMS.items()),
    )
    css = (TEMPLATES / "docs.css").read_text()

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html", headers=HEADERS)

    async def stylesheet(_: web.Request) -> web.Response:
        return web.Response(text=css, content_type="text/css", headers=HEADERS)

    app.router.add_get("/docs", page)
    app.router.add_get("/docs.css", stylesheet)
