"""Client configuration and the two kinds of credentials an account can carry."""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable
from dataclasses import dataclass, field

# What Opsdeck calls and no more (README "Reddit apps" says why each): `vote` is deliberately
# absent and refused (we never vote), `edit` too (nothing edits or deletes on Reddit).
DEFAULT_SCOPES: tuple[str, ...] = (
    "identity",
    "read",
    "submit",
    "flair",
    "history",
    "privatemessages",
)
FORBIDDEN_SCOPES = frozenset({"vote"})

try:
    VERSION = importlib.metadata.version("opsdeck")
except importlib.metadata.PackageNotFoundError:  # running from a checkout without install
    VERSION = "dev"
# Where no account is known yet (the OAuth code exchange): names Opsdeck, and no one else.
APP_USER_AGENT = f"python:opsdeck:{VERSION}"
_AGENT_RE = re.compile(r"^[^:\s]+:[^:\s]+:[^:\s]+ \(by /?u/([^)\s]+)\)$")
# Names that stand for "put yours here": an agent naming one is shared by every install
# that left it as shipped, and Reddit throttles by agent.
_PLACEHOLDER_NAMES = frozenset(
    {
        "opsdeck",
        "your_reddit_name",
        "your_username",
        "yourname",
        "your_name",
        "username",
        "reddit_username",
        "example",
        "name",
        "user",
        "me",
    }
)


def build_user_agent(platform: str, app_id: str, version: str, username: str) -> str:
    """Reddit's required User-Agent form: `<platform>:<app id>:<version> (by /u/<name>)`."""
    name = username.strip()
    for prefix in ("/u/", "u/"):
        if name.lower().startswith(prefix):
            name = name[len(prefix) :]
    parts = {"platform": platform, "app_id": app_id, "version": version, "username": name}
    empty = [key for key, value in parts.items() if not str(value).strip()]
    if empty:
        raise ValueError(f"user agent needs a non-empty {', '.join(empty)}")
    return f"{platform.strip()}:{app_id.strip()}:{version.strip()} (by /u/{name})"


def account_user_agent(username: str) -> str:
    """The default agent of an account: `python:opsdeck:<version> (by /u/<account>)`."""
    return build_user_agent("python", "opsdeck", VERSION, username)


def user_agent_problem(value: str) -> str | None:
    """Why a configured User-Agent cannot be used (None: it can): it must have Reddit's
    form and name a real account, not a placeholder."""
    found = _AGENT_RE.match(value.strip())
    if found is None:
        return "it must look like <platform>:<app id>:<version> (by /u/<account>)"
    name = found.group(1)
    if name.lower() in _PLACEHOLDER_NAMES or "<" in name or ">" in name:
        return f"/u/{name} is a placeholder, not the account that runs this deployment"
    return None


@dataclass(frozen=True, slots=True)
class RedditConfig:
    """Where Reddit is and how patiently to talk to it.

    `media_upload_url` (`REDDIT_MEDIA_UPLOAD_URL`) replaces the S3 upload address Reddit hands
    out (`https:` + `args.action`): an S3-compatible stand-in, a proxy, or the fake in tests.
    The submitted image URL is still built from Reddit's action, as Reddit expects.
    """

    user_agent: str
    oauth_url: str = "https://oauth.reddit.com"
    www_url: str = "https://www.reddit.com"
    timeout: float = 30.0
    max_retries: int = 3
    retry_base_delay: float = 1.0
    retry_max_delay: float = 30.0
    refresh_margin: float = 60.0
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    media_upload_url: str | None = None
    # How often / how long submit_image looks for its new post in /user/{me}/submitted.
    image_lookup_attempts: int = 5
    image_lookup_delay: float = 2.0
    # How long to wait on the media lease's websocket for "processed" or "failed" (then the
    # lookups above, as without a websocket).
    media_socket_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not self.user_agent.strip():
            raise ValueError("Reddit needs an honest User-Agent; see build_user_agent()")
        bad = FORBIDDEN_SCOPES.intersection(self.scopes)
        if bad:
            raise ValueError(f"Opsdeck never requests the {', '.join(sorted(bad))} scope")
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more")


@dataclass(frozen=True, slots=True)
class ScriptCredentials:
    """A script app used by one of its own developer accounts (password grant, no refresh token).

    `otp` is the two-factor code, or a function returning the current one.
    """

    client_id: str
    client_secret: str = field(repr=False)
    username: str
    password: str = field(repr=False)
    otp: str | Callable[[], str] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class RefreshTokenCredentials:
    """A web or installed app the account authorised once; installed apps have an empty secret."""

    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)


Credentials = ScriptCredentials | RefreshTokenCredentials
