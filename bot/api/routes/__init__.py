"""The API's operations, one module per feature; `registry()` collects them."""

from __future__ import annotations

from bot.api.registry import Registry
from bot.api.routes import jobs, reddit, status, vault


def registry() -> Registry:
    reg = Registry()
    for module in (jobs, status, vault, reddit):
        module.register(reg)
    return reg
