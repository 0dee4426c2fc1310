"""Secrets at rest (Fernet), signed tokens (HMAC-SHA256) and one-way hashes of claim codes.

Every purpose derives its own key from OPSDECK_SECRET_KEY, so a signed download URL can
never be replayed as anything else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from core.errors import Forbidden

if TYPE_CHECKING:
    from cryptography.fernet import Fernet


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def derive_key(master: bytes, purpose: str) -> bytes:
    return hmac.new(master, purpose.encode(), hashlib.sha256).digest()


class SecretBox:
    """Encrypts small secrets (passwords, tokens) for storage; `reveal` only where they are used.

    `cryptography` (~7 MB of RSS) loads on the first seal or reveal, so a process that never
    touches a stored secret does not carry it."""

    def __init__(self, master: bytes) -> None:
        self._key = base64.urlsafe_b64encode(derive_key(master, "secrets-at-rest"))
        self._fernet_instance: Fernet | None = None

    @property
    def _fernet(self) -> Fernet:
        if self._fernet_instance is None:
            from cryptography.fernet import Fernet

            self._fernet_instance = Fernet(self._key)
        return self._fernet_instance

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def reveal(self, token: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise Forbidden(
                "A stored secret cannot be decrypted (was OPSDECK_SECRET_KEY changed?)"
            ) from exc


class Signer:
    """Compact URL-safe signed tokens with an expiry: base64(json).base64(hmac)."""

    def __init__(self, master: bytes, purpose: str) -> None:
        self._key = derive_key(master, f"signer:{purpose}")

    def sign(self, data: dict[str, Any], ttl_seconds: float, now: float | None = None) -> str:
        body = dict(data, exp=int((now or time.time()) + ttl_seconds))
        raw = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        return f"{raw}.{_b64(self._mac(raw))}"

    def verify(self, token: str, now: float | None = None) -> dict[str, Any]:
        """The signed data; raises Forbidden when forged, malformed or expired."""
        try:
            raw, mac = token.split(".", 1)
            _unb64(raw)  # strict before anything else: one spelling per token
            if not hmac.compare_digest(_unb64(mac), self._mac(raw)):
                raise ValueError("bad signature")
            data = json.loads(_unb64(raw))
        except (ValueError, TypeError) as exc:
            raise Forbidden("This link is not valid.") from exc
        if not isinstance(data, dict) or int(data.get("exp", 0)) < (now or time.time()):
            raise Forbidden("This link has expired.")
        return data

    def _mac(self, raw: str) -> bytes:
        return hmac.new(self._key, raw.encode(), hashlib.sha256).digest()


def new_claim_code() -> str:
    """256 random bits as 43 URL-safe characters (A-Z a-z 0-9 _ -), within a /start payload."""
    return secrets.token_urlsafe(32)


def hash_code(code: str) -> str:
    """What we store instead of a claim code."""
    return hashlib.sha256(code.encode()).hexdigest()


def mask(secret: str | None) -> str:
    """Show that a secret is set without showing any of it."""
    return "•••••••• (set)" if secret else "not set"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict: only the URL-safe alphabet, no padding, and the one canonical spelling of the
    bytes. Lenient decoding skips characters outside the alphabet (`~~~~` inserted), accepts
    a trailing `=` and ignores the unused low bits of the last character (so several final
    characters decode alike): each of those would be a second spelling of a signed token."""
    if not _B64URL.fullmatch(text):
        raise ValueError("not unpadded URL-safe base64")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not the canonical encoding")
    return data
