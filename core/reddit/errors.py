"""Reddit errors, each with a `message` an operator can read, and the parsing that picks them.

Reddit reports failures in four shapes: HTTP status codes (401/403/404/429/5xx), HTTP 200 bodies
with `json.errors = [[TYPE, message, field], ...]`, HTTP 400 `SUBMIT_VALIDATION_*` bodies, and
XML from the S3 media upload. The classes below keep Reddit's own codes in their data so callers
can branch on them; `message` is always plain words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

from core.errors import OpsdeckError

ErrorItem = tuple[str, str, str | None]

# Reddit's error codes in plain words. "{sr}" is the subreddit when known ("r/foo").
_PLAIN_WORDS: dict[str, str] = {
    "SUBREDDIT_NOEXIST": "{sr} does not exist",
    "THREAD_LOCKED": "the thread is locked by its moderators",
    "TOO_OLD": "the thread is archived (too old for replies)",
    "DELETED_COMMENT": "the comment being answered was deleted",
    "DELETED_LINK": "the post being answered was deleted",
    "SUBREDDIT_NOTALLOWED": "this account is not allowed to post in {sr}",
    "SUBREDDIT_NO_ACCESS": "this account cannot see {sr}",
    "SUBREDDIT_REQUIRED": "a subreddit is required",
    "BAD_SR_NAME": "that is not a valid subreddit name",
    "NO_SELFS": "this subreddit does not allow text posts",
    "NO_LINKS": "this subreddit does not allow link posts",
    "NO_IMAGES": "this subreddit does not allow image posts",
    "NO_TEXT": "the {field} is missing",
    "NO_URL": "the link is missing",
    "BAD_URL": "that link is not a valid URL",
    "ALREADY_SUB": "that link was already posted there",
    "TOO_LONG": "the {field} is too long",
    "TOO_SHORT": "the {field} is too short",
    "INVALID_OPTION": "Reddit did not accept one of the options",
    "USER_REQUIRED": "Reddit says this needs a logged-in account",
    "SPAM": "Reddit's spam filter refused this post",
    "BANNED_FROM_SUBREDDIT": "this account is banned from {sr}",
    "SUBMIT_VALIDATION_FLAIR_REQUIRED": "this subreddit requires a flair on every post",
    "SUBMIT_VALIDATION_TITLE_BLACKLISTED_STRING": "the title contains a phrase {sr} does not allow",
    "SUBMIT_VALIDATION_TITLE_REQUIRED_STRINGS": "the title lacks a phrase {sr} requires",
    "SUBMIT_VALIDATION_TITLE_MIN_LENGTH": "the title is shorter than {sr} allows",
    "SUBMIT_VALIDATION_TITLE_MAX_LENGTH": "the title is longer than {sr} allows",
    "SUBMIT_VALIDATION_BODY_BLACKLISTED_STRING": "the text contains a phrase {sr} does not allow",
    "SUBMIT_VALIDATION_BODY_REQUIRED": "{sr} requires a text body",
    "SUBMIT_VALIDATION_BODY_NOT_ALLOWED": "{sr} does not allow a text body",
    "SUBMIT_VALIDATION_LINK_DOMAIN_BLACKLISTED": "{sr} does not allow links to that site",
    "SUBMIT_VALIDATION_LINK_DOMAIN_NOT_WHITELISTED": "{sr} only allows links to certain sites",
}


def plain_words(code: str, reddit_message: str = "", field: str | None = None, sr: str = "") -> str:
    """An operator-facing sentence for a Reddit error code; falls back to Reddit's own text."""
    template = _PLAIN_WORDS.get(code)
    if template is None:
        return reddit_message.strip() or f"Reddit refused it ({code})"
    return template.format(sr=sr or "the subreddit", field=field or "value")


class RedditError(OpsdeckError):
    """Root of everything the Reddit client raises on purpose."""


class RedditAuthError(RedditError):
    """The credentials were refused (wrong password, revoked refresh token, bad app id/secret)."""


class RedditForbidden(RedditError):
    """HTTP 403: the account may not do or see this (private subreddit, missing scope, ...)."""


class RedditNotFound(RedditError):
    """HTTP 404 (or a redirect to subreddit search): the subreddit, user or post does not exist."""


class RedditUnavailable(RedditError):
    """Reddit kept failing (5xx, timeouts, connection errors, repeated 429) after all retries."""


