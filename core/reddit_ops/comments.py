"""Comments (`/reply`): what a Reddit URL points at, whether it still takes a reply, and the
comment saved as a post of kind `comment` so that it goes through the same queue, approval,
pacing, RATELIMIT handling and "look before sending again" as every post (`submit.py`).

A comment row keeps the post's title in `title` (what lists and notifications show), the
parent's permalink in `url`, the thing it answers (`t3_…` post or `t1_…` comment) in
`parent_fullname` and the markdown text in `body`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.actor import Actor
from core.clock import Clock
from core.errors import InvalidInput, NotFound, OpsdeckError
from core.reddit import (
    RedditAPIError,
    RedditClient,
    RedditForbidden,
    RedditNotFound,
    RedditUnavailable,
    normalize_subreddit,
)
from core.reddit.thread_models import GONE_TEXTS
from core.reddit_ops.clients import RedditClients
from core.reddit_ops.preflight import COMMENT_MAX
from core.services.audit import record
from storage.models import Role
from storage.reddit_models import (
    AccountStatus,
    PostKind,
    PostSource,
    PostStatus,
    RedditAccount,
    RedditPost,
)
from storage.repositories import reddit as repo
from storage.uow import UnitOfWork

_HOSTS = frozenset(
    {"reddit.com", "www.reddit.com", "old.reddit.com", "new.reddit.com", "np.reddit.com"}
    | {"m.reddit.com", "sh.reddit.com"}
)
_ID = r"[a-z0-9]{1,13}"
_SUB = r"[A-Za-z0-9_]{2,21}"
_PATHS = (
    # /r/<sub>/comments/<post>[/<slug>[/<comment>]]  and the newer …/comment/<comment>
    re.compile(rf"^/r/(?P<sr>{_SUB})/comments/(?P<post>{_ID})(?:/[^/]*)?(?:/(?P<c>{_ID}))?/?$"),
    re.compile(rf"^/r/(?P<sr>{_SUB})/comments/(?P<post>{_ID})/comment/(?P<c>{_ID})/?$"),
    re.compile(rf"^/comments/(?P<post>{_ID})(?:/[^/]*)?(?:/(?P<c>{_ID}))?/?$"),
)
_FULLNAME = re.compile(rf"^(?P<kind>t1|t3)_(?P<id>{_ID})$")
_SHARE = re.compile(rf"^/r/{_SUB}/s/\w+/?$")


@dataclass(frozen=True, slots=True)
class ReplyLink:
    """What a URL (or fullname) names: a post, or a comment under a post."""

    post_id: str | None  # base36; None for a bare comment fullname
    comment_id: str | None
    subreddit: str | None

    @property
    def thing_id(self) -> str:
        return f"t1_{self.comment_id}" if self.comment_id else f"t3_{self.post_id}"


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """The post or comment a reply answers, as Reddit described it just now."""

    thing_id: str
    subreddit: str
    post_title: str
    parent_author: str
    parent_text: str
    permalink: str | None
    checked: bool  # False: a dry-run account with nothing to read Reddit through


def parse_reply_link(text: str) -> ReplyLink:
    """A Reddit post or comment URL (www/old/new/np, redd.it) or a `t3_`/`t1_` fullname."""
    raw = (text or "").strip().strip("<>")
    usage = (
        "Give the address of a Reddit post or comment, e.g. "
        "https://www.reddit.com/r/python/comments/abc123/some_title/"
    )
    if not raw:
        raise InvalidInput(usage)
    fullname = _FULLNAME.match(raw)
    if fullname:
        if fullname["kind"] == "t3":
            return ReplyLink(fullname["id"], None, None)
        return ReplyLink(None, fullname["id"], None)
    if "://" not in raw:
        raw = "https://" + raw
    try:
        parts = urlsplit(raw)
    except ValueError:
        raise InvalidInput(usage) from None
    host = (parts.hostname or "").lower()
    path = parts.path or "/"
    if host == "redd.it":
        match = re.fullmatch(rf"/(?P<post>{_ID})/?", path)
        if match:
            return ReplyLink(match["post"], None, None)
        raise InvalidInput(usage)
    if host not in _HOSTS or parts.scheme not in ("http", "https"):
        raise InvalidInput("That is not a reddit.com address. " + usage)
    if _SHARE.match(path):
        raise InvalidInput(
            "That is a share link (/s/…), which hides the post it leads to. Open it in a "
            "browser and send the address it ends up at."
        )
    for pattern in _PATHS:
        match = pattern.match(path)
        if match:
            groups = match.groupdict()
            return ReplyLink(match["post"], groups.get("c"), groups.get("sr"))
    raise InvalidInput("That address is not a post or a comment. " + usage)


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_body(text: str) -> str:
    body = (text or "").strip()
    if not body:
        raise InvalidInput("The comment is empty; send its text (markdown works).")
    if len(body) > COMMENT_MAX:
        raise InvalidInput(
            f"The comment has {len(body):,} characters; Reddit allows {COMMENT_MAX:,}."
        )
    return body


async def ask_reddit(client: RedditClient, link: ReplyLink) -> ReplyTarget:
    """What `link` is on Reddit now; InvalidInput / NotFound when it takes no reply."""
    comment = None
    post_id = link.post_id
    if link.comment_id:
        comment = await client.comment_info(f"t1_{link.comment_id}")
        if comment is None:
            raise NotFound("Reddit has no such comment (any more).")
        linked = (comment.link_id or "").removeprefix("t3_")
        if post_id and linked and linked != post_id:
            raise InvalidInput("That comment belongs to another post than the address says.")
        post_id = linked or post_id
    if not post_id:
        raise NotFound("Reddit did not say which post that comment is under.")
    try:
        thread = await client.thread(post_id, limit=1)
    except RedditNotFound:
        raise NotFound("Reddit has no such post (any more).") from None
    post = thread.post
    closed = post.closed_reason
    if closed:
        raise InvalidInput(f"No reply possible: {closed}.")
    if comment is not None:
        if comment.deleted:
            raise InvalidInput("No reply possible: that comment was deleted or removed.")
        parent_author, parent_text, permalink = (
            comment.author,
            comment.body,
            comment.permalink_url,
        )
    else:
        parent_author = post.post.author
        parent_text = post.selftext if post.selftext not in GONE_TEXTS else ""
        parent_text = parent_text or (post.post.url or "")
        permalink = post.post.permalink_url
    try:
        sr = normalize_subreddit(post.post.subreddit or link.subreddit or "")
    except RedditAPIError:
        raise NotFound("Reddit did not say which subreddit that thread is in.") from None
    return ReplyTarget(
        thing_id=link.thing_id if link.comment_id else post.post.fullname or link.thing_id,
        subreddit=sr,
        post_title=post.post.title,
        parent_author=parent_author,
        parent_text=_excerpt(parent_text),
        permalink=permalink,
        checked=True,
    )


class CommentService:
    """Find what a reply answers, and save the reply as a draft in the post queue."""

    def __init__(self, uow: UnitOfWork, clock: Clock, clients: RedditClients) -> None:
        self.uow = uow
        self.clock = clock
        self.clients = clients

    async def repliers(self, actor: Actor) -> list[RedditAccount]:
        """The accounts a reply may go out as (every account; paused ones wait in the queue)."""
        actor.require(Role.operator, "reply on Reddit")
        async with self.uow.read() as session:
            return await repo.list_accounts(session, actor.tenant_id)

    async def resolve(self, actor: Actor, account_id: int, link: ReplyLink) -> ReplyTarget:
        """Ask Reddit what `link` is and whether it still takes a reply (reads only)."""
        actor.require(Role.operator, "reply on Reddit")
        account = await self._account(actor, account_id)
        client = await self._reader(actor, account)
        if client is None:
            if not link.subreddit or not link.post_id:
                raise InvalidInput(
                    f"u/{account.username} is dry-run only and no account of the team can read "
                    "Reddit, so give the full address (with /r/<subreddit>/comments/…)."
                )
            return ReplyTarget(
                link.thing_id, link.subreddit, f"post {link.post_id}", "?", "", None, False
            )
        try:
            return await ask_reddit(client, link)
        except RedditUnavailable as exc:
            raise OpsdeckError(
                f"Reddit is not answering right now ({exc.message}); try again shortly."
            ) from exc
        except RedditForbidden as exc:
            raise InvalidInput(
                f"u/{account.username} cannot see that thread: {exc.message}."
            ) from None

    async def draft(
        self, actor: Actor, account_id: int, target: ReplyTarget, body: str
    ) -> RedditPost:
        """Save the reply as a draft post of kind `comment` (queue it with `PostService`)."""
        actor.require(Role.operator, "reply on Reddit")
        text = check_body(body)
        now = self.clock.now()
        title = _excerpt(target.post_title, 300) or target.thing_id
        async with self.uow.write() as session:
            account = await repo.get_account(session, account_id, actor.tenant_id)
            if account is None:
                raise NotFound(f"Reddit account #{account_id} does not exist in your workspace.")
            post = await repo.add_post(
                session,
                RedditPost(
                    tenant_id=actor.tenant_id,
                    account_id=account.id,
                    source=PostSource.opsdeck,
                    subreddit=target.subreddit,
                    subreddit_key=target.subreddit.lower(),
                    kind=PostKind.comment,
                    title=title,
                    body=text,
                    url=target.permalink,
                    parent_fullname=target.thing_id,
                    status=PostStatus.draft,
                    requires_approval=False,
                    reddit_accepted=False,
                    dry_run=False,
                    removal_notified=False,
                    created_by=actor.user_id,
                    created_at=now,
                    updated_at=now,
                ),
            )
            await record(
                session,
                self.clock,
                tenant_id=actor.tenant_id,
                actor=actor,
                action="reddit.comment.draft",
                target=f"reddit_post:{post.id}",
                details={"parent": target.thing_id, "subreddit": target.subreddit},
            )
        return post

    async def _account(self, actor: Actor, account_id: int) -> RedditAccount:
        async with self.uow.read() as session:
            account = await repo.get_account(session, account_id, actor.tenant_id)
        if account is None:
            raise NotFound(f"Reddit account #{account_id} does not exist in your workspace.")
        return account

    async def _reader(self, actor: Actor, account: RedditAccount) -> RedditClient | None:
        """Read as the replying account when it can log in, else as any active team account."""
        if not account.is_dry_run:
            client = await self.clients.client(account)
            if client is not None:
                return client
        async with self.uow.read() as session:
            accounts = await repo.list_accounts(session, actor.tenant_id)
        for other in accounts:
            if other.status == AccountStatus.active and not other.is_dry_run:
                client = await self.clients.client(other)
                if client is not None:
                    return client
        return None


__all__ = [
    "COMMENT_MAX",
    "CommentService",
    "ReplyLink",
    "ReplyTarget",
    "ask_reddit",
    "check_body",
    "parse_reply_link",
]
