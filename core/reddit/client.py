"""An async Reddit client on httpx for one account.

Every API call goes through `_request`, which (1) makes sure a fresh token is at hand,
(2) waits for the client id's shared `RateBudget`, (3) retries what is safe to retry and
(4) turns Reddit's answers into the errors in `core.reddit.errors`.

What is retried: 408/5xx/520/522, timeouts and connection errors (jittered exponential
sleeps, `max_retries` times), 429 (after `Retry-After`), and one 401 (after a new token).
What is never retried: a submit whose request may have reached Reddit — that raises
`RedditUnknownOutcome`, and the caller must look (`recent_submission`) before trying again.
"""

from __future__ import annotations

import asyncio
import email.utils
import html
import json
import logging
import mimetypes
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import httpx

from core.clock import Clock, SystemClock
from core.reddit.auth import AccessToken, grant_form, parse_grant, who
from core.reddit.config import (
    Credentials,
    RedditConfig,
    RefreshTokenCredentials,
    ScriptCredentials,
)
from core.reddit.errors import (
    RedditAPIError,
    RedditAuthError,
    RedditError,
    RedditForbidden,
    RedditMediaError,
    RedditMediaTooLarge,
    RedditNotFound,
    RedditRateLimited,
    RedditUnavailable,
    RedditUnknownOutcome,
    RedditValidationError,
    parse_ratelimit_seconds,
)
from core.reddit.models import (
    FlairChoice,
    InboxMessage,
    Listing,
    Me,
    MediaUpload,
    PostRequirements,
    Submission,
    SubmitResult,
    SubredditAbout,
    SubredditRule,
    listing_children,
)
from core.reddit.ratelimit import RateBudget, Sleep
from core.reddit.thread_models import Comment, Thread, ThreadPost
from storage import txguard

log = logging.getLogger(__name__)


@dataclass
class _MediaSocket:
    session: aiohttp.ClientSession
    ws: aiohttp.ClientWebSocketResponse

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


RETRY_STATUSES = frozenset({408, 500, 502, 503, 504, 520, 522})
SUBMIT_KINDS = frozenset({"self", "link", "image"})
LISTING_SORTS = frozenset({"hot", "new", "top"})
INFO_BATCH = 100
LISTING_MAX = 100
# When RATELIMIT carries no readable duration, come back after this long.
DEFAULT_RATELIMIT_SECONDS = 600
# When a 429 carries no Retry-After, wait this long.
DEFAULT_RETRY_AFTER = 10.0
# How far before the submit call a found post may be dated (clock skew between us and Reddit).
POST_LOOKUP_SLACK = 120.0

_SUBREDDIT_RE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_]{1,20}|u_[A-Za-z0-9_-]{1,20})$")
_USERNAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,20}$")
_FULLNAME_RE = re.compile(r"^t[1-6]_[a-z0-9]{1,13}$")
_ID_RE = re.compile(r"^[a-z0-9]{1,13}$")
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRYABLE_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_POST_URL_RE = re.compile(r"https?://[^/]+(/r/[^/]+/comments/([a-z0-9]+)/[^?#]*)")
_WAIT_IN_HTML = re.compile(r"wait\s+(\d+(?:\.\d+)?)\s*second", re.IGNORECASE)


def normalize_subreddit(name: str) -> str:
    """`"r/Foo"`, `"/r/Foo/"` or `"Foo"` → `"Foo"`; anything that is not a name is refused."""
    cleaned = name.strip().strip("/")
    if cleaned.lower().startswith("r/"):
        cleaned = cleaned[2:]
    if not _SUBREDDIT_RE.match(cleaned):
        raise RedditAPIError([("BAD_SR_NAME", "", "sr")], f"“{name}” is not a valid subreddit name")
    return cleaned


def normalize_username(name: str) -> str:
    cleaned = name.strip().strip("/")
    for prefix in ("u/", "user/"):
        if cleaned.lower().startswith(prefix):
            cleaned = cleaned[len(prefix) :]
    if not _USERNAME_RE.match(cleaned):
        raise RedditAPIError(
            [("BAD_USERNAME", "", "user")], f"“{name}” is not a valid Reddit username"
        )
    return cleaned


def _flag(value: bool) -> str:
    return "True" if value else "False"


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


def _xml_tag(text: str, tag: str) -> str | None:
    match = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL)
    return html.unescape(match.group(1).strip()) if match else None


