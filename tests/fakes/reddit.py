"""A fake Reddit that speaks HTTP like Reddit, for unit, end-to-end and bench runs.

One aiohttp server on 127.0.0.1 (a free port) plays three hosts under three prefixes:

* `fake.www_url`   (`/www`)   — the token endpoint `POST /api/v1/access_token`
* `fake.oauth_url` (`/oauth`) — the API
* `fake.media_upload_url` (`/s3`) — the S3-style media upload (point
  `RedditConfig.media_upload_url` at it)

Answers copy the shapes recorded in /work/shared/reddit-recordings (PRAW/prawcore cassettes):
the HTTP 200 `invalid_grant`, rate-limit headers on every authenticated API answer, 401 with
`www-authenticate`, `json.errors` lists, `RATELIMIT`, HTTP 400 `SUBMIT_VALIDATION_*`, the media
lease and a 201 XML upload answer, listings with `after` cursors.

State is plain attributes plus a few `add_*` / `set_*` / `queue_error` methods; time comes from
an injectable clock, so `VirtualTime` can make a day pass in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import re
import secrets
import string
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import BasicAuth, web

from core.clock import Clock, FrozenClock, SystemClock
from core.reddit.config import RedditConfig

S3_ACTION = "//reddit-uploaded-media.s3-accelerate.amazonaws.com"
S3_PUBLIC = "https:" + S3_ACTION
MAX_UPLOAD = 20_971_520
JSON = "application/json; charset=UTF-8"
_UNSET: Any = object()
_ALIASES = {
    "token": "/api/v1/access_token",
    "submit": "/api/submit",
    "media": "/api/media/asset.json",
    "lease": "/api/media/asset.json",
    "upload": "/s3",
    "me": "/api/v1/me",
    "info": "/api/info",
    "inbox": "/message/inbox",
    "comment": "/api/comment",
}
_SCOPES = {
    "me": "identity",
    "about": "read",
    "rules": "read",
    "requirements": "read",
    "info": "read",
    "flair": "flair",
    "submit": "submit",
    "media": "submit",
    "submitted": "history",
    "inbox": "privatemessages",
    "listing": "read",
    "comments": "read",
    "comment": "submit",
    "user_comments": "history",
}
COMMENT_MAX = 10_000
_TOO_MANY_HTML = """
<!doctype html>
<html>
  <head>
    <title>Too Many Requests</title>
  </head>
  <body>
    <h1>whoa there, pardner!</h1>
<p>we're sorry, but you appear to be a bot and we've seen too many requests
from you lately. we enforce a hard speed limit on requests that appear to come
from bots to prevent abuse.</p>
<p>please wait {seconds} second(s) and try again.</p>
    <p>as a reminder to developers, we recommend that clients make no
    more than <a href="http://github.com/reddit/reddit/wiki/API">one
    request every two seconds</a> to avoid seeing this message.</p>
  </body>
</html>
"""


def _base36(number: int) -> str:
    alphabet = string.digits + string.ascii_lowercase
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = alphabet[rest] + out
        if number == 0:
            return out


_RATELIMIT_WORDS = re.compile(r"(\d+)\s*(millisecond|second|minute|hour)", re.IGNORECASE)


def _ratelimit_words(message: str) -> float | None:
    """The `json.ratelimit` number Reddit sends with a RATELIMIT message: a little less than
    the rounded-up time in the words."""
    found = _RATELIMIT_WORDS.search(message)
    if found is None:
        return None
    unit = {"millisecond": 0.001, "second": 1, "minute": 60, "hour": 3600}
    whole = int(found.group(1)) * unit[found.group(2).lower()]
    return round(max(0.001, whole - 0.4 if whole > 1 else whole * 0.6), 3)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:50] or "post"


class VirtualTime:
    """A clock that stands still, and a `sleep` that moves it forward instead of waiting.

    Pass it as `clock=` and its `sleep` as `sleep=` to the client and the fake: waits are
    recorded in `sleeps` and cost no wall time.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self.clock = FrozenClock(start)
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.clock.now()

    def timestamp(self) -> float:
        return self.clock.now().timestamp()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        # datetime has microsecond resolution: round up, plus one, so that after sleeping
        # "until t" the clock really reads t or later (else a pacer would sleep 0 s forever).
        micros = math.ceil(max(0.0, seconds) * 1_000_000) + 1
        target = self.clock.now() + timedelta(microseconds=micros)
        await asyncio.sleep(0)
        now = self.clock.now()
        if target > now:
            self.clock.advance(target - now)


@dataclass
class FakeAccount:
    username: str
    password: str
    client_id: str
    client_secret: str
    suspended: bool = False
    suspension_expiration_utc: float | None = None
    refresh_token: str = ""
    refresh_scopes: str = "identity read submit flair privatemessages history edit"
    link_karma: int = 1
    comment_karma: int = 0
    id: str = ""
    created_utc: float = 0.0
    # Two-factor auth on: a password grant needs `password:otp` (Reddit's form), else
    # invalid_grant like a wrong password.
    otp: str | None = None


@dataclass
class FakeSubreddit:
    name: str
    submission_type: str = "any"
    over18: bool = False
    allow_images: bool = True
    allow_videos: bool = True
    subreddit_type: str = "public"
    requirements: dict[str, Any] = field(default_factory=dict)
    flairs: list[dict[str, Any]] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)
    id: str = ""
    banned: set[str] = field(default_factory=set)  # lowercased usernames banned here
    quarantined: bool = False  # hidden from accounts that have not opted in (ours never do)
    # AutoModerator or a spam filter: every new post is removed the moment it is made
    # (submit still answers success, as Reddit does)
    removes_new: str | None = None

    def hidden_from(self, username: str) -> bool:
        """Reddit leaves this subreddit's posts out of `/api/info` for this account."""
        return (
            self.subreddit_type == "private" or self.quarantined or username.lower() in self.banned
        )


@dataclass
class FakePost:
    id: str
    author: str
    subreddit: str
    kind: str
    title: str
    text: str
    url: str | None
    created_utc: float
    flair_id: str | None = None
    flair_text: str | None = None
    nsfw: bool = False
    spoiler: bool = False
    score: int = 1
    num_comments: int = 0
    upvote_ratio: float = 1.0
    removed_by_category: str | None = None
    locked: bool = False
    archived: bool = False
    # An image post shows in listings and /api/info only once Reddit processed its image;
    # a rejected image never does.
    visible_from: float = 0.0
    media_key: str | None = None

    @property
    def fullname(self) -> str:
        return f"t3_{self.id}"

    @property
    def permalink(self) -> str:
        return f"/r/{self.subreddit}/comments/{self.id}/{_slug(self.title)}/"

    def data(self) -> dict[str, Any]:
        is_self = self.kind == "self"
        return {
            "subreddit": self.subreddit,
            "subreddit_name_prefixed": f"r/{self.subreddit}",
            "selftext": self.text,
            "title": self.title,
            "name": self.fullname,
            "id": self.id,
            "author": self.author,
            "score": self.score,
            "ups": self.score,
            "upvote_ratio": self.upvote_ratio,
            "num_comments": self.num_comments,
            "removed_by_category": self.removed_by_category,
            "over_18": self.nsfw,
            "spoiler": self.spoiler,
            "is_self": is_self,
            "domain": f"self.{self.subreddit}" if is_self else _domain(self.url or ""),
            "link_flair_text": self.flair_text,
            "link_flair_template_id": self.flair_id,
            "permalink": self.permalink,
            "url": f"https://www.reddit.com{self.permalink}" if is_self else self.url,
            "created": self.created_utc,
            "created_utc": self.created_utc,
            "send_replies": True,
            "is_video": False,
            "locked": self.locked,
            "archived": self.archived,
            "stickied": False,
        }


