"""`/api/v1`: authenticate, authorise, validate, run the operation, answer JSON.

Deny by default: every path under /api/v1 but the OpenAPI document and the docs page needs a
valid token (an unknown path without one is 401 too, so the API's shape is not probed for
free). The role check here is the API's first gate; the core services check again, as they
do for every chat press."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bot.api import idempotency
from bot.api.docs import add_docs_routes
from bot.api.idempotency import IdempotencyKeys, KeyInProgress, KeyMismatch
from bot.api.openapi import build_document
from bot.api.problems import error_body, problem
from bot.api.registry import Call, NoParams, Operation, Registry
from core.actor import RANK, Actor, is_deployment_owner
from core.errors import OpsdeckError, Unauthorized
from core.ratelimit import SharedLimiter
from core.services.api_tokens import ApiTokenService
from core.services.container import Services
from core.status import ProcessInfo, StatusService

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
OPEN_PATHS = frozenset({f"{PREFIX}/openapi.json", f"{PREFIX}/docs", f"{PREFIX}/docs.css"})
ACTOR = web.RequestKey("api_actor", Actor)
MAX_JSON_BODY = 1 << 20


@dataclass
class ApiDeps:
    services: Services
    status: StatusService
    process: Callable[[], ProcessInfo]  # what only the running process knows
    tokens: ApiTokenService
    keys: IdempotencyKeys
    limiter: SharedLimiter
    deployment_owner_ids: frozenset[int]
    version: str
    public_base_url: str
    bot_username: str  # "" until the bot has reached Telegram (start() fills it in)


DEPS = web.AppKey("api_deps", ApiDeps)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def build_api_app(
    registry: Registry, deps: ApiDeps, docs_page: web.StreamResponse | None = None
) -> web.Application:
    document = build_document(
        registry, version=deps.version, server_url=deps.public_base_url.rstrip("/") or "/"
    )
    document_text = json.dumps(document)

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in OPEN_PATHS and request.method in ("GET", "HEAD"):
            return await handler(request)
        secret = _bearer(request)
        if secret is None:
            return problem("unauthorized", "Send an API token as `Authorization: Bearer …`.")
        try:
            actor = await deps.tokens.authenticate(secret)
        except Unauthorized as exc:
            return problem("unauthorized", exc.message)
        wait = await deps.limiter.hit(f"token:{actor.token_id}")
        if wait is not None:
            return problem(
                "rate-limited",
                f"This token sent too many requests; try again in {wait:.0f} s.",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        request[ACTOR] = actor
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return problem("not-found", "There is no such API path.")
        except web.HTTPMethodNotAllowed as exc:
            return problem(
                "method-not-allowed",
                f"{request.method} is not allowed here.",
                headers={"Allow": ", ".join(sorted(exc.allowed_methods))},
            )
        except web.HTTPRequestEntityTooLarge:
            return problem("payload-too-large", "The request body is too large.")
        except web.HTTPException:
            raise
        except Exception:
            log.exception("API %s %s failed", request.method, request.path)
            return problem("internal", "Something went wrong on our side; it was logged.")

    app = web.Application(middlewares=[guard], client_max_size=MAX_JSON_BODY)
    app[DEPS] = deps

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(text=document_text, content_type="application/json")

    app.router.add_get("/openapi.json", openapi)
    add_docs_routes(app, registry, deps.version)
    for op in registry.operations:
        app.router.add_route(op.method, op.path, _endpoint(op, deps))
    return app


def _endpoint(op: Operation, deps: ApiDeps) -> Any:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        actor = request[ACTOR]
        if RANK[actor.role] < RANK[op.role]:
            return problem("forbidden", f"A {actor.role.value} token cannot {op.summary.lower()}.")
        if op.deployment_only and not is_deployment_owner(actor, deps.deployment_owner_ids):
            return problem("forbidden", "Only a deployment owner's token may see this.")
        try:
            path = op.path_params.model_validate(dict(request.match_info))
        except ValidationError:
            return problem("not-found", "No such thing in your workspace.")
        try:
            query = (
                op.query.model_validate(dict(request.query))
                if op.query is not NoParams
                else NoParams()
            )
        except ValidationError as exc:
            return _invalid(exc, "query")
        if op.multipart and request.content_type != "multipart/form-data":
            return problem("unsupported-media-type", "Send the file as multipart/form-data.")
        raw = b""
        body: BaseModel = NoParams()
        if op.body is not None:
            if request.content_type != "application/json":
                return problem("unsupported-media-type", "Send the body as application/json.")
            raw = await request.read()
            try:
                data = json.loads(raw) if raw else None
            except (ValueError, RecursionError):
                return problem("malformed", "The body is not valid JSON.")
            try:
                # strict: JSON's types as they are (0 is not false, "1" is not 1)
                body = op.body.model_validate_json(raw, strict=True) if data is not None else None
            except ValidationError as exc:
                return _invalid(exc, "body")
            if body is None:
                return problem("invalid", "The body must be a JSON object.")
        key = request.headers.get("Idempotency-Key") if op.takes_idempotency_key else None
        if key is not None:
            if not idempotency.KEY_RE.match(key):
                return problem("invalid", "An Idempotency-Key is 1–128 visible ASCII characters.")
            print_ = idempotency.fingerprint(request.method, request.path_qs, raw)
            # a key names one request to one operation: the same key on another path is another
            key = hashlib.sha256(f"{request.method} {request.path} {key}".encode()).hexdigest()
            try:
                replay = await deps.keys.begin(actor.token_id or 0, key, print_)
            except KeyMismatch:
                return problem(
                    "idempotency-mismatch", "This Idempotency-Key was used for a different request."
                )
            except KeyInProgress:
                return problem(
                    "idempotency-in-progress",
                    "A request with this Idempotency-Key is still running; retry in a moment.",
                    headers={"Retry-After": "1"},
                )
            if replay is not None:
                return _json(replay.status, replay.body, replayed=True)
        status, payload = await _run(op, Call(actor, deps.services, path, query, body, request))
        if key is not None:
            await deps.keys.finish(actor.token_id or 0, key, status, payload)
        return _json(status, payload)

    return endpoint


async def _run(op: Operation, call: Call[Any, Any, Any]) -> tuple[int, Any]:
    try:
        result = await op.handler(call)
    except OpsdeckError as exc:
        body = error_body(exc)
        return body["status"], body
    return op.status, result.model_dump(mode="json")


def _json(status: int, payload: Any, *, replayed: bool = False) -> web.Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    content_type = "application/problem+json" if status >= 400 else "application/json"
    return web.Response(
        status=status, text=json.dumps(payload), content_type=content_type, headers=headers
    )


def _invalid(exc: ValidationError, where: str) -> web.Response:
    errors = [
        {"loc": [where, *exc_loc], "msg": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
        for exc_loc in [list(err["loc"])]
    ]
    return problem("invalid", f"The {where} is not acceptable.", errors=errors)
