"""Threads: a post as a subreddit listing or its own page shows it, and its comments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.reddit.models import (
    Submission,
    _bool,
    _float,
    _int,
    _mapping,
    _opt_str,
    _str,
    absolute_permalink,
    thing_ids,
)

# What Reddit shows in place of a removed or deleted body or author.
GONE_TEXTS = frozenset({"[deleted]", "[removed]"})


@dataclass(frozen=True, slots=True)
class ThreadPost:
    """A post with what a reader needs beyond `Submission`: its text, and whether it still
    takes replies (locked by moderators, archived after six months)."""

    post: Submission
    selftext: str
    locked: bool
    archived: bool
    stickied: bool

    @property
    def gone(self) -> str | None:
        """Why the post takes no reply any more because it is gone, or None."""
        if self.post.author == "[deleted]" or self.selftext == "[deleted]":
            return "deleted by its author"
        if self.post.removed_by_category or self.selftext == "[removed]":
            return "removed"
        return None

    @property
    def closed_reason(self) -> str | None:
        """Why the thread takes no reply (gone, locked, archived), or None."""
        if self.gone:
            return f"the post was {self.gone}"
        if self.locked:
            return "the thread is locked by its moderators"
        if self.archived:
            return "the thread is archived (older than six months)"
        return None

    @classmethod
    def parse(cls, data: Any) -> ThreadPost:
        d = _mapping(data)
        return cls(
            post=Submission.parse(d),
            selftext=_str(d.get("selftext")),
            locked=_bool(d.get("locked")),
            archived=_bool(d.get("archived")),
            stickied=_bool(d.get("stickied")),
        )


@dataclass(frozen=True, slots=True)
class Comment:
    """A comment (`t1`)."""

    fullname: str
    id: str
    author: str
    body: str
    score: int
    created_utc: float | None
    permalink: str | None
    link_id: str | None  # the post's fullname
    parent_id: str | None
    subreddit: str
    locked: bool
    archived: bool

    @property
    def deleted(self) -> bool:
        return self.author == "[deleted]" or self.body in GONE_TEXTS

    @property
    def permalink_url(self) -> str | None:
        return absolute_permalink(self.permalink)

    @classmethod
    def parse(cls, data: Any) -> Comment:
        d = _mapping(data)
        fullname, comment_id = thing_ids(d, "t1_")
        return cls(
            fullname=fullname,
            id=comment_id,
            author=_str(d.get("author")),
            body=_str(d.get("body")),
            score=_int(d.get("score")),
            created_utc=_float(d.get("created_utc")),
            permalink=_opt_str(d.get("permalink")),
            link_id=_opt_str(d.get("link_id")),
            parent_id=_opt_str(d.get("parent_id")),
            subreddit=_str(d.get("subreddit")),
            locked=_bool(d.get("locked")),
            archived=_bool(d.get("archived")),
        )


@dataclass(frozen=True, slots=True)
class Thread:
    """`GET /comments/{id}`: the post and its top-level comments (`more` stubs left out)."""

    post: ThreadPost
    comments: list[Comment]

    @classmethod
    def parse(cls, payload: Any) -> Thread | None:
        if not isinstance(payload, list) or not payload:
            return None
        posts = _children(payload[0])
        if not posts or posts[0][0] != "t3":
            return None
        comments = _children(payload[1]) if len(payload) > 1 else []
        return cls(
            post=ThreadPost.parse(posts[0][1]),
            comments=[Comment.parse(data) for kind, data in comments if kind == "t1"],
        )


def _children(listing: Any) -> list[tuple[str, Mapping[str, Any]]]:
    children = _mapping(_mapping(listing).get("data")).get("children")
    if not isinstance(children, list):
        return []
    return [
        (_str(c.get("kind")), _mapping(c.get("data"))) for c in children if isinstance(c, Mapping)
    ]


__all__ = ["GONE_TEXTS", "Comment", "Thread", "ThreadPost"]
