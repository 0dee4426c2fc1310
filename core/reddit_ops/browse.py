"""Browsing Reddit, read-only: a subreddit's hot/new/top listing and one post's top comments.

Read through one of the workspace's own active accounts, so every request waits its turn in
that app's shared request budget (`core.reddit_ops.budget`) like the post queue's do. Nothing
here votes or writes, and a listing stops after `MAX_PAGES` pages: this is for an operator
reading a thread before replying, not for exporting other people's posts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.actor import Actor
from core.clock import Clock
from core.errors import InvalidInput, NotFound, OpsdeckError
from core.reddit import RedditAPIError, RedditNotFound, RedditUnavailable, normalize_subreddit
from core.reddit.client import RedditClient
from core.reddit.thread_models import Thread, ThreadPost
from core.reddit_ops.clients import RedditClients
from storage.models import Role
from storage.reddit_models import AccountStatus, RedditAccount
from storage.repositories import reddit as repo
from storage.uow import UnitOfWork

SORTS = ("hot", "new", "top")
PAGE_SIZE = 8
MAX_PAGES = 10
TOP_COMMENTS = 5


@dataclass(frozen=True, slots=True)
class BrowsePage:
    subreddit: str
    sort: str
    page: int  # 0-based
    posts: list[ThreadPost]
    after: str | None  # the next page's cursor; None on the last page we show
    reader: str  # the account read through
    fetched_at: datetime

    @property
    def first_number(self) -> int:
        return self.page * PAGE_SIZE + 1


@dataclass(frozen=True, slots=True)
class ThreadView:
    thread: Thread
    reader: str
    fetched_at: datetime


def parse_browse_args(text: str) -> tuple[str, str]:
    """`r/<sub> [hot|new|top]` → (subreddit, sort)."""
    parts = (text or "").split()
    if not parts or len(parts) > 2:
        raise InvalidInput("Usage: /browse r/<subreddit> [hot|new|top], e.g. /browse r/python new")
    try:
        sr = normalize_subreddit(parts[0])
    except RedditAPIError:
        raise InvalidInput(
            f"“{parts[0][:40]}” is not a subreddit name (3–21 letters, digits or _)."
        ) from None
    sort = parts[1].lower() if len(parts) > 1 else "hot"
    if sort not in SORTS:
        raise InvalidInput(f"Sort by hot, new or top, not “{parts[1][:20]}”.")
    return sr, sort


class BrowseService:
    """Read-only Reddit for operators (viewers too: reading changes nothing)."""

    def __init__(self, uow: UnitOfWork, clock: Clock, clients: RedditClients) -> None:
        self.uow = uow
        self.clock = clock
        self.clients = clients

    async def listing(
        self, actor: Actor, sr: str, sort: str = "hot", *, after: str | None = None, page: int = 0
    ) -> BrowsePage:
        actor.require(Role.viewer, "browse Reddit")
        name = normalize_subreddit(sr)
        if sort not in SORTS:
            raise InvalidInput("Sort by hot, new or top.")
        if not 0 <= page < MAX_PAGES:
            raise InvalidInput(
                f"Browsing stops after {MAX_PAGES} pages; open the subreddit on Reddit for more."
            )
        account, client = await self._reader(actor)
        try:
            listing = await client.subreddit_listing(name, sort, limit=PAGE_SIZE, after=after)
        except RedditUnavailable as exc:
            raise _down(exc) from exc
        more = listing.after if page + 1 < MAX_PAGES and len(listing.items) == PAGE_SIZE else None
        return BrowsePage(name, sort, page, listing.items, more, account.username, self.clock.now())

    async def thread(self, actor: Actor, post_id: str) -> ThreadView:
        """The post and its top comments, and the account read through."""
        actor.require(Role.viewer, "browse Reddit")
        account, client = await self._reader(actor)
        try:
            found = await client.thread(post_id, limit=TOP_COMMENTS)
            return ThreadView(found, account.username, self.clock.now())
        except ValueError:
            raise InvalidInput("That is not a Reddit post.") from None
        except RedditNotFound:
            raise NotFound("Reddit has no such post (any more).") from None
        except RedditUnavailable as exc:
            raise _down(exc) from exc

    async def _reader(self, actor: Actor) -> tuple[RedditAccount, RedditClient]:
        """The workspace's first active account that can log in: reads go through it."""
        async with self.uow.read() as session:
            accounts = await repo.list_accounts(session, actor.tenant_id)
        for account in accounts:
            if account.status != AccountStatus.active or account.is_dry_run:
                continue
            client = await self.clients.client(account)
            if client is not None:
                return account, client
        raise InvalidInput(
            "Browsing reads through one of the team's accounts, and none is active with a "
            "login. Connect one with /accounts add."
        )


def _down(exc: RedditUnavailable) -> OpsdeckError:
    return OpsdeckError(f"Reddit is not answering right now ({exc.message}); try again shortly.")


__all__ = [
    "MAX_PAGES",
    "PAGE_SIZE",
    "SORTS",
    "TOP_COMMENTS",
    "BrowsePage",
    "BrowseService",
    "ThreadView",
    "parse_browse_args",
]
