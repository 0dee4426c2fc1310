"""Callback data for inline buttons: ids and short verbs only (≤ 64 bytes), never trusted.

Every press is re-authorised in core against the presser's own workspace and role. Every
field is constrained here too, so forged data (an id of 2^63 or below zero, a verb no button
carries, a wrong prefix, extra parts) fails `CallbackData.unpack` and no handler sees it: the
fallback router answers STALE_BUTTON. tests/unit/test_callback_data.py checks every class.
"""

from __future__ import annotations

from typing import Annotated, Literal

from aiogram.filters.callback_data import CallbackData
from pydantic import Field, model_validator

STALE_BUTTON = "This button is out of date."

# Database ids are BIGINT: a larger or negative number names nothing (0: "none" where a default).
Id = Annotated[int, Field(ge=0, lt=2**63)]
# Pages, counts, seconds and minutes a button carries; the services check the real bounds.
Count = Annotated[int, Field(ge=0, lt=2**31)]
Subreddit = Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,21}$")]
Sort = Literal["hot", "new", "top"]


class Nav(CallbackData, prefix="m"):
    """Menu navigation: section name."""

    to: Literal["menu", "help", "tz", "queue", "operators", "audit"]


class JobAct(CallbackData, prefix="j"):
    """approve | reject | retry | cancel | refresh | details, on one job."""

    act: Literal["approve", "reject", "retry", "cancel", "refresh", "details"]
    id: Id


class JobList(CallbackData, prefix="jl"):
    status: Literal[
        "all", "active", "pending", "queued", "running", "failed", "dead", "succeeded", "cancelled"
    ]
    kind: Annotated[str, Field(max_length=40)] = ""  # as /jobs checked it (KIND_MAX)
    page: Count = 0


class RetryAll(CallbackData, prefix="ra"):
    """ask → yes | no; `n` is the count the operator saw."""

    step: Literal["ask", "yes", "no"]
    n: Count


class OpAct(CallbackData, prefix="op"):
    """role | remove | remove_yes | cancel, on one operator row id."""

    act: Literal["role", "remove", "remove_yes", "cancel"]
    id: Id
    role: Literal["", "operator", "viewer"] = ""


class AuditPage(CallbackData, prefix="au"):
    page: Count


class RedditAccountAct(CallbackData, prefix="rac"):
    """card | check | pause | resume | remove | remove_yes | list, on one Reddit account id."""

    act: Literal[
        "card",
        "check",
        "pause",
        "resume",
        "remove",
        "remove_yes",
        "list",
        "backfill",
        "stats",
        "inbox",
    ]
    id: Id = 0


class RedditAddKind(CallbackData, prefix="rak"):
    """/accounts add: the auth kind chosen (script | refresh_token | none)."""

    kind: Literal["script", "refresh_token", "none"]


class RedditCompose(CallbackData, prefix="rc"):
    """/post flow choices: `step` names the question, `val` the answer (ids and short words)."""

    step: Literal["acct", "kind", "flair", "flag", "when", "edit"]
    val: Annotated[str, Field(pattern=r"^[a-z0-9_]{0,18}$")] = ""  # 18 digits < 2^63

    @model_validator(mode="after")
    def _account_is_an_id(self) -> RedditCompose:
        if self.step == "acct" and not self.val.isdigit():
            raise ValueError("the account step carries an account id")
        return self


class RedditPostAct(CallbackData, prefix="rp"):
    """queue | approval | now | resched | cancel | approve | reject | card, on one post id."""

    act: Literal[
        "queue", "approval", "now", "resched", "cancel", "approve", "reject", "card", "edit"
    ]
    id: Id


class VaultItemAct(CallbackData, prefix="vi"):
    """card | more | send | rename | nsfw | delete | delete_yes, on one vault item id."""

    act: Literal["card", "more", "send", "rename", "nsfw", "delete", "delete_yes"]
    id: Id


class VaultLinkNew(CallbackData, prefix="vn"):
    """The create-link wizard; the choices so far ride along. 0 / -1 mean "not chosen yet".

    `life` seconds (0: ask), `uses` (0: ask), `prot` 0/1, `ad` auto-delete minutes (0 off),
    `hide` 0/1 (the HTTP claim page hides the file's name)."""

    id: Id
    life: Count = 0
    uses: Count = 0
    prot: Annotated[int, Field(ge=0, le=1)] = 0
    ad: Count = 0
    # "" show step | "life" / "uses" ask for a typed value | "make" create | "x" cancel
    go: Literal["", "life", "uses", "make", "x"] = ""
    hide: Annotated[int, Field(ge=0, le=1)] = 0


class VaultList(CallbackData, prefix="vl"):
    kind: Literal[
        "", "document", "photo", "video", "audio", "voice", "animation", "batch", "url"
    ] = ""
    nsfw: Literal["", "y", "n"] = ""  # "" any | "y" | "n"
    page: Count = 0


class VaultLinks(CallbackData, prefix="vk"):
    """/links page, or revoke one link (`revoke` = link id)."""

    page: Count = 0
    revoke: Id = 0


class BrowsePage(CallbackData, prefix="bp"):
    """/browse: a page of a subreddit listing; `after` is Reddit's cursor ("" = first page)."""

    sr: Subreddit
    sort: Sort
    page: Count = 0
    after: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{0,20}$")] = ""


class BrowseOpen(CallbackData, prefix="bo"):
    """/browse: open one post (its base36 id); `sr`/`sort` lead back to the listing."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9]{1,16}$")]
    sr: Subreddit
    sort: Sort


class TokenAct(CallbackData, prefix="tk"):
    """ask (confirm revoking) | revoke | keep, on one API token id."""

    act: Literal["ask", "revoke", "keep"]
    id: Id


class VaultPick(CallbackData, prefix="vp"):
    """/vault's multi-select for a batch link: `act` go (start) | t (toggle `id`) | p (page)
    | make (create the batch) | x (stop). The selection lives in the guided-flow data."""

    act: Literal["go", "t", "p", "make", "x"]
    id: Id = 0
    page: Count = 0


class VaultAlbum(CallbackData, prefix="va"):
    """Link every file of the album `g` (Telegram's media_group_id) sent to the bot."""

    g: Annotated[str, Field(pattern=r"^[0-9A-Za-z_-]{1,40}$")]


class ReplyTo(CallbackData, prefix="rt"):
    """/browse → /reply: answer a post (`t3`) or comment (`t1`) by its base36 id, in `sr`."""

    kind: Literal["t1", "t3"]
    id: Annotated[str, Field(pattern=r"^[a-z0-9]{1,13}$")]
    sr: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{0,21}$")] = ""

    @property
    def thing(self) -> str:
        return f"{self.kind}_{self.id}"

    @classmethod
    def of(cls, fullname: str, sr: str) -> ReplyTo:
        kind, _, thing_id = fullname.partition("_")
        return cls(kind=kind, id=thing_id, sr=sr)  # type: ignore[arg-type]


class ReplyAccount(CallbackData, prefix="ry"):
    """/reply: the account the comment goes out as."""

    id: Id


class ReplyWhen(CallbackData, prefix="rw"):
    """/reply: a preset time (index into WHEN_PRESETS)."""

    i: Annotated[int, Field(ge=0, lt=10)]


class ChartAct(CallbackData, prefix="ch"):
    """Redraw a chart (`act`: which one) for a period; core checks the period fits the chart."""

    act: Literal["posts", "jobs", "claims"]
    span: Literal["24h", "7d", "30d"]
