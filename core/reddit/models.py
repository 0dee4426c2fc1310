"""Parsed Reddit answers. Every parser tolerates missing or oddly typed fields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return default
    return default


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _bool(value: Any, default: bool = False) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)


def _strs(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, str)]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def absolute_permalink(permalink: str | None) -> str | None:
    """Reddit answers site-relative permalinks (`/r/…`); links shown to people are absolute."""
    if not permalink:
        return None
    if permalink.startswith("http"):
        return permalink
    return f"https://www.reddit.com{permalink}"


def thing_ids(d: Mapping[str, Any], prefix: str) -> tuple[str, str]:
    """(fullname, id) of a thing from whichever of `name` and `id` Reddit sent."""
    thing_id = _str(d.get("id"))
    fullname = _str(d.get("name")) or (f"{prefix}{thing_id}" if thing_id else "")
    return fullname, thing_id or fullname.removeprefix(prefix)


@dataclass(frozen=True, slots=True)
class Me:
    """`/api/v1/me`. A suspended account answers with only a few of these fields."""

    name: str
    is_suspended: bool
    suspension_expiration_utc: float | None
    link_karma: int
    comment_karma: int
    inbox_count: int
    id: str | None = None
    created_utc: float | None = None

    @classmethod
    def parse(cls, data: Any) -> Me:
        d = _mapping(data)
        return cls(
            name=_str(d.get("name")),
            is_suspended=_bool(d.get("is_suspended")),
            suspension_expiration_utc=_float(d.get("suspension_expiration_utc")),
            link_karma=_int(d.get("link_karma")),
            comment_karma=_int(d.get("comment_karma")),
            inbox_count=_int(d.get("inbox_count")),
            id=_opt_str(d.get("id")),
            created_utc=_float(d.get("created_utc")),
        )


@dataclass(frozen=True, slots=True)
class SubredditAbout:
    """`/r/{sr}/about`: what kinds of posts the subreddit takes."""

    name: str
    fullname: str | None
    title: str
    subreddit_type: str
    submission_type: str
    over18: bool
    allow_images: bool
    allow_videos: bool
    link_flair_enabled: bool
    user_is_banned: bool
    restrict_posting: bool
    subscribers: int

    @property
    def allows_self(self) -> bool:
        return self.submission_type in {"any", "self"}

    @property
    def allows_links(self) -> bool:
        return self.submission_type in {"any", "link"}

    @property
    def allows_images(self) -> bool:
        return self.allows_links and self.allow_images

    @classmethod
    def parse(cls, payload: Any) -> SubredditAbout:
        d = _mapping(_mapping(payload).get("data"))
        return cls(
            name=_str(d.get("display_name")),
            fullname=_opt_str(d.get("name")),
            title=_str(d.get("title")),
            subreddit_type=_str(d.get("subreddit_type"), "public"),
            submission_type=_str(d.get("submission_type"), "any") or "any",
            over18=_bool(d.get("over18")),
            allow_images=_bool(d.get("allow_images"), True),
            allow_videos=_bool(d.get("allow_videos"), True),
            link_flair_enabled=_bool(d.get("link_flair_enabled")),
            user_is_banned=_bool(d.get("user_is_banned")),
            restrict_posting=_bool(d.get("restrict_posting")),
            subscribers=_int(d.get("subscribers")),
        )


@dataclass(frozen=True, slots=True)
class PostRequirements:
    """`/api/v1/{sr}/post_requirements`: the subreddit's machine-readable posting rules."""

    title_text_min_length: int | None = None
    title_text_max_length: int | None = None
    title_required_strings: list[str] = field(default_factory=list)
    title_blacklisted_strings: list[str] = field(default_factory=list)
    title_regexes: list[str] = field(default_factory=list)
    body_restriction_policy: str = "none"
    body_text_min_length: int | None = None
    body_text_max_length: int | None = None
    body_required_strings: list[str] = field(default_factory=list)
    body_blacklisted_strings: list[str] = field(default_factory=list)
    body_regexes: list[str] = field(default_factory=list)
    link_restriction_policy: str = "none"
    domain_blacklist: list[str] = field(default_factory=list)
    domain_whitelist: list[str] = field(default_factory=list)
    link_repost_age: int | None = None
    is_flair_required: bool = False
    guidelines_text: str | None = None

    @classmethod
    def parse(cls, data: Any) -> PostRequirements:
        d = _mapping(data)
        return cls(
            title_text_min_length=_opt_int(d.get("title_text_min_length")),
            title_text_max_length=_opt_int(d.get("title_text_max_length")),
            title_required_strings=_strs(d.get("title_required_strings")),
            title_blacklisted_strings=_strs(d.get("title_blacklisted_strings")),
            title_regexes=_strs(d.get("title_regexes")),
            body_restriction_policy=_str(d.get("body_restriction_policy"), "none") or "none",
            body_text_min_length=_opt_int(d.get("body_text_min_length")),
            body_text_max_length=_opt_int(d.get("body_text_max_length")),
            body_required_strings=_strs(d.get("body_required_strings")),
            body_blacklisted_strings=_strs(d.get("body_blacklisted_strings")),
            body_regexes=_strs(d.get("body_regexes")),
            link_restriction_policy=_str(d.get("link_restriction_policy"), "none") or "none",
            domain_blacklist=_strs(d.get("domain_blacklist")),
            domain_whitelist=_strs(d.get("domain_whitelist")),
            link_repost_age=_opt_int(d.get("link_repost_age")),
            is_flair_required=_bool(d.get("is_flair_required")),
            guidelines_text=_opt_str(d.get("guidelines_text")),
        )


