"""Every CallbackData class refuses forged data at unpack time, before any handler runs.

A button press carries at most 64 bytes the client chose. Numbers past BIGINT, negative
ids, verbs no button carries, another prefix or extra parts must fail `unpack` (so the
class's filter does not match and the fallback answers "This button is out of date."),
never reach a handler that would pass them to the database.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any

import pytest
from aiogram.filters.callback_data import CallbackData
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

import bot.app  # noqa: F401 - imports every handler module, so every class exists
from bot.callbacks import STALE_BUTTON


def all_classes() -> list[type[CallbackData]]:
    seen: list[type[CallbackData]] = []
    todo = list(CallbackData.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("bot.") and cls not in seen:
            seen.append(cls)
        todo += cls.__subclasses__()
    return sorted(seen, key=lambda c: c.__prefix__)


CLASSES = all_classes()


def is_literal(info: FieldInfo) -> bool:
    return typing.get_origin(info.annotation) is typing.Literal


def bounds(info: FieldInfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for meta in info.metadata:
        for name in ("ge", "gt", "le", "lt", "pattern", "max_length"):
            value = getattr(meta, name, None)
            if value is not None:
                out[name] = value
    return out


def valid_value(cls: type[CallbackData], name: str, info: FieldInfo) -> Any:
    if is_literal(info):
        args = [a for a in typing.get_args(info.annotation) if a != ""]
        return args[0] if args else ""
    if info.annotation is int:
        return 1
    adapter = TypeAdapter(Annotated[info.annotation, *info.metadata])
    for candidate in ("1", "abc", "hot", ""):
        try:
            return adapter.validate_python(candidate)
        except ValidationError:
            continue
    raise AssertionError(f"no sample value for {cls.__name__}.{name}")


def sample(cls: type[CallbackData]) -> CallbackData:
    values = {n: valid_value(cls, n, i) for n, i in cls.model_fields.items()}
    if cls.__prefix__ == "rc":  # the account step carries an id
        values["step"], values["val"] = "acct", "1"
    return cls(**values)


def forged(cls: type[CallbackData]) -> list[str]:
    """Data a modified client could send for this class's prefix."""
    good = sample(cls).pack()
    prefix, *parts = good.split(":")
    out = [f"zz{prefix}:" + ":".join(parts), good + ":1", ":".join([prefix, *parts[:-1]])]
    for index, info in enumerate(cls.model_fields.values()):

        def with_value(value: str, index: int = index) -> str:
            return ":".join([prefix, *parts[:index], value, *parts[index + 1 :]])

        if info.annotation is int:
            out += [with_value(v) for v in (str(2**63), str(10**40), "-1", "-9", "0x1f", "1e3")]
        elif is_literal(info):
            out += [with_value(v) for v in ("zz", "q", "bogus", "approve_yes")]
        else:
            out += [with_value(v) for v in ("<b>", "a b", "9" * 30, "Ω")]
    # only what still fits in a button (64 bytes) and differs from the genuine data
    return [d for d in dict.fromkeys(out) if d != good and len(d.encode()) <= 64]


def test_every_class_is_found() -> None:
    prefixes = {c.__prefix__ for c in CLASSES}
    assert {"m", "j", "jl", "op", "vi", "vn", "rp", "rc", "se", "st"} <= prefixes
    assert len(prefixes) == len(CLASSES), "two classes share a prefix"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_is_constrained(cls: type[CallbackData]) -> None:
    for name, info in cls.model_fields.items():
        where = f"{cls.__name__}.{name}"
        if is_literal(info):
            continue
        found = bounds(info)
        if info.annotation is int:
            assert "ge" in found or "gt" in found, f"{where}: no lower bound"
            assert "lt" in found or "le" in found, f"{where}: no upper bound"
            assert found.get("lt", 0) <= 2**63 and found.get("le", 0) < 2**63, where
        else:
            assert "pattern" in found or "max_length" in found, f"{where}: a free string"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_forged_data_never_unpacks(cls: type[CallbackData]) -> None:
    good = sample(cls)
    assert cls.unpack(good.pack()) == good
    cases = forged(cls)
    assert cases
    accepted = []
    for data in cases:
        try:
            unpacked = cls.unpack(data)
        except (TypeError, ValueError):
            continue
        # a free-text field (a job kind) may take odd text; never a number out of range
        for name, info in cls.model_fields.items():
            value = getattr(unpacked, name)
            if (info.annotation is int or is_literal(info)) and value != getattr(good, name):
                accepted.append((data, name, value))
    assert not accepted, accepted


def test_the_stale_answer_is_plain() -> None:
    assert STALE_BUTTON == "This button is out of date."
