"""OAuth token grants: the form each credential kind sends and how Reddit's answer is read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from core.reddit.config import (
    FORBIDDEN_SCOPES,
    Credentials,
    RefreshTokenCredentials,
    ScriptCredentials,
)
from core.reddit.errors import RedditAuthError

# Reddit's token-endpoint error codes in plain words.
_GRANT_ERRORS = {
    "invalid_grant": "the refresh token is invalid or was revoked",
    "unauthorized_client": (
        "this app may not log in with a password: only a script app can (create one at "
        "reddit.com/prefs/apps, or use Connect with Reddit)"
    ),
    "invalid_client": "the app's client id or secret is wrong",
    "unsupported_grant_type": "Reddit does not support that kind of login",
    "invalid_request": "Reddit did not understand the login request",
}


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str = field(repr=False)
    expires_at: float
    scope: frozenset[str]


def who(credentials: Credentials) -> str:
    if isinstance(credentials, ScriptCredentials):
        return f"u/{credentials.username}"
    return f"the account on app {credentials.client_id}"


def grant_form(credentials: Credentials, scopes: tuple[str, ...]) -> dict[str, str]:
    """The form body for `POST /api/v1/access_token`."""
    if isinstance(credentials, ScriptCredentials):
        form = {
            "grant_type": "password",
            "username": credentials.username,
            "password": credentials.password,
        }
        requested = [s for s in scopes if s not in FORBIDDEN_SCOPES]
        if requested:
            form["scope"] = " ".join(requested)
        otp = credentials.otp() if callable(credentials.otp) else credentials.otp
        if otp:
            form["otp"] = otp
        return form
    if isinstance(credentials, RefreshTokenCredentials):
        return {"grant_type": "refresh_token", "refresh_token": credentials.refresh_token}
    raise TypeError(f"unknown credentials type {type(credentials).__name__}")


def _password_refused(credentials: ScriptCredentials) -> str:
    """A password grant's `invalid_grant`: Reddit gives one answer for three causes."""
    return (
        f"wrong username or password; or u/{credentials.username} is not a developer of the "
        f"script app {credentials.client_id} (add it under reddit.com/prefs/apps); or the "
        "account has two-factor authentication on (a password login cannot pass it: use "
        "Connect with Reddit in /accounts add instead)"
    )


def parse_grant(status: int, body: bytes, credentials: Credentials, now: float) -> AccessToken:
    """Turn the token endpoint's answer into a token, or raise `RedditAuthError`.

    A wrong password is HTTP 200 with `{"error": "invalid_grant"}`; a bad refresh token is
    HTTP 400; bad app credentials are HTTP 401.
    """
    account = who(credentials)
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    error = payload.get("error")
    if status in (400, 401, 403) or error is not None:
        if status == 401 and error in (None, 401):
            reason = _GRANT_ERRORS["invalid_client"]
        elif status == 400 and isinstance(credentials, RefreshTokenCredentials):
            reason = "the refresh token is invalid or was revoked"
        elif error == "invalid_grant" and isinstance(credentials, ScriptCredentials):
            reason = _password_refused(credentials)
        elif isinstance(error, str):
            reason = _GRANT_ERRORS.get(error, error)
        else:
            reason = "Reddit refused the credentials"
        raise RedditAuthError(
            f"Reddit refused the login for {account}: {reason}",
            error=error,
            status=status,
            description=payload.get("error_description"),
        )
    token = payload.get("access_token")
    if status != 200 or not isinstance(token, str) or not token:
        raise RedditAuthError(
            f"Reddit's login answer for {account} had no access token (HTTP {status})",
            status=status,
        )
    expires_in = payload.get("expires_in")
    lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
    scope = payload.get("scope")
    scopes = frozenset(scope.split()) if isinstance(scope, str) else frozenset()
    return AccessToken(value=token, expires_at=now + lifetime, scope=scopes)