@dataclass(frozen=True, slots=True)
class SubredditRule:
    """One entry of `/r/{sr}/about/rules`, free text for the operator to read."""

    short_name: str
    description: str
    kind: str
    violation_reason: str
    priority: int

    @classmethod
    def parse_all(cls, payload: Any) -> list[SubredditRule]:
        rules = _mapping(payload).get("rules")
        if not isinstance(rules, list):
            return []
        parsed = [
            cls(
                short_name=_str(r.get("short_name")),
                description=_str(r.get("description")),
                kind=_str(r.get("kind"), "all"),
                violation_reason=_str(r.get("violation_reason")),
                priority=_int(r.get("priority")),
            )
            for r in rules
            if isinstance(r, Mapping)
        ]
        return sorted(parsed, key=lambda rule: rule.priority)


@dataclass(frozen=True, slots=True)
class FlairChoice:
    """A link flair the account may pick (`flairselector` with `is_newlink=true`)."""

    template_id: str
    text: str
    text_editable: bool
    css_class: str = ""

    @classmethod
    def parse_all(cls, payload: Any) -> list[FlairChoice]:
        choices = _mapping(payload).get("choices")
        if not isinstance(choices, list):
            return []
        return [
            cls(
                template_id=_str(c.get("flair_template_id")),
                text=_str(c.get("flair_text")),
                text_editable=_bool(c.get("flair_text_editable")),
                css_class=_str(c.get("flair_css_class")),
            )
            for c in choices
            if isinstance(c, Mapping) and _str(c.get("flair_template_id"))
        ]


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """A successful `/api/submit`. Image posts come back without id/fullname (see submit_image)."""

    fullname: str | None
    id: str | None
    url: str | None
    permalink: str | None = None
    websocket_url: str | None = None
    user_submitted_page: str | None = None

    @classmethod
    def parse(cls, data: Any) -> SubmitResult:
        d = _mapping(data)
        fullname = _opt_str(d.get("name"))
        post_id = _opt_str(d.get("id"))
        if post_id is None and fullname and fullname.startswith("t3_"):
            post_id = fullname[3:]
        if fullname is None and post_id:
            fullname = f"t3_{post_id}"
        return cls(
            fullname=fullname,
            id=post_id,
            url=_opt_str(d.get("url")),
            websocket_url=_opt_str(d.get("websocket_url")),
            user_submitted_page=_opt_str(d.get("user_submitted_page")),
        )


