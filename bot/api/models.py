"""Shared request/response pieces: pagination and ids."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

T = TypeVar("T")
MAX_ID = 2**63 - 1


def _integral(value: Any) -> Any:
    """JSON has one number type: 60.0 is the integer 60 (bodies are validated strictly)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def json_int(**bounds: int) -> Any:
    """An integer field for strictly validated JSON bodies; bounds as in `Field` (ge, le).
    The bounds go before the validator, or pydantic writes them into the schema unconverted."""
    return Annotated[int, Field(**bounds), BeforeValidator(_integral)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PageQuery(Strict):
    limit: int = Field(20, ge=1, le=100, description="How many items (1–100).")
    offset: int = Field(0, ge=0, le=10_000_000, description="How many to skip.")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
