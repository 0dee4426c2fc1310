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


class RedditAccountAct(CallbackData, prefix="rac"):
    """card | check | pause | resume | remove | remove_yes | list, on one Reddit account id."""

    act: str
    id: int = 0


class RedditAddKind(CallbackData, prefix="rak"):
    """/accounts add: the auth kind chosen (script | refresh_token | none)."""

    kind: str


class RedditCompose(CallbackData, prefix="rc"):
    """/post flow choices: `step` names the question, `val` the answer (ids and short words)."""

    step: str
    val: str = ""


class RedditPostAct(CallbackData, prefix="rp"):
    """queue | approval | now | resched | cancel | approve | reject | card, on one post id."""

    act: str
    id: int


class VaultItemAct(CallbackData, prefix="vi"):
    """card | more | send | rename | nsfw | delete | delete_yes | link, on one vault item id."""

    act: str
    id: int


class VaultLinkNew(CallbackData, prefix="vn"):
    """The create-link wizard; the choices so far ride along. 0 / -1 mean "not chosen yet".

    `life` seconds (0: ask), `uses` (0: ask), `prot` 0/1, `ad` auto-delete minutes (0 off)."""

    id: int
    life: int = 0
    uses: int = 0
    prot: int = 0
    ad: int = 0
    go: str = ""  # "" show step | "life" / "uses" ask custom | "make" create | "x" cancel


class VaultList(CallbackData, prefix="vl"):
    kind: str = ""
    nsfw: str = ""  # "" any | "y" | "n"
    page: int = 0


class VaultLinks(CallbackData, prefix="vk"):
    """/links page, or revoke one link (`revoke` = link id)."""

    page: int = 0
    revoke: int = 0


class BrowsePage(CallbackData, prefix="bp"):
    """/browse: a page of a subreddit listing; `after` is Reddit's cursor ("" = first page)."""

    sr: str
    sort: str
    page: int = 0
    after: str = ""


class BrowseOpen(CallbackData, prefix="bo"):
    """/browse: open one post (its base36 id); `sr`/`sort` lead back to the listing."""

    id: str
    sr: str
    sort: str


class TokenAct(CallbackData, prefix="tk"):
    """ask (confirm revoking) | revoke | keep, on one API token id."""

    act: str
    id: int