@dataclass(frozen=True, slots=True)
class MediaUpload:
    """An uploaded image: `url` is what `/api/submit kind=image` takes."""

    url: str
    key: str
    location: str | None
    asset_id: str | None
    websocket_url: str | None


@dataclass(frozen=True, slots=True)
class Submission:
    """A post (`t3`) as listings and `/api/info` describe it."""

    fullname: str
    id: str
    title: str
    subreddit: str
    author: str
    url: str | None
    permalink: str | None
    created_utc: float | None
    score: int
    num_comments: int
    upvote_ratio: float | None
    removed_by_category: str | None
    over_18: bool
    spoiler: bool
    is_self: bool
    link_flair_text: str | None

    @property
    def permalink_url(self) -> str | None:
        return absolute_permalink(self.permalink)

    @classmethod
    def parse(cls, data: Any) -> Submission:
        d = _mapping(data)
        fullname, post_id = thing_ids(d, "t3_")
        return cls(
            fullname=fullname,
            id=post_id,
            title=_str(d.get("title")),
            subreddit=_str(d.get("subreddit")),
            author=_str(d.get("author")),
            url=_opt_str(d.get("url")),
            permalink=_opt_str(d.get("permalink")),
            created_utc=_float(d.get("created_utc")),
            score=_int(d.get("score")),
            num_comments=_int(d.get("num_comments")),
            upvote_ratio=_float(d.get("upvote_ratio")),
            removed_by_category=_opt_str(d.get("removed_by_category")),
            over_18=_bool(d.get("over_18")),
            spoiler=_bool(d.get("spoiler")),
            is_self=_bool(d.get("is_self")),
            link_flair_text=_opt_str(d.get("link_flair_text")),
        )


@dataclass(frozen=True, slots=True)
class InboxMessage:
    """An inbox entry: a private message (`t4`) or a comment reply / mention (`t1`)."""

    fullname: str
    id: str
    kind: str
    author: str | None
    subject: str
    body: str
    created_utc: float | None
    new: bool
    was_comment: bool
    type: str | None
    subreddit: str | None
    context: str | None
    parent_id: str | None
    link_title: str | None

    @classmethod
    def parse(cls, kind: str, data: Any) -> InboxMessage:
        d = _mapping(data)
        msg_id = _str(d.get("id"))
        fullname = _str(d.get("name")) or (f"{kind}_{msg_id}" if msg_id else "")
        return cls(
            fullname=fullname,
            id=msg_id,
            kind=kind,
            author=_opt_str(d.get("author")),
            subject=_str(d.get("subject")),
            body=_str(d.get("body")),
            created_utc=_float(d.get("created_utc")),
            new=_bool(d.get("new")),
            was_comment=_bool(d.get("was_comment"), kind == "t1"),
            type=_opt_str(d.get("type")),
            subreddit=_opt_str(d.get("subreddit")),
            context=_opt_str(d.get("context")),
            parent_id=_opt_str(d.get("parent_id")),
            link_title=_opt_str(d.get("link_title")),
        )


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """One page of a Reddit listing; pass `after` back to get the next page (None = last page)."""

    items: list[T]
    after: str | None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def listing_children(payload: Any) -> tuple[list[tuple[str, Mapping[str, Any]]], str | None]:
    """(kind, data) of each child and the `after` cursor of a `{"kind": "Listing"}` answer."""
    data = _mapping(_mapping(payload).get("data"))
    children = data.get("children")
    items: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(children, list):
        for child in children:
            if isinstance(child, Mapping):
                items.append((_str(child.get("kind")), _mapping(child.get("data"))))
    return items, _opt_str(data.get("after"))
