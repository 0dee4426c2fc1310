"""`/posts published` and `/posts all`: what the team put on Reddit and what became of each.

Each kind of entry (posts here; comments add a source of their own) gives `ListedEntry`s
through a `ListingSource`; `RedditListing` merges them newest first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from core.actor import Actor

# Which entries a listing shows.
PUBLISHED = "published"
ALL = "all"
WHICH = (PUBLISHED, ALL)


@dataclass(frozen=True, slots=True)
class ListedEntry:
    """One line of the listing."""

    kind: str  # "post" (a comment source uses its own word)
    id: int
    username: str | None
    subreddit: str
    text: str  # a post's title, a comment's first words
    status: str  # our status: published, failed, queued, …
    state: str  # what became of it on Reddit, in words ("live", "removed by …", …)
    at: datetime  # published, or last changed for what was not
    permalink: str | None


ListingSource = Callable[[Actor, str, int], Awaitable[list[ListedEntry]]]


class RedditListing:
    """Every source's entries, newest first."""

    def __init__(self, sources: dict[str, ListingSource]) -> None:
        self.sources = sources

    async def entries(self, actor: Actor, which: str, limit: int = 30) -> list[ListedEntry]:
        if which not in WHICH:
            raise ValueError(f"unknown listing {which!r}")
        found: list[ListedEntry] = []
        for source in self.sources.values():
            found += await source(actor, which, limit)
        found.sort(key=lambda e: e.at, reverse=True)
        return found[:limit]
