"""The one place where credentials inside URLs are masked, wherever a URL is shown or logged.

`mask_urls(text)` masks every URL in a text: a whole setting (`s3://user:pass@bucket/x`), a
log line or an error message that quotes one. The password of `user:password@` becomes
`••••••••` (the user name stays: it says which login, not how to use it); userinfo without a
colon (`https://<token>@host`) is usually a token and is masked whole. Query parameters
whose names say they carry a secret (`?password=…`, `&token=…`, `X-Amz-Signature=…`) are
masked too.
"""

from __future__ import annotations

import re

MASK = "••••••••"

# scheme://userinfo@ — userinfo runs to the last "@" before the authority ends (a password
# may contain "@"), and never across "/", "?", "#" or whitespace.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s]*)@")
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&;][^=&#\s]*(?:pass|pwd|secret|token|key|signature|credential)[^=&#\s]*=)"
    r"(?P<value>[^&#\s]+)",
    re.IGNORECASE,
)


def _userinfo(match: re.Match[str]) -> str:
    user, colon, _password = match["userinfo"].partition(":")
    if not colon:  # a bare token as the user name
        return f"{match['scheme']}{MASK}@"
    return f"{match['scheme']}{user}:{MASK}@"


def mask_urls(text: str | None) -> str:
    """`text` with every URL's password (and secret query values) replaced by `••••••••`."""
    if not text:
        return text or ""
    if "://" in text:
        text = _USERINFO.sub(_userinfo, text)
    if "=" in text:
        text = _SECRET_QUERY.sub(lambda m: f"{m['name']}{MASK}", text)
    return text