class RedditUnknownOutcome(RedditError):
    """A request that changes state was sent, but no answer came back.

    The post may or may not exist. Never resend blindly: look at the account's recent
    submissions (`RedditClient.recent_submission`) first. `data["accepted"]` is True when
    Reddit did accept the submit and only the new post could not be seen yet: then the post
    exists (or will), and sending it again would publish it twice.
    """

    @property
    def accepted(self) -> bool:
        return bool(self.data.get("accepted"))


class RedditRateLimited(RedditError):
    """Reddit's per-action limit (`RATELIMIT` in `json.errors`): try again after `seconds`."""

    def __init__(self, seconds: int, reddit_message: str = "") -> None:
        minutes = math.ceil(seconds / 60)
        wait = f"{seconds} seconds" if seconds < 120 else f"{minutes} minutes"
        super().__init__(
            f"Reddit says this account is posting too often; try again in {wait}",
            seconds=seconds,
            reddit_message=reddit_message,
        )
        self.seconds = seconds
        self.reddit_message = reddit_message


class RedditAPIError(RedditError):
    """Reddit answered with one or more `[TYPE, message, field]` errors."""

    def __init__(
        self, items: Iterable[Sequence[object]], message: str = "", *, subreddit: str = ""
    ) -> None:
        parsed: list[ErrorItem] = []
        for item in items:
            values = [*list(item), "", "", None][:3]
            code = str(values[0] or "UNKNOWN")
            text = str(values[1] or "")
            field = str(values[2]) if values[2] else None
            parsed.append((code, text, field))
        if not parsed:
            parsed.append(("UNKNOWN", "", None))
        sr = f"r/{subreddit}" if subreddit else ""
        text = message or "; ".join(plain_words(c, m, f, sr) for c, m, f in parsed)
        super().__init__(text, items=parsed)
        self.items = parsed

    @property
    def code(self) -> str:
        """The first error's type, e.g. `SUBREDDIT_NOEXIST`."""
        return self.items[0][0]

    @property
    def codes(self) -> list[str]:
        return [code for code, _, _ in self.items]


class RedditValidationError(RedditError):
    """HTTP 400 `SUBMIT_VALIDATION_*`: the post breaks one of the subreddit's posting rules."""

    def __init__(
        self, reason: str, explanation: str = "", fields: Sequence[str] = (), *, subreddit: str = ""
    ) -> None:
        sr = f"r/{subreddit}" if subreddit else ""
        text = explanation.strip() or plain_words(reason, "", None, sr)
        super().__init__(text, reason=reason, explanation=explanation, fields=list(fields))
        self.reason = reason
        self.explanation = explanation
        self.fields = list(fields)


class RedditMediaError(RedditError):
    """The media upload (S3) refused the file, or Reddit rejected it when processing it
    (`code` "MEDIA_REJECTED", told over the media websocket)."""

    def __init__(self, message: str, code: str = "", **data: object) -> None:
        super().__init__(message, code=code, **data)
        self.code = code


class RedditMediaTooLarge(RedditMediaError):
    """The file is bigger than Reddit's upload allows."""

    def __init__(self, actual: int | None, maximum: int | None) -> None:
        if actual and maximum:
            text = f"the file is {_megabytes(actual)}; Reddit accepts at most {_megabytes(maximum)}"
        else:
            text = "the file is larger than Reddit accepts"
        super().__init__(text, code="EntityTooLarge", actual=actual, maximum=maximum)
        self.actual = actual
        self.maximum = maximum


def _megabytes(size: int) -> str:
    return f"{size / 1_048_576:.1f} MB"


_RATELIMIT_RE = re.compile(
    r"(\d+(?:\.\d+)?|an?|one)\s*(milliseconds?|ms|seconds?|secs?|minutes?|mins?|hours?)\b",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"milli": 0.001, "ms": 0.001, "sec": 1, "min": 60, "hou": 3600}


def parse_ratelimit_seconds(message: str) -> int | None:
    """Seconds to wait from a `RATELIMIT` message, rounded up; None when no duration is found.

    >>> parse_ratelimit_seconds("you are doing that too much. try again in 9 minutes.")
    540
    """
    match = _RATELIMIT_RE.search(message or "")
    if match is None:
        return None
    number, unit = match.group(1).lower(), match.group(2).lower()
    amount = 1.0 if number in {"a", "an", "one"} else float(number)
    factor = next(value for prefix, value in _UNIT_SECONDS.items() if unit.startswith(prefix))
    seconds = amount * factor
    # 1e-9 keeps 0.5 s * 1000 ms style float noise from rounding 1 up to 2.
    return max(1, math.ceil(seconds - 1e-9))
