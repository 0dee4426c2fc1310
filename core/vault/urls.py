"""What a short link may point to: an absolute http(s) URL to a named host, nothing else."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

from core.errors import InvalidInput

MAX_URL_CHARS = 2048  # what browsers and link previewers handle everywhere
_SAFE = "/?#[]@!$&'()*+,;=:%~"  # kept as they are; anything else non-ASCII is %-encoded


def check_url(text: str) -> str:
    """The URL to store, or InvalidInput saying in plain words what is wrong with it."""
    url = (text or "").strip()
    if not url:
        raise InvalidInput("Send the address to shorten: /shorten https://example.com/page")
    if len(url) > MAX_URL_CHARS:
        raise InvalidInput(f"That address is {len(url):,} characters; at most {MAX_URL_CHARS:,}.")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidInput("An address has no spaces or control characters; send just the URL.")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError:
        raise InvalidInput("That is not a valid web address.") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput("Only http:// and https:// addresses can be shortened.")
    if parts.username is not None or parts.password is not None:
        # https://bank.example@evil.example reads as the bank but goes to evil.example
        raise InvalidInput("Addresses with a user name or password (user@host) are refused.")
    host = parts.hostname or ""
    if not host or host.startswith(".") or ".." in host:
        raise InvalidInput("That address has no host name.")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidInput("That address's host name is not valid.") from None
    # stored as plain ASCII (punycode host, %-encoded rest): it goes into a Location header
    netloc = ascii_host if port is None else f"{ascii_host}:{port}"
    stored = urlunsplit(
        (
            parts.scheme.lower(),
            netloc,
            quote(parts.path, safe=_SAFE),
            quote(parts.query, safe=_SAFE),
            quote(parts.fragment, safe=_SAFE),
        )
    )
    if len(stored) > MAX_URL_CHARS:
        raise InvalidInput(f"That address is too long once encoded; at most {MAX_URL_CHARS:,}.")
    return stored


def host_of(url: str) -> str:
    """The destination host (punycode for a non-ASCII name, as the URL is stored)."""
    return urlsplit(url).hostname or ""