class RedditClient:
    """Reddit for one account. Build one per account; share `budget` per OAuth client id."""

    def __init__(
        self,
        config: RedditConfig,
        credentials: Credentials,
        budget: RateBudget,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if budget.client_id != credentials.client_id:
            raise ValueError("the rate budget belongs to a different OAuth client id")
        self.config = config
        self.credentials = credentials
        self.budget = budget
        self._clock = clock or SystemClock()
        self._sleep = sleep or asyncio.sleep
        self._rng = rng or random.Random()
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(config.timeout),
            headers={"User-Agent": config.user_agent},
            follow_redirects=False,
            event_hooks={"request": [txguard.httpx_hook]},
        )
        self._token: AccessToken | None = None
        self._token_lock = asyncio.Lock()
        self._username = (
            credentials.username if isinstance(credentials, ScriptCredentials) else None
        )
        self.grants = 0

    async def __aenter__(self) -> RedditClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # == account ============================================================================

    async def me(self) -> Me:
        """`/api/v1/me`: name, suspension, karma, unread count."""
        me = Me.parse(await self._json("GET", "/api/v1/me"))
        if me.name:
            self._username = me.name
        return me

    async def username(self) -> str:
        if self._username is None:
            await self.me()
        if not self._username:
            raise RedditError("Reddit did not say which account these credentials belong to")
        return self._username

    # == subreddits =========================================================================

    async def subreddit_about(self, sr: str) -> SubredditAbout:
        name = normalize_subreddit(sr)
        payload = await self._json("GET", f"/r/{name}/about", subreddit=name)
        if not isinstance(payload, Mapping) or payload.get("kind") != "t5":
            # Reddit answers an unknown name with subreddit search results.
            raise RedditNotFound(f"r/{name} does not exist", subreddit=name)
        return SubredditAbout.parse(payload)

    async def post_requirements(self, sr: str) -> PostRequirements:
        name = normalize_subreddit(sr)
        payload = await self._json("GET", f"/api/v1/{name}/post_requirements", subreddit=name)
        return PostRequirements.parse(payload)

    async def subreddit_rules(self, sr: str) -> list[SubredditRule]:
        name = normalize_subreddit(sr)
        payload = await self._json("GET", f"/r/{name}/about/rules", subreddit=name)
        return SubredditRule.parse_all(payload)

    async def flair_choices(self, sr: str) -> list[FlairChoice]:
        """Link flairs this account may pick for a new post in `sr`."""
        name = normalize_subreddit(sr)
        payload = await self._json(
            "POST",
            f"/r/{name}/api/flairselector/",
            data={"is_newlink": "true", "api_type": "json"},
            subreddit=name,
        )
        return FlairChoice.parse_all(payload)

    # == posting ============================================================================

    async def submit(
        self,
        sr: str,
        kind: str,
        title: str,
        text: str | None = None,
        url: str | None = None,
        flair_id: str | None = None,
        flair_text: str | None = None,
        nsfw: bool = False,
        spoiler: bool = False,
        sendreplies: bool = True,
    ) -> SubmitResult:
        """`POST /api/submit`. Never retried once it may have reached Reddit.

        Raises `RedditAPIError` / `RedditValidationError` for rule problems,
        `RedditRateLimited` for `RATELIMIT`, and `RedditUnknownOutcome` when the request was
        sent but no usable answer came back.
        """
        name = normalize_subreddit(sr)
        if kind not in SUBMIT_KINDS:
            raise ValueError(f"kind must be one of {sorted(SUBMIT_KINDS)}, not {kind!r}")
        if kind in {"link", "image"} and not url:
            raise ValueError(f"a {kind} post needs a url")
        form = {
            "api_type": "json",
            "sr": name,
            "kind": kind,
            "title": title,
            "nsfw": _flag(nsfw),
            "spoiler": _flag(spoiler),
            "sendreplies": _flag(sendreplies),
            "resubmit": "True",
            "validate_on_submit": "True",
        }
        if text:
            form["text"] = text
        if url:
            form["url"] = url
        if flair_id:
            form["flair_id"] = flair_id
        if flair_text:
            form["flair_text"] = flair_text
        payload = await self._json(
            "POST", "/api/submit", data=form, idempotent=False, subreddit=name
        )
        data = payload.get("json", {}).get("data") if isinstance(payload, Mapping) else None
        result = SubmitResult.parse(data)
        if kind != "image" and result.fullname is None:
            raise RedditUnknownOutcome(
                "Reddit accepted the post but did not say which post it became; "
                "look at the account's recent posts before trying again",
                subreddit=name,
                title=title,
                accepted=True,
            )
        return result

    async def upload_media(
        self,
        media: str | Path | bytes,
        filename: str | None = None,
        mimetype: str | None = None,
    ) -> MediaUpload:
        """Upload an image through Reddit's media lease; the result's `url` goes to submit."""
        if isinstance(media, bytes | bytearray):
            content = bytes(media)
            name = filename or "image"
        else:
            path = Path(media)
            content = await asyncio.to_thread(path.read_bytes)
            name = filename or path.name
        mime = mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream"
        lease = await self._json(
            "POST",
            "/api/media/asset.json",
            data={"api_type": "json", "filepath": name, "mimetype": mime},
        )
        args = lease.get("args") if isinstance(lease, Mapping) else None
        action = args.get("action") if isinstance(args, Mapping) else None
        raw_fields = args.get("fields") if isinstance(args, Mapping) else None
        if not isinstance(action, str) or not isinstance(raw_fields, list):
            raise RedditMediaError("Reddit's upload permit was not understood", code="BAD_LEASE")
        fields = {
            str(f["name"]): str(f.get("value", ""))
            for f in raw_fields
            if isinstance(f, Mapping) and "name" in f
        }
        key = fields.get("key")
        if not key:
            raise RedditMediaError("Reddit's upload permit had no file key", code="BAD_LEASE")
        action_url = ("https:" + action if action.startswith("//") else action).rstrip("/")
        upload_url = self.config.media_upload_url or action_url
        response = await self._upload(upload_url, fields, name, content, mime)
        text = response.text
        if response.status_code not in (200, 201, 204):
            raise self._media_error(response.status_code, text)
        asset = lease.get("asset") if isinstance(lease.get("asset"), Mapping) else {}
        return MediaUpload(
            url=f"{action_url}/{key}",
            key=_xml_tag(text, "Key") or key,
            location=_xml_tag(text, "Location") or response.headers.get("location"),
            asset_id=asset.get("asset_id") if isinstance(asset.get("asset_id"), str) else None,
            websocket_url=(
                asset.get("websocket_url") if isinstance(asset.get("websocket_url"), str) else None
            ),
        )

    async def submit_image(
        self,
        sr: str,
        title: str,
        image: str | Path | bytes,
        filename: str | None = None,
        mimetype: str | None = None,
        *,
        flair_id: str | None = None,
        flair_text: str | None = None,
        nsfw: bool = False,
        spoiler: bool = False,
        sendreplies: bool = True,
    ) -> SubmitResult:
        """Upload, submit `kind=image`, then find the new post in `/user/{me}/submitted`.

        Reddit returns no id for image posts; if the post has not shown up after a few looks,
        this raises `RedditUnknownOutcome` (it was most likely published).
        """
        name = normalize_subreddit(sr)
        upload = await self.upload_media(image, filename, mimetype)
        started = self._now()
        # Opened before the submit, as PRAW does, so the "processed" message is not missed.
        socket = await self._open_media_socket(upload.websocket_url)
        try:
            result = await self.submit(
                name,
                "image",
                title,
                url=upload.url,
                flair_id=flair_id,
                flair_text=flair_text,
                nsfw=nsfw,
                spoiler=spoiler,
                sendreplies=sendreplies,
            )
            told = await self._media_socket_says(socket) if socket is not None else None
        finally:
            if socket is not None:
                await socket.close()
        if told is not None and told.get("type") == "failed":
            raise RedditMediaError(
                "Reddit rejected the image when it processed it (a format or content it "
                "does not take); the post was not published",
                code="MEDIA_REJECTED",
                subreddit=name,
            )
        redirect = (told or {}).get("payload", {}).get("redirect") if told else None
        found = _POST_URL_RE.search(redirect) if isinstance(redirect, str) else None
        if found is not None:
            post_id = found.group(2)
            return SubmitResult(
                fullname=f"t3_{post_id}",
                id=post_id,
                url=redirect,
                permalink=found.group(1),
                websocket_url=upload.websocket_url,
                user_submitted_page=result.user_submitted_page,
            )
        # No websocket, or it said nothing useful: look for the post (PRAW's fallback too).
        for attempt in range(max(1, self.config.image_lookup_attempts)):
            if attempt:
                await self._sleep(self.config.image_lookup_delay)
            try:
                post = await self._find_post(title, name, since=started - POST_LOOKUP_SLACK)
            except RedditError as exc:
                # Reddit already accepted the post: a failed look must not read as "not sent".
                raise RedditUnknownOutcome(
                    "Reddit accepted the image post, but looking it up failed "
                    f"({exc.message}); look again before posting it again",
                    subreddit=name,
                    title=title,
                    accepted=True,
                ) from exc
            if post is not None:
                return SubmitResult(
                    fullname=post.fullname,
                    id=post.id,
                    url=post.url,
                    permalink=post.permalink,
                    websocket_url=result.websocket_url,
                    user_submitted_page=result.user_submitted_page,
                )
        raise RedditUnknownOutcome(
            "Reddit accepted the image post but it has not appeared among the account's "
            "posts yet; look again before posting it again",
            subreddit=name,
            title=title,
            accepted=True,
        )

    async def _open_media_socket(self, url: str | None) -> _MediaSocket | None:
        """The media lease's websocket, or None (no URL, refused, unreachable: poll)."""
        if not url or not url.startswith(("ws://", "wss://")):
            return None
        txguard.check("Reddit media websocket")
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=self.config.timeout),
            headers={"User-Agent": self.config.user_agent},
        )
        try:
            ws = await session.ws_connect(url, heartbeat=30.0)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info("reddit media websocket unavailable (%s); the post is looked up", exc)
            await session.close()
            return None
        return _MediaSocket(session, ws)

    async def _media_socket_says(self, socket: _MediaSocket) -> dict[str, Any] | None:
        """The first message on the media websocket, or None (timeout, closed, unreadable)."""
        try:
            message = await socket.ws.receive(timeout=self.config.media_socket_timeout)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info("reddit media websocket said nothing (%s); the post is looked up", exc)
            return None
        if message.type != aiohttp.WSMsgType.TEXT:
            return None
        try:
            payload = json.loads(message.data)
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None

    async def recent_submission(
        self, title: str, subreddit: str, within_seconds: float = 3600
    ) -> Submission | None:
        """The account's newest post with this title in this subreddit, if made recently.

        Use it after `RedditUnknownOutcome` before sending the same post again.
        """
        name = normalize_subreddit(subreddit)
        return await self._find_post(title, name, since=self._now() - within_seconds)

    async def _find_post(self, title: str, subreddit: str, *, since: float) -> Submission | None:
        page = await self.user_submitted(await self.username(), limit=LISTING_MAX)
        wanted_title = title.strip()
        for post in page.items:  # newest first
            if post.created_utc is not None and post.created_utc < since:
                break
            if post.subreddit.lower() == subreddit.lower() and post.title.strip() == wanted_title:
                return post
        return None

    # == reading back =======================================================================

    async def info(self, fullnames: Iterable[str]) -> list[Submission]:
        """Posts by fullname (`t3_…`), asked in batches of 100; gone posts are simply absent."""
        names = list(dict.fromkeys(f.strip() for f in fullnames if f and f.strip()))
        bad = [n for n in names if not _FULLNAME_RE.match(n)]
        if bad:
            raise ValueError(f"not Reddit fullnames: {bad[:5]}")
        posts: list[Submission] = []
        for start in range(0, len(names), INFO_BATCH):
            batch = names[start : start + INFO_BATCH]
            payload = await self._json("GET", "/api/info", params={"id": ",".join(batch)})
            children, _ = listing_children(payload)
            posts.extend(Submission.parse(data) for kind, data in children if kind == "t3")
        return posts

    async def user_submitted(
        self, name: str, limit: int = LISTING_MAX, after: str | None = None
    ) -> Listing[Submission]:
        """One page of `/user/{name}/submitted`, newest first."""
        user = normalize_username(name)
        params = {"sort": "new", "limit": str(max(1, min(limit, LISTING_MAX)))}
        if after:
            params["after"] = after
        payload = await self._json("GET", f"/user/{user}/submitted", params=params)
        children, cursor = listing_children(payload)
        items = [Submission.parse(data) for kind, data in children if kind == "t3"]
        return Listing(items=items, after=cursor)

    async def inbox(
        self, limit: int = LISTING_MAX, after: str | None = None
    ) -> Listing[InboxMessage]:
        """One page of `/message/inbox` (messages and comment replies), newest first."""
        params = {"limit": str(max(1, min(limit, LISTING_MAX)))}
        if after:
            params["after"] = after
        payload = await self._json("GET", "/message/inbox", params=params)
        children, cursor = listing_children(payload)
        items = [InboxMessage.parse(kind, data) for kind, data in children if kind in ("t1", "t4")]
        return Listing(items=items, after=cursor)

    # == threads: browsing and comments =====================================================

    async def subreddit_listing(
        self,
        sr: str,
        sort: str = "hot",
        *,
        limit: int = 25,
        after: str | None = None,
        period: str = "day",
    ) -> Listing[ThreadPost]:
        """One page of `/r/{sr}/{hot|new|top}`; `period` is top's time window."""
        name = normalize_subreddit(sr)
        if sort not in LISTING_SORTS:
            raise ValueError(f"sort must be one of {sorted(LISTING_SORTS)}, not {sort!r}")
        params = {"limit": str(max(1, min(limit, LISTING_MAX)))}
        if after:
            params["after"] = after
        if sort == "top":
            params["t"] = period
        payload = await self._json("GET", f"/r/{name}/{sort}", params=params, subreddit=name)
        if not isinstance(payload, Mapping) or payload.get("kind") != "Listing":
            raise RedditNotFound(f"r/{name} does not exist", subreddit=name)
        children, cursor = listing_children(payload)
        items = [ThreadPost.parse(data) for kind, data in children if kind == "t3"]
        return Listing(items=items, after=cursor)

    async def thread(self, post_id: str, *, limit: int = 5, sort: str = "top") -> Thread:
        """`/comments/{id}`: the post and its top `limit` top-level comments."""
        pid = post_id.removeprefix("t3_")
        if not _ID_RE.match(pid):
            raise ValueError(f"not a Reddit post id: {post_id!r}")
        params = {"limit": str(max(1, min(limit, LISTING_MAX))), "depth": "1", "sort": sort}
        payload = await self._json("GET", f"/comments/{pid}", params=params)
        thread = Thread.parse(payload)
        if thread is None:
            raise RedditNotFound("Reddit could not find that post")
        return thread

    async def comment_info(self, fullname: str) -> Comment | None:
        """One comment by fullname (`t1_…`) through `/api/info`; None when Reddit has none."""
        if not fullname.startswith("t1_") or not _FULLNAME_RE.match(fullname):
            raise ValueError(f"not a comment fullname: {fullname!r}")
        payload = await self._json("GET", "/api/info", params={"id": fullname})
        children, _ = listing_children(payload)
        found = [Comment.parse(data) for kind, data in children if kind == "t1"]
        return found[0] if found else None

    async def comment(self, thing_id: str, text: str) -> Comment:
        """`POST /api/comment`: reply to a post (`t3_…`) or a comment (`t1_…`).

        Never retried once it may have reached Reddit: like `submit`, a timeout raises
        `RedditUnknownOutcome`, and the caller looks (`recent_comment`) before sending again.
        """
        if not _FULLNAME_RE.match(thing_id) or thing_id[:3] not in ("t1_", "t3_"):
            raise ValueError(f"a comment replies to a t1_ or t3_ fullname, not {thing_id!r}")
        payload = await self._json(
            "POST",
            "/api/comment",
            data={"api_type": "json", "thing_id": thing_id, "text": text},
            idempotent=False,
        )
        data = payload.get("json", {}).get("data") if isinstance(payload, Mapping) else None
        things = data.get("things") if isinstance(data, Mapping) else None
        found = [
            Comment.parse(t.get("data"))
            for t in things or []
            if isinstance(t, Mapping) and t.get("kind") == "t1"
        ]
        if not found or not found[0].fullname:
            raise RedditUnknownOutcome(
                "Reddit accepted the comment but did not say which comment it became; "
                "look at the account's recent comments before trying again",
                accepted=True,
            )
        return found[0]

    async def recent_comment(
        self, thing_id: str, text: str, within_seconds: float = 3600
    ) -> Comment | None:
        """The account's newest comment on `thing_id` with this text, if made recently.

        Use it after `RedditUnknownOutcome` before sending the same comment again."""
        user = normalize_username(await self.username())
        payload = await self._json(
            "GET", f"/user/{user}/comments", params={"sort": "new", "limit": str(LISTING_MAX)}
        )
        children, _ = listing_children(payload)
        since = self._now() - within_seconds - POST_LOOKUP_SLACK
        wanted = text.strip()
        for kind, data in children:  # newest first
            if kind != "t1":
                continue
            found = Comment.parse(data)
            if found.created_utc is not None and found.created_utc < since:
                break
            if found.parent_id == thing_id and found.body.strip() == wanted:
                return found
        return None

    # == tokens =============================================================================

    async def revoke_tokens(self) -> None:
        """Revoke the account's tokens on Reddit (`POST /api/v1/revoke_token`, HTTP basic auth
        with the app, as prawcore does): the refresh token, which ends every access token
        granted from it, and the access token in hand (a script app's lives for its hour
        otherwise). Reddit answers 204 whether or not the token was still valid; a refused
        app raises RedditAuthError, an unreachable Reddit RedditUnavailable."""
        tokens: list[tuple[str, str]] = []
        if isinstance(self.credentials, RefreshTokenCredentials):
            tokens.append((self.credentials.refresh_token, "refresh_token"))
        if self._token is not None:
            tokens.append((self._token.value, "access_token"))
        url = self.config.www_url.rstrip("/") + "/api/v1/revoke_token"
        auth = httpx.BasicAuth(self.credentials.client_id, self.credentials.client_secret)
        for token, hint in tokens:
            attempt = 0
            while True:
                try:
                    response = await self._http.post(
                        url, data={"token": token, "token_type_hint": hint}, auth=auth
                    )
                except _RETRYABLE_TRANSPORT as exc:
                    attempt = await self._backoff_or_raise(
                        attempt, f"revoking the {hint.replace('_', ' ')} failed: {exc!r}"
                    )
                    continue
                except httpx.HTTPError as exc:
                    raise RedditUnavailable(f"could not reach Reddit to revoke: {exc}") from exc
                if response.status_code in RETRY_STATUSES or response.status_code == 429:
                    attempt = await self._backoff_or_raise(
                        attempt, f"Reddit's revoke answered HTTP {response.status_code}"
                    )
                    continue
                break
            if response.status_code in (401, 403):
                raise RedditAuthError(
                    f"Reddit refused to revoke the {hint.replace('_', ' ')}: the app's "
                    "client id or secret is wrong",
                    status=response.status_code,
                )
            if response.status_code not in (200, 204):
                raise RedditUnavailable(
                    f"Reddit answered HTTP {response.status_code} to the revocation of the "
                    f"{hint.replace('_', ' ')}",
                    status=response.status_code,
                )
        self._token = None
        log.info("reddit tokens revoked for %s", who(self.credentials))

    @property
    def token_expires_at(self) -> float | None:
        return self._token.expires_at if self._token else None

    def invalidate_token(self) -> None:
        self._token = None

    def use_token(self, token: AccessToken) -> None:
        """Start from a token granted elsewhere (the OAuth code exchange), not a new grant."""
        self._token = token

    async def _access_token(self) -> str:
        async with self._token_lock:
            token = self._token
            if token is None or self._now() >= token.expires_at - self.config.refresh_margin:
                token = await self._grant()
                self._token = token
            return token.value

    async def _grant(self) -> AccessToken:
        url = self.config.www_url.rstrip("/") + "/api/v1/access_token"
        form = grant_form(self.credentials, self.config.scopes)
        auth = httpx.BasicAuth(self.credentials.client_id, self.credentials.client_secret)
        attempt = 0
        while True:
            try:
                response = await self._http.post(url, data=form, auth=auth)
            except _RETRYABLE_TRANSPORT as exc:
                attempt = await self._backoff_or_raise(attempt, f"login failed: {exc!r}")
                continue
            except httpx.HTTPError as exc:
                raise RedditUnavailable(f"could not reach Reddit to log in: {exc}") from exc
            if response.status_code == 429:
                attempt = await self._count_attempt(attempt, "Reddit is throttling logins")
                await self._sleep(self._retry_after(response))
                continue
            if response.status_code in RETRY_STATUSES:
                attempt = await self._backoff_or_raise(
                    attempt, f"Reddit's login answered HTTP {response.status_code}"
                )
                continue
            self.grants += 1
            log.info("reddit token granted for %s", who(self.credentials))
            return parse_grant(
                response.status_code, response.content, self.credentials, self._now()
            )

    # == transport ==========================================================================

    async def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        idempotent: bool = True,
        subreddit: str = "",
    ) -> Any:
        response = await self._request(
            method, path, params=params, data=data, idempotent=idempotent
        )
        if response.status_code >= 300:
            raise self._status_error(response, subreddit)
        payload = _json_body(response)
        if payload is None:
            if not idempotent:
                raise RedditUnknownOutcome(
                    "Reddit's answer to the post was unreadable; it may or may not be "
                    "published — look at the account's recent posts before trying again",
                    status=response.status_code,
                )
            raise RedditUnavailable("Reddit answered with something that is not JSON")
        self._raise_json_errors(payload, subreddit)
        return payload

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        url = self.config.oauth_url.rstrip("/") + path
        query = {**(params or {}), "raw_json": "1"}
        attempt = 0
        reauthorised = False
        while True:
            token = await self._access_token()
            ticket = await self.budget.acquire()
            try:
                response = await self._http.request(
                    method,
                    url,
                    params=query,
                    data=data,
                    headers={"Authorization": f"bearer {token}"},
                )
            except _RETRYABLE_TRANSPORT as exc:
                if not idempotent and not isinstance(exc, _NOT_SENT):
                    raise RedditUnknownOutcome(
                        "Reddit did not answer after the post was sent; it may or may not be "
                        "published — look at the account's recent posts before trying again",
                        cause=type(exc).__name__,
                    ) from exc
                failure = f"Reddit did not answer {method} {path} ({type(exc).__name__})"
            except httpx.HTTPError as exc:
                raise RedditUnavailable(f"could not talk to Reddit: {exc}") from exc
            else:
                failure = None
            finally:
                # Also on cancellation: a leaked slot would shrink the shared budget for good.
                ticket.release()
            if failure is not None:
                attempt = await self._backoff_or_raise(attempt, failure)
                continue
            self.budget.update(response.headers)
            status = response.status_code
            log.debug("reddit %s %s -> %s", method, path, status)
            if status == 401:
                if reauthorised:
                    raise RedditAuthError(
                        f"Reddit keeps refusing the token for {who(self.credentials)}",
                        status=401,
                    )
                reauthorised = True
                self.invalidate_token()
                continue
            if status == 429:
                wait = self._retry_after(response)
                self.budget.pause(wait)
                attempt = await self._count_attempt(
                    attempt, "Reddit keeps answering “too many requests”", retry_after=wait
                )
                continue
            if status in RETRY_STATUSES:
                if not idempotent:
                    raise RedditUnknownOutcome(
                        f"Reddit answered HTTP {status} after the post was sent; it may or "
                        "may not be published — look at the account's recent posts first",
                        status=status,
                    )
                attempt = await self._backoff_or_raise(
                    attempt, f"Reddit answered HTTP {status} to {method} {path}"
                )
                continue
            return response

    async def _upload(
        self, url: str, fields: Mapping[str, str], name: str, content: bytes, mime: str
    ) -> httpx.Response:
        """Multipart POST to the S3 lease: every lease field, then `file`; no Reddit token."""
        attempt = 0
        while True:
            try:
                response = await self._http.post(
                    url, data=dict(fields), files={"file": (name, content, mime)}
                )
            except _RETRYABLE_TRANSPORT as exc:
                attempt = await self._backoff_or_raise(
                    attempt, f"the image upload did not get through ({type(exc).__name__})"
                )
                continue
            except httpx.HTTPError as exc:
                raise RedditUnavailable(f"could not reach Reddit's upload server: {exc}") from exc
            if response.status_code in RETRY_STATUSES:
                attempt = await self._backoff_or_raise(
                    attempt, f"Reddit's upload server answered HTTP {response.status_code}"
                )
                continue
            return response

    async def _count_attempt(self, attempt: int, message: str, **data: object) -> int:
        if attempt >= self.config.max_retries:
            raise RedditUnavailable(message, attempts=attempt + 1, **data)
        return attempt + 1

    async def _backoff_or_raise(self, attempt: int, message: str) -> int:
        attempt = await self._count_attempt(attempt, message)
        await self._sleep(self._backoff(attempt))
        return attempt

    def _backoff(self, attempt: int) -> float:
        """Exponential with jitter: base·2^(n-1), capped, times a random 0.5–1.0."""
        ceiling = min(
            self.config.retry_max_delay, self.config.retry_base_delay * 2 ** (attempt - 1)
        )
        return ceiling * (0.5 + self._rng.random() / 2)

    def _retry_after(self, response: httpx.Response) -> float:
        value = response.headers.get("retry-after")
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                try:
                    when = email.utils.parsedate_to_datetime(value)
                    return max(0.0, when.timestamp() - self._now())
                except (TypeError, ValueError):
                    pass
        match = _WAIT_IN_HTML.search(response.text or "")
        if match:
            return float(match.group(1))
        return DEFAULT_RETRY_AFTER

    def _now(self) -> float:
        return self._clock.now().timestamp()

    # == error mapping ======================================================================

    @staticmethod
    def _raise_json_errors(payload: Any, subreddit: str) -> None:
        if not isinstance(payload, Mapping):
            return
        body = payload.get("json")
        if not isinstance(body, Mapping):
            return
        errors = body.get("errors")
        if not isinstance(errors, list) or not errors:
            return
        items = [e for e in errors if isinstance(e, list | tuple) and e]
        for item in items:
            if str(item[0]).upper() == "RATELIMIT":
                message = str(item[1]) if len(item) > 1 else ""
                seconds = None
                hint = body.get("ratelimit")
                if isinstance(hint, int | float) and hint > 0:
                    seconds = int(-(-hint // 1))
                seconds = seconds or parse_ratelimit_seconds(message) or DEFAULT_RATELIMIT_SECONDS
                raise RedditRateLimited(seconds, message)
        raise RedditAPIError(
            items or [("UNKNOWN", json.dumps(errors)[:200], None)], subreddit=subreddit
        )

    def _status_error(self, response: httpx.Response, subreddit: str) -> RedditError:
        status = response.status_code
        payload = _json_body(response)
        body: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
        reason = str(body.get("reason") or "")
        reddit_message = str(body.get("message") or body.get("explanation") or "")
        where = f"r/{subreddit}" if subreddit else "it"
        if status in (301, 302, 303, 307, 308):
            location = response.headers.get("location", "")
            if "/subreddits/search" in location:
                return RedditNotFound(f"{where} does not exist", subreddit=subreddit)
            return RedditAPIError([("REDIRECT", location, None)], "Reddit redirected unexpectedly")
        if status == 400:
            if reason.startswith("SUBMIT_VALIDATION") or body.get("error_type") == (
                "SUBMIT_VALIDATION_ERROR"
            ):
                fields = body.get("fields")
                return RedditValidationError(
                    reason or "SUBMIT_VALIDATION_ERROR",
                    str(body.get("explanation") or ""),
                    [str(f) for f in fields] if isinstance(fields, list) else [],
                    subreddit=subreddit,
                )
            try:
                self._raise_json_errors(body, subreddit)
            except RedditError as exc:
                return exc
            return RedditAPIError(
                [(reason or "BAD_REQUEST", reddit_message, None)], subreddit=subreddit
            )
        if status == 403:
            challenge = response.headers.get("www-authenticate", "")
            if "insufficient_scope" in challenge:
                text = "the Reddit login lacks the permission (scope) this needs"
            elif reason == "private":
                text = f"{where} is private"
            elif reason == "quarantined":
                text = f"{where} is quarantined"
            elif reason == "SUBREDDIT_NO_ACCESS":
                text = f"this account cannot see {where}"
            else:
                text = "Reddit refused this account access"
            return RedditForbidden(text, status=403, reason=reason or None)
        if status == 404:
            if reason == "banned":
                text = f"{where} is banned"
            elif subreddit:
                text = f"{where} does not exist"
            else:
                text = "Reddit could not find that"
            return RedditNotFound(text, status=404, reason=reason or None)
        if status == 413:
            return RedditAPIError(
                [("TOO_LARGE", reddit_message, None)], "that is too large for Reddit"
            )
        if status >= 500:
            return RedditUnavailable(f"Reddit answered HTTP {status}", status=status)
        return RedditAPIError(
            [(reason or f"HTTP_{status}", reddit_message, None)],
            f"Reddit refused it (HTTP {status}{': ' + reddit_message if reddit_message else ''})",
        )

    @staticmethod
    def _media_error(status: int, text: str) -> RedditMediaError:
        code = _xml_tag(text, "Code") or f"HTTP_{status}"
        if code == "EntityTooLarge" or _xml_tag(text, "MaxSizeAllowed"):
            proposed = _xml_tag(text, "ProposedSize")
            maximum = _xml_tag(text, "MaxSizeAllowed")
            return RedditMediaTooLarge(
                int(proposed) if proposed and proposed.isdigit() else None,
                int(maximum) if maximum and maximum.isdigit() else None,
            )
        detail = _xml_tag(text, "Message") or ""
        return RedditMediaError(
            f"Reddit's upload server refused the file ({code}{': ' + detail if detail else ''})",
            code=code,
            status=status,
        )