@dataclass
class FakeComment:
    id: str
    author: str
    post_id: str
    parent_id: str  # t3_… (top level) or t1_…
    subreddit: str
    body: str
    created_utc: float
    score: int = 1

    @property
    def fullname(self) -> str:
        return f"t1_{self.id}"

    @property
    def permalink(self) -> str:
        return f"/r/{self.subreddit}/comments/{self.post_id}/_/{self.id}/"

    def data(self, post: FakePost | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.fullname,
            "author": self.author,
            "body": self.body,
            "score": self.score,
            "ups": self.score,
            "created": self.created_utc,
            "created_utc": self.created_utc,
            "permalink": self.permalink,
            "link_id": f"t3_{self.post_id}",
            "parent_id": self.parent_id,
            "subreddit": self.subreddit,
            "subreddit_name_prefixed": f"r/{self.subreddit}",
            "locked": post.locked if post else False,
            "archived": post.archived if post else False,
            "replies": "",
            "depth": 0,
        }


@dataclass
class FakeMessage:
    id: str
    kind: str
    dest: str
    author: str
    subject: str
    body: str
    created_utc: float
    new: bool = True
    subreddit: str | None = None
    context: str = ""
    parent_id: str | None = None
    link_title: str | None = None

    @property
    def fullname(self) -> str:
        return f"{self.kind}_{self.id}"

    def data(self) -> dict[str, Any]:
        comment = self.kind == "t1"
        return {
            "first_message": None,
            "first_message_name": None,
            "subreddit": self.subreddit,
            "likes": None,
            "replies": "",
            "id": self.id,
            "subject": self.subject,
            "score": 1 if comment else 0,
            "author": self.author,
            "parent_id": self.parent_id,
            "subreddit_name_prefixed": f"r/{self.subreddit}" if self.subreddit else None,
            "new": self.new,
            "type": "comment_reply" if comment else "unknown",
            "body": self.body,
            "link_title": self.link_title,
            "dest": self.dest,
            "was_comment": comment,
            "name": self.fullname,
            "created": self.created_utc,
            "created_utc": self.created_utc,
            "context": self.context,
            "distinguished": None,
        }


@dataclass
class FakeUpload:
    key: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class RecordedRequest:
    method: str
    host: str  # "www", "oauth" or "s3"
    path: str  # without the host prefix and trailing slash
    query: dict[str, str]
    form: dict[str, str]
    client_id: str | None
    username: str | None
    status: int  # 0 while the answer is still pending
    at: float
    user_agent: str
    authorization: str | None


@dataclass
class _Token:
    username: str
    client_id: str
    expires_at: float
    scope: frozenset[str]


@dataclass
class _Code:
    username: str
    client_id: str
    redirect_uri: str
    scope: str
    permanent: bool
    expires_at: float


class Hold:
    """A request held by the fake (see `FakeReddit.hold`): `arrived` is set when it is in
    the fake's hands (after Reddit carried it out, with `process=True`); `release()` lets the
    answer go (a 504 when the request was not carried out)."""

    def __init__(self, process: bool) -> None:
        self.process = process
        self.arrived = asyncio.Event()
        self.released = asyncio.Event()

    def release(self) -> None:
        self.released.set()


@dataclass
class _Fault:
    path: str
    status: int | None = None
    retry_after: int | None = None
    body: str | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    ratelimit: str | None = None
    ratelimit_seconds: float | None = None
    errors: list[list[str | None]] | None = None
    hang: float | None = None
    process: bool = False
    times: int = 1
    hold: Hold | None = None


@dataclass
class _Window:
    index: int = -1
    used: int = 0
    recent: deque[float] = field(default_factory=deque)


