"""Errors as `application/problem+json` (RFC 9457), one stable `type` per kind of error.

The `type` URIs point at the docs page's list of problems, so a script can switch on them
and a person can look them up."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    OpsdeckError,
    Unauthorized,
)
from core.vault.errors import Gone, NotDownloadable

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "/api/v1/docs#problem-"


class FieldProblem(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """An error: `type` is stable per kind, `detail` is safe to show a person."""

    type: str = Field(examples=[TYPE_BASE + "not-found"])
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    errors: list[FieldProblem] | None = None


# slug -> (status, title); the docs page lists these
PROBLEMS: dict[str, tuple[int, str]] = {
    "malformed": (400, "The request could not be read"),
    "unauthorized": (401, "A valid API token is needed"),
    "forbidden": (403, "The token's role does not allow this"),
    "not-found": (404, "No such thing in this workspace"),
    "method-not-allowed": (405, "This path does not take that method"),
    "conflict": (409, "The thing changed state first"),
    "idempotency-in-progress": (409, "A request with this Idempotency-Key is still running"),
    "gone": (410, "The thing has expired or was used up"),
    "payload-too-large": (413, "The request body is too large"),
    "unsupported-media-type": (415, "The body must be JSON (or multipart for uploads)"),
    "invalid": (422, "An argument is not acceptable"),
    "idempotency-mismatch": (409, "This Idempotency-Key was used for a different request"),
    "rate-limited": (429, "Too many requests"),
    "internal": (500, "Something went wrong on our side"),
    "unavailable": (503, "A service Opsdeck depends on is unavailable"),
}


class MalformedRequest(OpsdeckError):
    """The request's body cannot be read (bad JSON, a broken multipart body)."""


# most specific first: the first class the error is an instance of decides
ERROR_SLUGS: tuple[tuple[type[OpsdeckError], str], ...] = (
    (MalformedRequest, "malformed"),
    (Unauthorized, "unauthorized"),
    (Forbidden, "forbidden"),
    (NotFound, "not-found"),
    (Conflict, "conflict"),
    (NotDownloadable, "conflict"),
    (Gone, "gone"),
    (InvalidInput, "invalid"),
)


def problem_body(
    slug: str, detail: str, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    status, title = PROBLEMS[slug]
    body = Problem(
        type=TYPE_BASE + slug,
        title=title,
        status=status,
        detail=detail,
        errors=[FieldProblem(**e) for e in errors] if errors else None,
    )
    return body.model_dump(exclude_none=True)


def problem(
    slug: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = problem_body(slug, detail, errors)
    extra = dict(headers or {})
    if body["status"] == 401:
        extra.setdefault("WWW-Authenticate", 'Bearer realm="opsdeck"')
    return web.Response(
        status=body["status"],
        text=json.dumps(body),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=extra,
    )


def error_body(exc: OpsdeckError) -> dict[str, Any]:
    """The problem a core error is: the first class in ERROR_SLUGS it is an instance of."""
    slug = next((slug for cls, slug in ERROR_SLUGS if isinstance(exc, cls)), "invalid")
    return problem_body(slug, exc.message)
