"""Who claims over HTTP: a browser, named by a random id in a signed cookie — never an address.

A proxy or NAT puts thousands of people behind one address and `X-Forwarded-For` is whatever
the client writes, so an address can never say "this person already has the file". A browser
id is 128 random bits the server made and signed (HMAC-SHA256 with a key derived from
OPSDECK_SECRET_KEY): a client can keep it or drop it, but cannot pick someone else's. A cookie
that does not verify is no identity at all; the browser is then a new claimer.

The CSRF token of the landing page's form is an HMAC of the browser id and the link's code
hash, so it is valid only from the browser that loaded that page, for that link.

Decoding is strict: ids and MACs are compared as the exact text the server would have made,
so no alternative base64 spelling of the same bytes passes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from core.crypto import derive_key, hash_code

# 365 days: the longest a link can live (core.vault.config.MAX_LINK_LIFETIME_SECONDS), so a
# browser that claimed early can still fetch again free on the link's last day.
COOKIE_MAX_AGE_SECONDS = 365 * 24 * 3600
_ID = re.compile(r"[A-Za-z0-9_-]{22}")  # secrets.token_urlsafe(16)
_MAC = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes, unpadded URL-safe base64


class BrowserIds:
    """Makes and checks the claimer cookie and the form's CSRF token."""

    def __init__(self, secret_key: bytes) -> None:
        self._cookie_key = derive_key(secret_key, "claimer-cookie")
        self._csrf_key = derive_key(secret_key, "claim-csrf")

    def new(self) -> tuple[str, str]:
        """A fresh browser id and the cookie value that carries it."""
        browser_id = secrets.token_urlsafe(16)
        return browser_id, f"{browser_id}.{_mac(self._cookie_key, browser_id)}"

    def read(self, cookie: str | None) -> str | None:
        """The browser id a cookie value carries; None when absent, malformed or forged."""
        if not cookie or len(cookie) != 22 + 1 + 43:
            return None
        browser_id, _, mac = cookie.partition(".")
        if not _ID.fullmatch(browser_id) or not _MAC.fullmatch(mac):
            return None
        expected = _mac(self._cookie_key, browser_id)
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            return None
        return browser_id

    def csrf(self, browser_id: str, code: str) -> str:
        """The hidden form field for `browser_id` on the page of link `code`."""
        return _mac(self._csrf_key, f"{browser_id}|{hash_code(code)}")

    def csrf_ok(self, browser_id: str | None, code: str, token: str | None) -> bool:
        if browser_id is None or not token or not _MAC.fullmatch(token):
            return False
        return hmac.compare_digest(token.encode(), self.csrf(browser_id, code).encode())


def claimer_id(browser_id: str) -> str:
    """What the access log stores for a browser: a digest, so a log is no key to a cookie."""
    return "browser:" + hashlib.sha256(browser_id.encode()).hexdigest()[:32]


def _mac(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()
    return _b64(digest)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