class _Reply(Exception):
    """Raised inside handlers to answer at once with `response`."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(payload, status=status, headers=headers, content_type=None)


def _domain(url: str) -> str:
    match = re.match(r"^[a-z]+://([^/:?#]+)", url, re.IGNORECASE)
    return match.group(1).lower().removeprefix("www.") if match else ""


def _xml_error(code: str, message: str, extra: str = "", status: int = 400) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>{extra}"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId>"
        f"<HostId>{secrets.token_urlsafe(24)}</HostId></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


class FakeReddit:
    """The fake. `async with FakeReddit() as fake:` or `await fake.start()` / `fake.close()`."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        ratelimit_quota: int = 1000,
        ratelimit_window: int = 600,
        token_lifetime: int = 3600,
        media_max_size: int = MAX_UPLOAD,
    ) -> None:
        self.clock = clock or SystemClock()
        self.ratelimit_quota = ratelimit_quota
        self.ratelimit_window = ratelimit_window
        self.token_lifetime = token_lifetime
        self.media_max_size = media_max_size
        self.accounts: dict[str, FakeAccount] = {}
        self.apps: dict[str, str] = {}
        self.subreddits: dict[str, FakeSubreddit] = {}
        self.posts: list[FakePost] = []
        self.messages: list[FakeMessage] = []
        self.comments: list[FakeComment] = []
        self.uploads: dict[str, FakeUpload] = {}
        self.requests: list[RecordedRequest] = []
        self.grants: list[dict[str, Any]] = []
        self.revocations: list[dict[str, str]] = []  # POST /api/v1/revoke_token calls
        # Image posts: seconds of processing before the post appears (Reddit takes a few),
        # and whether processing rejects the image (told over the lease's websocket only).
        self.image_processing_seconds = 3.0
        self.reject_images = False
        self.websocket_enabled = True  # False: the socket refuses, clients must poll
        self.media_sockets: list[str] = []  # keys of the websockets clients opened
        self._media_done: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.throttled = 0
        self.throttled_per_client: Counter[str] = Counter()
        self.limit: tuple[int, float] | None = None
        self._tokens: dict[str, _Token] = {}
        # "Connect with Reddit": web apps, who is signed in on reddit.com in "the browser" and
        # whether they press Allow, issued codes and the refresh tokens of web apps.
        self.web_apps: dict[str, tuple[str, str]] = {}  # client id -> (secret, redirect uri)
        self.browser_user: str | None = None
        self.browser_allows = True
        self.authorizations: list[dict[str, str]] = []
        self._codes: dict[str, _Code] = {}
        self._web_refresh: dict[str, tuple[str, str, str]] = {}  # token -> user, app, scope
        self._leases: dict[str, dict[str, str]] = {}
        self._faults: list[_Fault] = []
        self._windows: dict[str, _Window] = {}
        self._ids = 0x4BBE00
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.base_url = ""

    # == lifecycle ==========================================================================

    async def start(self) -> FakeReddit:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/ws/{key:.+}", self._media_socket)  # the media lease's websocket
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeReddit:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def www_url(self) -> str:
        return f"{self.base_url}/www"

    @property
    def oauth_url(self) -> str:
        return f"{self.base_url}/oauth"

    @property
    def media_upload_url(self) -> str:
        return f"{self.base_url}/s3"

    # == programming the fake ===============================================================

    def add_account(
        self,
        username: str,
        password: str,
        client_id: str,
        client_secret: str,
        suspended: bool = False,
        *,
        suspension_expiration_utc: float | None = None,
        link_karma: int = 1,
        comment_karma: int = 0,
    ) -> FakeAccount:
        """An account that is a developer of the app `client_id` (script apps need that).

        `account.refresh_token` is also valid for the refresh-token grant on that app.
        """
        if self.apps.get(client_id, client_secret) != client_secret:
            raise ValueError(f"app {client_id} already has another secret")
        self.apps[client_id] = client_secret
        account = FakeAccount(
            username=username,
            password=password,
            client_id=client_id,
            client_secret=client_secret,
            suspended=suspended,
            suspension_expiration_utc=suspension_expiration_utc,
            refresh_token=f"{self._next_id()}-{secrets.token_urlsafe(20)}",
            link_karma=link_karma,
            comment_karma=comment_karma,
            id=self._next_id(),
            created_utc=self._now() - 86_400 * 400,
        )
        self.accounts[username.lower()] = account
        return account

    def add_web_app(self, client_id: str, client_secret: str, redirect_uri: str) -> None:
        """A Reddit *web* app with its one registered redirect URI (the OAuth code flow).

        Whoever `browser_user` names is signed in on the consent page, and presses Allow
        unless `browser_allows` is False."""
        if self.apps.get(client_id, client_secret) != client_secret:
            raise ValueError(f"app {client_id} already has another secret")
        self.apps[client_id] = client_secret
        self.web_apps[client_id] = (client_secret, redirect_uri)

    def add_subreddit(
        self,
        name: str,
        submission_type: str = "any",
        over18: bool = False,
        allow_images: bool = True,
        requirements: dict[str, Any] | None = None,
        flairs: list[str | dict[str, Any]] | None = None,
        *,
        rules: list[str | dict[str, Any]] | None = None,
        subreddit_type: str = "public",
        allow_videos: bool = True,
    ) -> FakeSubreddit:
        """A subreddit. `requirements` overrides post_requirements fields (e.g.
        `{"title_blacklisted_strings": ["x"], "is_flair_required": True}`); a flair is a text or
        a dict with `flair_template_id`, `flair_text`, `flair_text_editable`."""
        sub = FakeSubreddit(
            name=name,
            submission_type=submission_type,
            over18=over18,
            allow_images=allow_images,
            allow_videos=allow_videos,
            subreddit_type=subreddit_type,
            requirements=dict(requirements or {}),
            flairs=[self._flair(f) for f in flairs or []],
            rules=[self._rule(r, i) for i, r in enumerate(rules or [])],
            id=self._next_id(),
        )
        self.subreddits[name.lower()] = sub
        return sub

    def add_post(
        self,
        username: str,
        subreddit: str,
        title: str,
        *,
        kind: str = "self",
        text: str = "",
        url: str | None = None,
        created_utc: float | None = None,
    ) -> FakePost:
        """A post that already exists (history for listings, `/api/info` and lookups)."""
        post = FakePost(
            id=self._next_id(),
            author=self._account(username).username,
            subreddit=self._sub_name(subreddit),
            kind=kind,
            title=title,
            text=text,
            url=url,
            created_utc=self._now() if created_utc is None else created_utc,
        )
        self.posts.append(post)
        return post

    def add_comment(
        self, author: str, post: FakePost, body: str, *, parent: str | None = None, score: int = 1
    ) -> FakeComment:
        """A comment someone (any name) made on `post`, top level or under `parent`."""
        comment = FakeComment(
            id=self._next_id(),
            author=author,
            post_id=post.id,
            parent_id=parent or post.fullname,
            subreddit=post.subreddit,
            body=body,
            created_utc=self._now(),
            score=score,
        )
        self.comments.append(comment)
        post.num_comments += 1
        return comment

    def comments_by(self, username: str) -> list[FakeComment]:
        return [c for c in self.comments if c.author.lower() == username.lower()]

    def add_inbox_message(
        self,
        username: str,
        *,
        author: str = "someone",
        subject: str = "hello",
        body: str = "hi",
        kind: str = "t4",
        new: bool = True,
        subreddit: str | None = None,
        link_title: str | None = None,
        created_utc: float | None = None,
    ) -> FakeMessage:
        """A private message (`t4`) or a comment reply (`t1`) in `username`'s inbox."""
        message = FakeMessage(
            id=self._next_id(),
            kind=kind,
            dest=self._account(username).username,
            author=author,
            subject=subject if kind == "t4" else "comment reply",
            body=body,
            created_utc=self._now() if created_utc is None else created_utc,
            new=new,
            subreddit=subreddit,
            link_title=link_title,
        )
        if kind == "t1":
            message.context = f"/r/{subreddit or 'test'}/comments/abc/x/{message.id}/?context=3"
            message.parent_id = "t3_abc"
        self.messages.append(message)
        return message

    def delete_post(self, fullname: str) -> FakePost:
        """The author deleted the post: `/api/info` still returns it, as Reddit does, with
        `[deleted]` for author and text and `removed_by_category` "deleted"."""
        post = self.post(fullname)
        post.author = "[deleted]"
        post.text = "[deleted]"
        post.removed_by_category = "deleted"
        return post

    def set_subreddit_type(self, name: str, subreddit_type: str) -> FakeSubreddit:
        """ "private" hides the subreddit's posts from `/api/info` (our accounts are not
        approved members); "public" shows them again."""
        sub = self.subreddits[name.lower()]
        sub.subreddit_type = subreddit_type
        return sub

    def set_post_stats(
        self,
        fullname: str,
        *,
        score: int | None = None,
        num_comments: int | None = None,
        upvote_ratio: float | None = None,
        removed_by_category: str | None = _UNSET,
    ) -> FakePost:
        post = self.post(fullname)
        if score is not None:
            post.score = score
        if num_comments is not None:
            post.num_comments = num_comments
        if upvote_ratio is not None:
            post.upvote_ratio = upvote_ratio
        if removed_by_category is not _UNSET:
            post.removed_by_category = removed_by_category
        return post

    def queue_error(
        self,
        path_or_action: str,
        *,
        status: int | None = None,
        retry_after: int | None = None,
        body: str | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        ratelimit: str | None = None,
        ratelimit_seconds: float | None = None,
        errors: list[list[str | None]] | None = None,
        hang: float | None = None,
        process: bool = False,
        times: int = 1,
    ) -> None:
        """A one-off fault for the next `times` requests to a path (after authentication).

        `path_or_action`: a path as the client sends it (`"/api/submit"`, `"/r/foo/about"`),
        an alias (`token`, `submit`, `media`, `upload`, `me`, `info`, `inbox`) or `"*"`.
        One of:
        * `status=503` (or 500/502/504/520/522/401/403...) — that status, empty JSON-typed body;
          `status=429` — the HTML "whoa there" page with `Retry-After: retry_after` (default 4);
        * `ratelimit="you are doing that too much. try again in 9 minutes."` — HTTP 200 with
          `json.errors = [["RATELIMIT", message, "ratelimit"]]` and the numeric
          `json.ratelimit` (`ratelimit_seconds`, else a little under the words' time);
        * `errors=[["NO_SELFS", "...", "sr"]]` — HTTP 200 with that `json.errors` list;
        * `hang=seconds` — answer only after `seconds`; with `process=True` the request is
          carried out first (a submit creates its post), otherwise nothing happens and the late
          answer is a 504.
        """
        path = _ALIASES.get(path_or_action, path_or_action)
        if path != "*":
            path = "/" + path.strip("/")
        self._faults.append(
            _Fault(
                path=path,
                status=status,
                retry_after=retry_after,
                body=body,
                content_type=content_type,
                headers=dict(headers or {}),
                ratelimit=ratelimit,
                ratelimit_seconds=ratelimit_seconds,
                errors=errors,
                hang=hang,
                process=process,
                times=times,
            )
        )

    def hold(self, path_or_action: str, *, process: bool) -> Hold:
        """Hold the next request to a path (an alias as in `queue_error`) until released, and
        signal its arrival: the moment to kill a client mid-request. With `process=True` the
        request is carried out first (a submit creates its post) and only the answer waits;
        otherwise nothing happens and the late answer is a 504 (the request never reached
        Reddit's side). The fake's close releases every hold."""
        held = Hold(process)
        self.queue_error(path_or_action)
        self._faults[-1].hold = held
        return held

    def enforce_limit(self, limit: int, per_seconds: float = 60) -> None:
        """Answer 429 (HTML, `Retry-After`) once a client id made `limit` requests within any
        `per_seconds`; 429s sent are counted in `throttled` / `throttled_per_client`."""
        self.limit = (limit, per_seconds)

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working (the next API call gets a 401)."""
        self._tokens.clear()

    def client_config(self, **overrides: Any) -> RedditConfig:
        """A `RedditConfig` pointing at this fake (www, oauth and the media upload)."""
        values: dict[str, Any] = {
            "user_agent": "test:opsdeck.tests:0.1 (by /u/opsdeck_tests)",
            "oauth_url": self.oauth_url,
            "www_url": self.www_url,
            "media_upload_url": self.media_upload_url,
            "timeout": 5.0,
        }
        values.update(overrides)
        return RedditConfig(**values)

    # == reading the fake ===================================================================

    def post(self, fullname: str) -> FakePost:
        for post in self.posts:
            if post.fullname == fullname:
                return post
        raise KeyError(fullname)

    def posts_by(self, username: str) -> list[FakePost]:
        return [p for p in self.posts if p.author.lower() == username.lower()]

    def count_posts(
        self, *, username: str | None = None, title: str | None = None, subreddit: str | None = None
    ) -> int:
        return sum(
            1
            for p in self.posts
            if (username is None or p.author.lower() == username.lower())
            and (title is None or p.title == title)
            and (subreddit is None or p.subreddit.lower() == subreddit.lower())
        )

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        path = "/" + _ALIASES.get(path, path).strip("/")
        return [
            r for r in self.requests if r.path == path and (method is None or r.method == method)
        ]

    @property
    def requests_per_client(self) -> Counter[str]:
        """API (oauth) requests per client id, token grants and uploads excluded."""
        return Counter(r.client_id for r in self.requests if r.host == "oauth" and r.client_id)

    # == dispatch ===========================================================================

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["tail"]
        host, _, rest = raw.partition("/")
        path = "/" + rest.strip("/")
        form: dict[str, str] = {}
        if host != "s3" and request.method == "POST":
            posted = await request.post()
            form = {k: v for k, v in posted.items() if isinstance(v, str)}
        record = RecordedRequest(
            method=request.method,
            host=host,
            path=path if host != "s3" else "/s3",
            query=dict(request.query),
            form={k: ("<redacted>" if k == "password" else v) for k, v in form.items()},
            client_id=None,
            username=None,
            status=0,
            at=self._now(),
            user_agent=request.headers.get("User-Agent", ""),
            authorization=request.headers.get("Authorization"),
        )
        self.requests.append(record)  # logged on arrival; `status` is filled in when answered
        try:
            if host == "www":
                response = await self._www(request, path, form, record)
            elif host == "oauth":
                response = await self._oauth(request, path, form, record)
            elif host == "s3" and request.method == "POST":
                response = await self._s3(request, record)
            else:
                response = _json({"message": "Not Found", "error": 404}, status=404)
        except _Reply as reply:
            response = reply.response
        record.status = response.status
        return response

    def _take_fault(self, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.path in (path, "*") and fault.times > 0:
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _fault_response(self, fault: _Fault) -> web.Response | None:
        if fault.ratelimit is not None:
            # Reddit sends the wait as a number too; its message rounds it up
            body: dict[str, Any] = {"errors": [["RATELIMIT", fault.ratelimit, "ratelimit"]]}
            seconds = fault.ratelimit_seconds
            if seconds is None:
                seconds = _ratelimit_words(fault.ratelimit)
            if seconds is not None:
                body["ratelimit"] = seconds
            return _json({"json": body})
        if fault.errors is not None:
            return _json({"json": {"errors": fault.errors}})
        if fault.status == 429:
            return self._too_many(fault.retry_after or 4)
        if fault.status is not None:
            return web.Response(
                status=fault.status,
                text=fault.body or "",
                content_type=(fault.content_type or "application/json"),
                headers=fault.headers,
            )
        return None

    async def _hang(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def _too_many(self, seconds: int) -> web.Response:
        return web.Response(
            status=429,
            text=_TOO_MANY_HTML.format(seconds=seconds),
            content_type="text/html",
            charset="UTF-8",
            headers={"retry-after": str(seconds)},
        )

    # == www: tokens ========================================================================

    async def _www(
        self, request: web.Request, path: str, form: dict[str, str], record: RecordedRequest
    ) -> web.Response:
        if path == "/api/v1/authorize" and request.method == "GET":
            return self._authorize(request)
        known = ("/api/v1/access_token", "/api/v1/revoke_token")
        if path not in known or request.method != "POST":
            return _json({"message": "Not Found", "error": 404}, status=404)
        fault = self._take_fault(path)
        if fault is not None:
            if fault.hang:
                await self._hang(fault.hang)
                return web.Response(status=504, text="")
            response = self._fault_response(fault)
            if response is not None:
                return response
        if path == "/api/v1/revoke_token":
            return self._revoke(request, form)
        try:
            auth = BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            auth = None
        if auth is None or self.apps.get(auth.login) != auth.password:
            return _json({"message": "Unauthorized", "error": 401}, status=401)
        record.client_id = auth.login
        grant_type = form.get("grant_type")
        if grant_type == "password":
            if auth.login in self.web_apps:  # only a script app may take a password
                self.grants.append({"grant_type": grant_type, "ok": False, **self._who(form)})
                return _json({"error": "unauthorized_client"}, status=400)
            account = self.accounts.get(form.get("username", "").lower())
            expected = None
            if account is not None:
                expected = account.password + (f":{account.otp}" if account.otp else "")
            # not a developer of this script app (account.client_id), or a wrong password,
            # or two-factor auth without the code: Reddit answers all alike
            if (
                account is None
                or account.client_id != auth.login
                or expected != form.get("password")
            ):
                self.grants.append({"grant_type": grant_type, "ok": False, **self._who(form)})
                return _json({"error": "invalid_grant"})
            scope = form.get("scope") or "*"
            extra: dict[str, str] = {}
        elif grant_type == "refresh_token":
            account = next(
                (
                    a
                    for a in self.accounts.values()
                    if a.refresh_token == form.get("refresh_token") and a.client_id == auth.login
                ),
                None,
            )
            scope = account.refresh_scopes if account is not None else ""
            extra = {"refresh_token": account.refresh_token} if account is not None else {}
            web_grant = self._web_refresh.get(form.get("refresh_token", ""))
            if account is None and web_grant is not None and web_grant[1] == auth.login:
                account = self.accounts[web_grant[0].lower()]
                scope = web_grant[2]
                extra = {"refresh_token": form["refresh_token"]}
            if account is None:
                self.grants.append({"grant_type": grant_type, "ok": False})
                return _json({"error": 400}, status=400)
        elif grant_type == "authorization_code":
            # Reddit's own server: a code is single-use, lives 10 minutes, and belongs to one
            # app and redirect URI; any mismatch is HTTP 200 invalid_grant.
            code = self._codes.pop(form.get("code", ""), None)
            if (
                code is None
                or code.client_id != auth.login
                or code.redirect_uri != form.get("redirect_uri")
                or self._now() >= code.expires_at
            ):
                self.grants.append({"grant_type": grant_type, "ok": False})
                return _json({"error": "invalid_grant"})
            account = self.accounts[code.username.lower()]
            scope = code.scope
            extra = {}
            if code.permanent:
                refresh = f"{self._next_id()}-{secrets.token_urlsafe(24)}"
                self._web_refresh[refresh] = (account.username, auth.login, scope)
                extra = {"refresh_token": refresh}
        else:
            return _json({"error": "unsupported_grant_type"}, status=400)
        token = f"{self._next_id()}-{secrets.token_urlsafe(24)}"
        self._tokens[token] = _Token(
            username=account.username,
            client_id=auth.login,
            expires_at=self._now() + self.token_lifetime,
            scope=frozenset(scope.split()),
        )
        record.username = account.username
        self.grants.append(
            {
                "grant_type": grant_type,
                "ok": True,
                "username": account.username,
                "client_id": auth.login,
                "scope": form.get("scope"),
            }
        )
        return _json(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": self.token_lifetime,
                "scope": scope,
                **extra,
            }
        )

    def _authorize(self, request: web.Request) -> web.Response:
        """The consent page, answered as if the signed-in `browser_user` pressed Allow (or
        Decline): a 302 back to the app's redirect URI with `code` (or `error`) and `state`.
        A bad client id or redirect URI stops on Reddit's own error page, as Reddit does."""
        q = request.query
        self.authorizations.append(dict(q))
        app = self.web_apps.get(q.get("client_id", ""))
        if app is None:
            return web.Response(status=400, text="invalid client id", content_type="text/html")
        if q.get("redirect_uri") != app[1]:
            return web.Response(status=400, text="bad redirect_uri", content_type="text/html")
        state = q.get("state", "")
        scopes = q.get("scope", "").split()
        known = set(_SCOPES.values()) | {"edit", "vote", "mysubreddits", "save"}
        error = None
        if q.get("response_type") != "code":
            error = "unsupported_response_type"
        elif q.get("duration") not in ("temporary", "permanent"):
            error = "invalid_request"
        elif not scopes or not set(scopes) <= known:
            error = "invalid_scope"
        elif not self.browser_allows:
            error = "access_denied"
        if self.browser_user is None and error is None:
            return web.Response(status=200, text="log in to reddit", content_type="text/html")
        params: dict[str, str] = {"state": state}
        if error is not None:
            params["error"] = error
        else:
            code = secrets.token_urlsafe(20)
            self._codes[code] = _Code(
                username=self._account(self.browser_user or "").username,
                client_id=q["client_id"],
                redirect_uri=app[1],
                scope=" ".join(scopes),
                permanent=q.get("duration") == "permanent",
                expires_at=self._now() + 600,
            )
            params["code"] = code
        sep = "&" if "?" in app[1] else "?"
        location = app[1] + sep + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        return web.Response(status=302, headers={"Location": location})

    def _revoke(self, request: web.Request, form: dict[str, str]) -> web.Response:
        """`POST /api/v1/revoke_token` (HTTP basic auth with the app): 204 whether or not the
        token was valid, as Reddit answers; a revoked refresh token takes the access tokens
        granted from it along. Each call is kept in `revocations`."""
        try:
            auth = BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            auth = None
        if auth is None or self.apps.get(auth.login) != auth.password:
            return _json({"message": "Unauthorized", "error": 401}, status=401)
        token, hint = form.get("token", ""), form.get("token_type_hint", "")
        self.revocations.append({"client_id": auth.login, "token_type_hint": hint, "token": token})
        access = self._tokens.get(token)
        if access is not None and access.client_id == auth.login:
            del self._tokens[token]
        for account in self.accounts.values():
            if token and account.refresh_token == token and account.client_id == auth.login:
                account.refresh_token = ""
                for value, granted in list(self._tokens.items()):
                    if granted.username == account.username and granted.client_id == auth.login:
                        del self._tokens[value]
        return web.Response(status=204)

    @staticmethod
    def _who(form: dict[str, str]) -> dict[str, str]:
        return {"username": form.get("username", "")}

    # == oauth: the API =====================================================================

    async def _oauth(
        self, request: web.Request, path: str, form: dict[str, str], record: RecordedRequest
    ) -> web.Response:
        header = request.headers.get("Authorization", "")
        value = header[7:] if header.lower().startswith("bearer ") else ""
        token = self._tokens.get(value)
        if token is None or self._now() >= token.expires_at:
            return _json(
                {"error": 401},
                status=401,
                headers={"www-authenticate": 'Bearer realm="reddit", error="invalid_token"'},
            )
        record.client_id = token.client_id
        record.username = token.username
        account = self.accounts[token.username.lower()]
        refusal = self._admit(token.client_id)
        if refusal is not None:
            return refusal
        fault = self._take_fault(path)
        if fault is not None and fault.status == 429:
            self._count_throttle(token.client_id)
            return self._fault_response(fault)  # type: ignore[return-value]
        rate_headers = self._count(token.client_id)
        if fault is not None and fault.hold is not None:
            held = fault.hold
            response = web.Response(status=504, text="")
            if held.process:
                response = await self._route(request, path, form, account, token)
            held.arrived.set()
            waits = {
                asyncio.ensure_future(self._closing.wait()),
                asyncio.ensure_future(held.released.wait()),
            }
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
        elif fault is not None:
            if fault.hang:
                if fault.process:
                    response = await self._route(request, path, form, account, token)
                    await self._hang(fault.hang)
                else:
                    await self._hang(fault.hang)
                    response = web.Response(status=504, text="")
            else:
                response = self._fault_response(fault) or await self._route(
                    request, path, form, account, token
                )
        else:
            response = await self._route(request, path, form, account, token)
        # 5xx answers come from Reddit's edge with no rate headers (recorded: bad gateway,
        # service unavailable, cloudflare 520), like 401 and 429
        if response.status not in (401, 429) and response.status < 500:
            response.headers.update(rate_headers)
        return response

    def _admit(self, client_id: str) -> web.Response | None:
        """429 when the client id is over its fixed-window quota or the enforced limit."""
        now = self._now()
        window = self._window(client_id, now)
        if window.used >= self.ratelimit_quota:
            self._count_throttle(client_id)
            end = (window.index + 1) * self.ratelimit_window
            return self._too_many(max(1, math.ceil(end - now)))
        if self.limit is not None:
            limit, per = self.limit
            while window.recent and window.recent[0] <= now - per:
                window.recent.popleft()
            if len(window.recent) >= limit:
                self._count_throttle(client_id)
                return self._too_many(max(1, math.ceil(window.recent[0] + per - now)))
        return None

    def _count(self, client_id: str) -> dict[str, str]:
        now = self._now()
        window = self._window(client_id, now)
        window.used += 1
        window.recent.append(now)
        end = (window.index + 1) * self.ratelimit_window
        return {
            "x-ratelimit-used": str(window.used),
            "x-ratelimit-remaining": f"{max(0, self.ratelimit_quota - window.used):.1f}",
            "x-ratelimit-reset": str(max(0, math.ceil(end - now))),
        }

    def _window(self, client_id: str, now: float) -> _Window:
        window = self._windows.setdefault(client_id, _Window())
        index = int(now // self.ratelimit_window)
        if index != window.index:
            window.index = index
            window.used = 0
        return window

    def _count_throttle(self, client_id: str) -> None:
        self.throttled += 1
        self.throttled_per_client[client_id] += 1

    async def _route(
        self,
        request: web.Request,
        path: str,
        form: dict[str, str],
        account: FakeAccount,
        token: _Token,
    ) -> web.Response:
        method = request.method
        routes: list[tuple[str, str, str, Any]] = [
            ("GET", r"/api/v1/me", "me", self._me),
            ("GET", r"/r/(?P<sr>[^/]+)/about", "about", self._about),
            ("GET", r"/r/(?P<sr>[^/]+)/about/rules", "rules", self._rules),
            ("GET", r"/api/v1/(?P<sr>[^/]+)/post_requirements", "requirements", self._reqs),
            ("POST", r"/r/(?P<sr>[^/]+)/api/flairselector", "flair", self._flairselector),
            ("POST", r"/api/submit", "submit", self._submit),
            ("POST", r"/api/media/asset\.json", "media", self._lease),
            ("GET", r"/api/info", "info", self._info),
            ("GET", r"/user/(?P<user>[^/]+)/submitted", "submitted", self._submitted),
            ("GET", r"/message/inbox", "inbox", self._inbox),
            ("GET", r"/r/(?P<sr>[^/]+)/(?P<sort>hot|new|top)", "listing", self._sub_listing),
            ("GET", r"/comments/(?P<pid>[a-z0-9]+)", "comments", self._thread),
            ("POST", r"/api/comment", "comment", self._comment),
            ("GET", r"/user/(?P<user>[^/]+)/comments", "user_comments", self._user_comments),
        ]
        for verb, pattern, name, handler in routes:
            match = re.fullmatch(pattern, path)
            if match is None or verb != method:
                continue
            needed = _SCOPES[name]
            if "*" not in token.scope and needed not in token.scope:
                return _json(
                    {"error": 403},
                    status=403,
                    headers={
                        "www-authenticate": 'Bearer realm="reddit", error="insufficient_scope"'
                    },
                )
            return await handler(request, form, account, **match.groupdict())
        return _json({"message": "Not Found", "error": 404}, status=404)

    async def _me(self, request: web.Request, form: dict[str, str], account: FakeAccount) -> Any:
        if account.suspended:
            return _json(
                {
                    "name": account.username,
                    "is_suspended": True,
                    "suspension_expiration_utc": account.suspension_expiration_utc,
                    "is_blocked": False,
                    "awardee_karma": 0,
                    "awarder_karma": 0,
                    "total_karma": 0,
                }
            )
        return _json(
            {
                "is_employee": False,
                "has_mail": False,
                "name": account.username,
                "created": account.created_utc,
                "hide_from_robots": False,
                "is_suspended": False,
                "created_utc": account.created_utc,
                "has_mod_mail": False,
                "link_karma": account.link_karma,
                "in_beta": False,
                "comment_karma": account.comment_karma,
                "over_18": True,
                "is_gold": False,
                "is_mod": False,
                "id": account.id,
                "gold_expiration": None,
                "inbox_count": sum(
                    1 for m in self.messages if m.dest == account.username and m.new
                ),
                "has_verified_email": True,
                "gold_creddits": 0,
                "suspension_expiration_utc": None,
            }
        )

    def _subreddit_or_404(self, sr: str, *, reason: str | None = None) -> FakeSubreddit:
        sub = self.subreddits.get(sr.lower())
        if sub is None:
            if reason:  # /api/v1/{sr}/post_requirements: a 404 with the reason
                body = {"reason": reason, "message": "Not Found", "explanation": ""}
                raise _Reply(_json(body, status=404))
            # /r/{sr}/...: Reddit sends an unknown name to the subreddit search
            location = f"https://oauth.reddit.com/subreddits/search.json?q={sr}"
            raise _Reply(web.Response(status=302, headers={"Location": location}))
        if sub.subreddit_type == "private":
            raise _Reply(
                _json({"reason": "private", "message": "Forbidden", "error": 403}, status=403)
            )
        return sub

    async def _about(
        self, request: web.Request, form: dict[str, str], account: FakeAccount, sr: str
    ) -> Any:
        sub = self._subreddit_or_404(sr)
        return _json(
            {
                "kind": "t5",
                "data": {
                    "display_name": sub.name,
                    "display_name_prefixed": f"r/{sub.name}",
                    "name": f"t5_{sub.id}",
                    "id": sub.id,
                    "title": f"{sub.name} (fake)",
                    "subreddit_type": sub.subreddit_type,
                    "submission_type": sub.submission_type,
                    "over18": sub.over18,
                    "allow_images": sub.allow_images,
                    "allow_videos": sub.allow_videos,
                    "link_flair_enabled": bool(sub.flairs),
                    "user_is_banned": False,
                    "restrict_posting": True,
                    "subscribers": 1234,
                    "url": f"/r/{sub.name}/",
                },
            }
        )

    async def _rules(
        self, request: web.Request, form: dict[str, str], account: FakeAccount, sr: str
    ) -> Any:
        sub = self._subreddit_or_404(sr)
        return _json({"rules": sub.rules, "site_rules": ["Spam"], "site_rules_flow": []})

    def _requirements(self, sub: FakeSubreddit) -> dict[str, Any]:
        base: dict[str, Any] = {
            "domain_blacklist": [],
            "body_restriction_policy": "none",
            "domain_whitelist": [],
            "title_regexes": [],
            "body_blacklisted_strings": [],
            "body_required_strings": [],
            "title_text_min_length": None,
            "is_flair_required": False,
            "title_text_max_length": None,
            "body_regexes": [],
            "link_repost_age": None,
            "body_text_min_length": None,
            "link_restriction_policy": "none",
            "body_text_max_length": None,
            "title_required_strings": [],
            "title_blacklisted_strings": [],
            "guidelines_text": None,
            "guidelines_display_policy": None,
        }
        base.update(sub.requirements)
        return base

    async def _reqs(
        self, request: web.Request, form: dict[str, str], account: FakeAccount, sr: str
    ) -> Any:
        sub = self._subreddit_or_404(sr, reason="SUBREDDIT_NOEXIST")
        return _json(self._requirements(sub))

    async def _flairselector(
        self, request: web.Request, form: dict[str, str], account: FakeAccount, sr: str
    ) -> Any:
        sub = self._subreddit_or_404(sr)
        return _json(
            {
                "current": {
                    "flair_css_class": "",
                    "flair_template_id": None,
                    "flair_text": None,
                    "flair_position": "right",
                },
                "choices": sub.flairs,
            }
        )

    async def _lease(self, request: web.Request, form: dict[str, str], account: FakeAccount) -> Any:
        filepath = form.get("filepath", "")
        mimetype = form.get("mimetype", "")
        asset_id = _base36(secrets.randbits(60))[:13]
        key = f"rte_images/{asset_id}"
        ext = filepath.rsplit(".", 1)[-1] if "." in filepath else ""
        fields = {
            "acl": "public-read",
            "key": key,
            "X-Amz-Credential": "ASIAFAKEFAKEFAKE/20260101/us-east-1/s3/aws4_request",
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Date": "20260101T000000Z",
            "success_action_status": "201",
            "content-type": mimetype,
            "x-amz-storage-class": "STANDARD",
            "x-amz-meta-ext": ext,
            "policy": secrets.token_urlsafe(48),
            "X-Amz-Signature": secrets.token_hex(32),
            "x-amz-security-token": secrets.token_urlsafe(64),
        }
        self._leases[key] = fields
        return _json(
            {
                "args": {
                    "action": S3_ACTION,
                    "fields": [{"name": k, "value": v} for k, v in fields.items()],
                },
                "asset": {
                    "asset_id": asset_id,
                    "processing_state": "incomplete",
                    "payload": {"filepath": filepath},
                    "websocket_url": self._socket_url(key),
                },
            }
        )

    async def _submit(
        self, request: web.Request, form: dict[str, str], account: FakeAccount
    ) -> web.Response:
        if account.suspended:
            return _json({"message": "Forbidden", "error": 403}, status=403)
        sr = form.get("sr", "")
        kind = form.get("kind", "")
        title = form.get("title", "")
        text = form.get("text", "")
        url = form.get("url", "")
        sub = self.subreddits.get(sr.lower())

        def errors(*items: list[str | None]) -> web.Response:
            return _json({"json": {"errors": list(items)}})

        if not sr:
            return errors(["SUBREDDIT_REQUIRED", "you must specify a subreddit", "sr"])
        if sub is None:
            return errors(["SUBREDDIT_NOEXIST", "that subreddit doesn't exist", "sr"])
        if kind not in ("self", "link", "image"):
            return errors(["INVALID_OPTION", "that option is not valid", "kind"])
        if kind == "self" and sub.submission_type == "link":
            return errors(["NO_SELFS", "This community doesn't allow text posts.", "sr"])
        if kind in ("link", "image") and sub.submission_type == "self":
            return errors(["NO_LINKS", "This community only allows text posts.", "sr"])
        if kind == "image" and not sub.allow_images:
            return errors(["NO_IMAGES", "This community doesn't allow images.", "sr"])
        if not title.strip():
            return errors(["NO_TEXT", "we need something here", "title"])
        if len(title) > 300:
            return errors(["TOO_LONG", "this is too long (max: 300)", "title"])
        if kind in ("link", "image") and not url:
            return errors(["NO_URL", "a url is required", "url"])
        if kind == "image":
            key = url.removeprefix(S3_PUBLIC + "/")
            if key == url or key not in self.uploads:
                return errors(["BAD_URL", "that image was never uploaded", "url"])
        flair_id = form.get("flair_id") or None
        if flair_id and flair_id not in {f["flair_template_id"] for f in sub.flairs}:
            return errors(["INVALID_OPTION", "that flair is not available", "flair_id"])
        if form.get("validate_on_submit", "").lower() == "true":
            problem = self._validate(sub, kind, title, text, url, flair_id)
            if problem is not None:
                return problem
        post = FakePost(
            id=self._next_id(),
            author=account.username,
            subreddit=sub.name,
            kind=kind,
            title=title,
            text=text,
            url=(
                f"https://i.redd.it/{url.rsplit('/', 1)[-1]}.png"
                if kind == "image"
                else (url or None)
            ),
            created_utc=self._now(),
            flair_id=flair_id,
            flair_text=form.get("flair_text") or self._flair_text(sub, flair_id),
            # Reddit marks every post to an 18+ community NSFW, asked or not
            nsfw=form.get("nsfw", "").lower() == "true" or sub.over18,
            spoiler=form.get("spoiler", "").lower() == "true",
            removed_by_category=sub.removes_new,
        )
        self.posts.append(post)
        if kind == "image":
            key = (url or "").split(S3_ACTION, 1)[-1].lstrip("/")
            post.media_key = key
            if self.reject_images:
                post.visible_from = math.inf
                self._media_outcome(key, {"type": "failed", "payload": {}})
            else:
                post.visible_from = self._now() + self.image_processing_seconds
                redirect = f"https://www.reddit.com{post.permalink}"
                self._media_outcome(key, {"type": "success", "payload": {"redirect": redirect}})
            return _json(
                {
                    "json": {
                        "errors": [],
                        "data": {
                            "user_submitted_page": (
                                f"https://www.reddit.com/user/{account.username}/submitted/"
                            ),
                            "websocket_url": self._socket_url(key),
                        },
                    }
                }
            )
        return _json(
            {
                "json": {
                    "errors": [],
                    "data": {
                        "url": f"https://www.reddit.com{post.permalink}",
                        "drafts_count": 0,
                        "id": post.id,
                        "name": post.fullname,
                    },
                }
            }
        )

    def _validate(
        self,
        sub: FakeSubreddit,
        kind: str,
        title: str,
        text: str,
        url: str,
        flair_id: str | None,
    ) -> web.Response | None:
        req = self._requirements(sub)

        def invalid(reason: str, explanation: str, fields: list[str]) -> web.Response:
            return _json(
                {
                    "fields": fields,
                    "explanation": explanation,
                    "error_type": "SUBMIT_VALIDATION_ERROR",
                    "message": "Bad Request",
                    "reason": reason,
                },
                status=400,
            )

        lowered = title.lower()
        for phrase in req["title_blacklisted_strings"]:
            if phrase.lower() in lowered:
                return invalid(
                    "SUBMIT_VALIDATION_TITLE_BLACKLISTED_STRING",
                    f'You may not have "{phrase}" in your title. ',
                    ["title"],
                )
        required = req["title_required_strings"]
        if required and not any(p.lower() in lowered for p in required):
            return invalid(
                "SUBMIT_VALIDATION_TITLE_REQUIRED_STRINGS",
                "Your title must contain one of: " + ", ".join(f'"{p}"' for p in required),
                ["title"],
            )
        low, high = req["title_text_min_length"], req["title_text_max_length"]
        if low and len(title) < low:
            return invalid(
                "SUBMIT_VALIDATION_TITLE_MIN_LENGTH",
                f"Your title must be at least {low} characters.",
                ["title"],
            )
        if high and len(title) > high:
            return invalid(
                "SUBMIT_VALIDATION_TITLE_MAX_LENGTH",
                f"Your title must be at most {high} characters.",
                ["title"],
            )
        policy = req["body_restriction_policy"]
        if kind == "self" and policy == "required" and not text.strip():
            return invalid("SUBMIT_VALIDATION_BODY_REQUIRED", "Text is required.", ["text"])
        if policy == "notAllowed" and text.strip():
            return invalid("SUBMIT_VALIDATION_BODY_NOT_ALLOWED", "Text is not allowed.", ["text"])
        for phrase in req["body_blacklisted_strings"]:
            if phrase.lower() in text.lower():
                return invalid(
                    "SUBMIT_VALIDATION_BODY_BLACKLISTED_STRING",
                    f'You may not have "{phrase}" in your post body. ',
                    ["text"],
                )
        if kind == "link":
            domain = _domain(url)
            if domain in req["domain_blacklist"]:
                return invalid(
                    "SUBMIT_VALIDATION_LINK_DOMAIN_BLACKLISTED",
                    f"Links to {domain} are not allowed.",
                    ["url"],
                )
            if req["domain_whitelist"] and domain not in req["domain_whitelist"]:
                return invalid(
                    "SUBMIT_VALIDATION_LINK_DOMAIN_NOT_WHITELISTED",
                    f"Links to {domain} are not allowed.",
                    ["url"],
                )
        if req["is_flair_required"] and not flair_id:
            return invalid(
                "SUBMIT_VALIDATION_FLAIR_REQUIRED", "Your post must contain post flair.", ["flair"]
            )
        return None

    # == the media websocket ================================================================

    def _socket_url(self, key: str) -> str:
        host = self.base_url.split("://", 1)[-1]
        return f"ws://{host}/ws/{key}?m=fake"

    def _media_future(self, key: str) -> asyncio.Future[dict[str, Any]]:
        if key not in self._media_done:
            self._media_done[key] = asyncio.get_running_loop().create_future()
        return self._media_done[key]

    def _media_outcome(self, key: str, message: dict[str, Any]) -> None:
        future = self._media_future(key)
        if not future.done():
            future.set_result(message)

    async def _media_socket(self, request: web.Request) -> web.StreamResponse:
        """What Reddit's media websocket says once the image of `key` is processed:
        `{"type": "success", "payload": {"redirect": <post URL>}}` or `{"type": "failed"}`."""
        key = request.match_info["key"]
        if not self.websocket_enabled:
            return web.Response(status=503, text="")
        self.media_sockets.append(key)
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        with contextlib.suppress(TimeoutError, ConnectionError):
            message = await asyncio.wait_for(asyncio.shield(self._media_future(key)), 30)
            await socket.send_json(message)
        await socket.close()
        return socket

    def _hidden(self, subreddit: str, username: str) -> bool:
        sub = self.subreddits.get(subreddit.lower())
        return sub is not None and sub.hidden_from(username)

    async def _info(self, request: web.Request, form: dict[str, str], account: FakeAccount) -> Any:
        ids = [i for i in request.query.get("id", "").split(",") if i]
        if len(ids) > 100:
            return _json({"message": "Bad Request", "error": 400}, status=400)
        # A post whose subreddit this account cannot see (private, quarantined, banned from)
        # is left out, as Reddit does; a deleted post is still there, marked [deleted].
        by_name = {
            p.fullname: p for p in self.posts if not self._hidden(p.subreddit, account.username)
        }
        comments = {
            c.fullname: c
            for c in self.comments
            if (parent := self._post_of(c)) is None
            or not self._hidden(parent.subreddit, account.username)
        }
        children = [
            {"kind": "t3", "data": by_name[i].data()}
            if i in by_name
            else {"kind": "t1", "data": comments[i].data(self._post_of(comments[i]))}
            for i in ids
            if i in by_name or i in comments
        ]
        return _json(
            {
                "kind": "Listing",
                "data": {"modhash": "", "children": children, "after": None, "before": None},
            }
        )

    async def _submitted(
        self, request: web.Request, form: dict[str, str], account: FakeAccount, user: str
    ) -> Any:
        if user.lower() not in self.accounts:
            return _json({"message": "Not Found", "error": 404}, status=404)
        now = self._now()
        posts = sorted(
            (p for p in self.posts_by(user) if p.visible_from <= now),
            key=lambda p: (p.created_utc, int(p.id, 36)),
            reverse=True,
        )
        return self._listing(request, [(p.fullname, "t3", p.data()) for p in posts])

    async def _inbox(self, request: web.Request, form: dict[str, str], account: FakeAccount) -> Any:
        messages = sorted(
            (m for m in self.messages if m.dest == account.username),
            key=lambda m: (m.created_utc, int(m.id, 36)),
            reverse=True,
        )
        return self._listing(request, [(m.fullname, m.kind, m.data()) for m in messages])

    async def _sub_listing(
        self, request: web.Request, form: dict[str, str], account: FakeAccount, sr: str, sort: str
    ) -> Any:
        sub = self.subreddits.get(sr.lower())
        if sub is None:  # Reddit sends an unknown name to its subreddit search
            return web.Response(
                status=302, headers={"Location": f"https://www.reddit.com/subreddits/search?q={sr}"}
            )
        if sub.subreddit_type == "private":
            return _json({"reason": "private", "message": "Forbidden", "error": 403}, status=403)
        posts = [p for p in self.posts if p.subreddit.lower() == sub.name.lower()]
        if sort == "new":
            posts.sort(key=lambda p: (p.created_utc, int(p.id, 36)), reverse=True)
        elif sort == "top":
            posts.sort(key=lambda p: (p.score, int(p.id, 36)), reverse=True)
        else:  # hot: score, newer first among equals (close enough for a fake)
            posts.sort(key=lambda p: (p.score, p.created_utc), reverse=True)
        return self._listing(request, [(p.fullname, "t3", p.data()) for p in posts])

    async def _thread(
        self, request: web.Request, form: dict[str, str], account: FakeAccount, pid: str
    ) -> Any:
        post = next((p for p in self.posts if p.id == pid), None)
        if post is None:
            return _json({"message": "Not Found", "error": 404}, status=404)
        try:
            limit = max(1, min(100, int(request.query.get("limit", "200"))))
        except ValueError:
            limit = 200
        top = [c for c in self.comments if c.parent_id == post.fullname]
        top.sort(key=lambda c: (c.score, c.created_utc), reverse=True)
        listing = lambda items: {  # noqa: E731
            "kind": "Listing",
            "data": {"after": None, "before": None, "dist": None, "modhash": "", "children": items},
        }
        return _json(
            [
                listing([{"kind": "t3", "data": post.data()}]),
                listing([{"kind": "t1", "data": c.data(post)} for c in top[:limit]]),
            ]
        )

    async def _comment(
        self, request: web.Request, form: dict[str, str], account: FakeAccount
    ) -> Any:
        def errors(*items: list[str | None]) -> web.Response:
            return _json({"json": {"errors": [list(i) for i in items]}})

        thing = form.get("thing_id", "")
        text = form.get("text", "")
        post: FakePost | None = None
        parent: FakeComment | None = None
        if thing.startswith("t3_"):
            post = next((p for p in self.posts if p.fullname == thing), None)
        elif thing.startswith("t1_"):
            parent = next((c for c in self.comments if c.fullname == thing), None)
            post = self._post_of(parent) if parent else None
        if post is None or (parent is not None and parent.body == "[deleted]"):
            return errors(["DELETED_COMMENT", "that comment has been deleted", "parent"])
        if post.author == "[deleted]" or post.removed_by_category:
            return errors(
                ["DELETED_LINK", "the link you are commenting on has been deleted", "parent"]
            )
        if post.locked:
            return errors(["THREAD_LOCKED", "Comments are locked.", "parent"])
        if post.archived:
            return errors(
                ["TOO_OLD", "that's a piece of history now; it's too late to reply to it", "parent"]
            )
        if not text.strip():
            return errors(["NO_TEXT", "we need something here", "text"])
        if len(text) > COMMENT_MAX:
            return errors(["TOO_LONG", f"this is too long (max: {COMMENT_MAX})", "text"])
        comment = FakeComment(
            id=self._next_id(),
            author=account.username,
            post_id=post.id,
            parent_id=thing,
            subreddit=post.subreddit,
            body=text,
            created_utc=self._now(),
        )
        self.comments.append(comment)
        post.num_comments += 1
        return _json(
            {
                "json": {
                    "errors": [],
                    "data": {"things": [{"kind": "t1", "data": comment.data(post)}]},
                }
            }
        )

    async def _user_comments(
        self, request: web.Request, form: dict[str, str], account: FakeAccount, user: str
    ) -> Any:
        if user.lower() not in self.accounts:
            return _json({"message": "Not Found", "error": 404}, status=404)
        mine = sorted(
            self.comments_by(user), key=lambda c: (c.created_utc, int(c.id, 36)), reverse=True
        )
        return self._listing(request, [(c.fullname, "t1", c.data(self._post_of(c))) for c in mine])

    def _post_of(self, comment: FakeComment) -> FakePost | None:
        return next((p for p in self.posts if p.id == comment.post_id), None)

    @staticmethod
    def _listing(request: web.Request, items: list[tuple[str, str, dict[str, Any]]]) -> Any:
        try:
            limit = max(1, min(100, int(request.query.get("limit", "25"))))
        except ValueError:
            limit = 25
        after = request.query.get("after")
        start = 0
        if after:
            names = [name for name, _, _ in items]
            start = names.index(after) + 1 if after in names else len(items)
        page = items[start : start + limit]
        more = start + limit < len(items)
        return _json(
            {
                "kind": "Listing",
                "data": {
                    "after": page[-1][0] if page and more else None,
                    "dist": len(page),
                    "modhash": None,
                    "geo_filter": "",
                    "children": [{"kind": kind, "data": data} for _, kind, data in page],
                    "before": None,
                },
            }
        )

    # == s3: media upload ===================================================================

    async def _s3(self, request: web.Request, record: RecordedRequest) -> web.Response:
        fault = self._take_fault("/s3")
        if fault is not None:
            if fault.hang:
                await self._hang(fault.hang)
                return web.Response(status=504, text="")
            response = self._fault_response(fault)
            if response is not None:
                return response
        if request.headers.get("Authorization"):
            return _xml_error("InvalidArgument", "Unsupported Authorization Type")
        reader = await request.multipart()
        fields: dict[str, str] = {}
        file_part: tuple[str, str, bytes] | None = None
        while True:
            part = await reader.next()
            if part is None:
                break
            if file_part is not None:
                break  # S3 ignores everything after the file
            if part.name == "file":
                data = await part.read(decode=False)  # type: ignore[union-attr]
                file_part = (
                    part.filename or "",  # type: ignore[union-attr]
                    part.headers.get("Content-Type", ""),
                    bytes(data),
                )
            else:
                fields[part.name or ""] = await part.text()  # type: ignore[union-attr]
        record.form = {k: v for k, v in fields.items()}
        lease = self._leases.get(fields.get("key", ""))
        if lease is None or any(fields.get(k) != v for k, v in lease.items()):
            return _xml_error("AccessDenied", "Invalid according to Policy", status=403)
        if file_part is None:
            return _xml_error("InvalidArgument", "POST requires exactly one file upload")
        filename, content_type, data = file_part
        if len(data) > self.media_max_size:
            return _xml_error(
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
                f"<ProposedSize>{len(data)}</ProposedSize>"
                f"<MaxSizeAllowed>{self.media_max_size}</MaxSizeAllowed>",
            )
        key = lease["key"]
        self.uploads[key] = FakeUpload(key, filename, content_type, data)
        location = f"{S3_PUBLIC}/{key.replace('/', '%2F')}"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<PostResponse><Location>{location}</Location>"
            "<Bucket>reddit-uploaded-media</Bucket>"
            f'<Key>{key}</Key><ETag>"{hashlib.md5(data).hexdigest()}"</ETag></PostResponse>'
        )
        return web.Response(
            status=201, text=body, content_type="application/xml", headers={"location": location}
        )

    # == helpers ============================================================================

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def _next_id(self) -> str:
        self._ids += 1
        return _base36(self._ids)

    def _account(self, username: str) -> FakeAccount:
        account = self.accounts.get(username.lower())
        if account is None:
            raise KeyError(f"no fake account {username}")
        return account

    def _sub_name(self, name: str) -> str:
        sub = self.subreddits.get(name.lower())
        return sub.name if sub else name

    @staticmethod
    def _flair(flair: str | dict[str, Any]) -> dict[str, Any]:
        if isinstance(flair, str):
            flair = {"flair_text": flair}
        return {
            "flair_css_class": flair.get("flair_css_class", ""),
            "flair_template_id": flair.get("flair_template_id") or str(uuid.uuid4()),
            "flair_text_editable": bool(flair.get("flair_text_editable", False)),
            "flair_position": "right",
            "flair_text": flair.get("flair_text", ""),
        }

    def _flair_text(self, sub: FakeSubreddit, flair_id: str | None) -> str | None:
        for flair in sub.flairs:
            if flair["flair_template_id"] == flair_id:
                return flair["flair_text"]
        return None

    def _rule(self, rule: str | dict[str, Any], priority: int) -> dict[str, Any]:
        if isinstance(rule, str):
            rule = {"short_name": rule}
        short = rule.get("short_name", f"Rule {priority + 1}")
        return {
            "kind": rule.get("kind", "all"),
            "description": rule.get("description", ""),
            "short_name": short,
            "violation_reason": rule.get("violation_reason", short),
            "created_utc": self._now(),
            "priority": priority,
            "description_html": None,
        }
