"""OpenAPI 3.1 from the operation registry and its pydantic models (no hand-kept copy).

No aiohttp library we looked at generates 3.1 from pydantic 2 models while leaving routing
and auth to us (aiohttp-pydantic emits 3.0 and owns the views), and pydantic's JSON Schema
*is* the 3.1 schema dialect, so the document is assembled here from `model_json_schema`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bot.api.problems import PROBLEM_CONTENT_TYPE, PROBLEMS, Problem
from bot.api.registry import NoParams, Operation, Registry

REF = "#/components/schemas/{model}"
IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retrying a mutation with the same key answers the first result again "
    "instead of doing it twice (kept 24 hours).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"^[\x21-\x7e]+$"},
}


def _inputs(op: Operation) -> list[type[BaseModel]]:
    return [m for m in (op.path_params, op.query) if m is not NoParams]


def _parameters(model: type[BaseModel], where: str, defs: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    defs.update(schema.pop("$defs", {}))
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema.get("properties", {}).items():
        param: dict[str, Any] = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": {k: v for k, v in prop.items() if k != "title"},
        }
        if "description" in prop:
            param["description"] = prop["description"]
        params.append(param)
    return params


def _problem_statuses(op: Operation) -> list[int]:
    statuses = {401, 429}
    if op.role.value != "viewer" or op.deployment_only:
        statuses.add(403)
    if op.path_params is not NoParams:
        statuses.add(404)
    if _inputs(op) or op.body is not None or op.multipart:
        statuses.update({400, 422})
    if op.body is not None or op.multipart:
        statuses.update({413, 415})
    if op.mutates:
        statuses.update({409, 422})  # a conflict; an Idempotency-Key that is not acceptable
    statuses.update(op.problems)
    return sorted(statuses)


def build_document(registry: Registry, *, version: str, server_url: str) -> dict[str, Any]:
    bodies = [(op.body, "validation") for op in registry.operations if op.body is not None]
    outputs = [(op.response, "serialization") for op in registry.operations]
    refs, top = models_json_schema(
        [*bodies, *outputs, (Problem, "serialization")], ref_template=REF
    )
    defs: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for op in registry.operations:
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "security": [{"bearerAuth": []}],
            "description": f"Needs a token of role {op.role.value} or higher"
            + (" made by a deployment owner." if op.deployment_only else "."),
        }
        params = _parameters(op.path_params, "path", defs) if op.path_params is not NoParams else []
        if op.query is not NoParams:
            params += _parameters(op.query, "query", defs)
        if op.takes_idempotency_key:
            params.append(IDEMPOTENCY_HEADER)
        if params:
            entry["parameters"] = params
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
            }
        elif op.form is not None:
            form = op.form.model_json_schema(ref_template=REF)
            defs.update(form.pop("$defs", {}))
            form.pop("title", None)
            form["properties"]["file"] = {
                "type": "string",
                "contentMediaType": "application/octet-stream",
                "description": "The file's bytes, as the only part.",
            }
            form["required"] = [*form.get("required", []), "file"]
            entry["requestBody"] = {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": form,
                        "encoding": {"file": {"contentType": "application/octet-stream"}},
                    }
                },
            }
        responses: dict[str, Any] = {
            str(op.status): {
                "description": "OK",
                "content": {"application/json": {"schema": refs[(op.response, "serialization")]}},
            }
        }
        for status in _problem_statuses(op):
            titles = sorted({t for s, t in PROBLEMS.values() if s == status})
            responses[str(status)] = {
                "description": "; ".join(titles),
                "content": {PROBLEM_CONTENT_TYPE: {"schema": refs[(Problem, "serialization")]}},
            }
        entry["responses"] = responses
        paths.setdefault("/api/v1" + op.doc_path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Opsdeck API",
            "version": version,
            "description": "The operations console's services over HTTP: the same rules, roles "
            "and audit as the chat. Errors are application/problem+json (RFC 9457).",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token from /tokens in chat.",
                }
            },
        },
    }
