"""Callback data for inline buttons: ids and short verbs only (≤ 64 bytes), never trusted.

Every press is re-authorised in core against the presser's own workspace and role.
"""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class Nav(CallbackData, prefix="m"):
    """Menu navigation: section name."""

    to: str


class JobAct(CallbackData, prefix="j"):
    """approve | reject | retry | cancel | refresh | details, on one job."""

    act: str
    id: int


class JobList(CallbackData, prefix="jl"):
    status: str
    kind: str = ""
    page: int = 0


class RetryAll(CallbackData, prefix="ra"):
    """ask → yes | no; `n` is the count the operator saw."""

    step: str
    n: int


class OpAct(CallbackData, prefix="op"):
    """role | remove | remove_yes | cancel, on one operator row id."""

    act: str
    id: int
    role: str = ""


class AuditPage(CallbackData, prefix="au"):
    page: int
