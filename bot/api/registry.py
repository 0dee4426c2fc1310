"""The API's operations, declared once: the route, who may call it, and its pydantic models.

The same declaration validates requests, shapes responses and generates the OpenAPI
document (bot/api/openapi.py), so the document cannot drift from what the server does."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web
from pydantic import BaseModel

from core.actor import Actor
from core.services.container import Services
from storage.models import Role

P = TypeVar("P", bound=BaseModel)
Q = TypeVar("Q", bound=BaseModel)
B = TypeVar("B", bound=BaseModel)


class NoParams(BaseModel):
    """An operation without path parameters, query string or body."""


@dataclass(frozen=True, slots=True)
class Call(Generic[P, Q, B]):
    """One authorised request, its inputs validated."""

    actor: Actor
    services: Services
    path: P
    query: Q
    body: B
    request: web.Request


Handler = Callable[[Call[Any, Any, Any]], Awaitable[BaseModel]]


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str  # aiohttp pattern under /api/v1, e.g. /jobs/{job_id:\d+}
    operation_id: str
    summary: str
    tag: str
    role: Role  # the lowest role that may call it
    handler: Handler
    response: type[BaseModel]
    status: int = 200
    path_params: type[BaseModel] = NoParams
    query: type[BaseModel] = NoParams
    body: type[BaseModel] | None = None
    # a streamed multipart upload: these fields, then a `file` part (the handler reads it)
    form: type[BaseModel] | None = None
    problems: tuple[int, ...] = ()  # statuses beyond the ones every operation can answer
    deployment_only: bool = False  # the token's creator must be a deployment owner

    @property
    def multipart(self) -> bool:
        return self.form is not None

    @property
    def mutates(self) -> bool:
        return self.method != "GET"

    @property
    def takes_idempotency_key(self) -> bool:
        """Uploads are idempotent by their bytes (the same file answers the same item), and a
        streamed body cannot be compared with the first one before it is read."""
        return self.mutates and not self.multipart

    @property
    def doc_path(self) -> str:
        """The path as OpenAPI writes it: `{job_id}`, without aiohttp's regex."""
        return re.sub(r"\{(\w+):[^}]+\}", r"{\1}", self.path)


@dataclass
class Registry:
    operations: list[Operation] = field(default_factory=list)

    def add(self, operation: Operation) -> Operation:
        if any(o.operation_id == operation.operation_id for o in self.operations):
            raise ValueError(f"duplicate operation id {operation.operation_id}")
        self.operations.append(operation)
        return operation

    def route(self, method: str, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        """Decorator form of `add`: the handler's name is the operation id."""

        def register(handler: Handler) -> Handler:
            self.add(
                Operation(
                    method=method, path=path, operation_id=handler.__name__, handler=handler, **kw
                )
            )
            return handler

        return register
