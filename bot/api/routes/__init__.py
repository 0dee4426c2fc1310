"""The API's operations, one module per feature; `registry()` collects them."""

from __future__ import annotations

from bot.api.registry import Registry
from bot.api.routes import jobs


def registry() -> Registry:
    reg = Registry()
    for module in (jobs,):
        module.register(reg)
    return reg
