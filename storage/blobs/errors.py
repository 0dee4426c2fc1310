"""Storage-level errors raised by blob stores.

They carry data, not operator-facing text: the layers above map them to their own errors.
"""

from __future__ import annotations


class BlobStoreError(Exception):
    """A blob store could not do what was asked (I/O failure, server error, bad answer)."""


class BlobNotFound(BlobStoreError):
    """No blob is stored under ``key``."""

    def __init__(self, key: str) -> None:
        super().__init__(f"blob not found: {key!r}")
        self.key = key


class InvalidBlobKey(BlobNotFound, ValueError):
    """``key`` is not a key this store could ever have produced (so nothing is stored there)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.args = (f"invalid blob key: {key!r}",)


class BlobTooLarge(BlobStoreError):
    """The content is larger than ``max_size`` bytes; nothing was stored."""

    def __init__(self, max_size: int, size: int) -> None:
        super().__init__(f"blob exceeds the limit of {max_size} bytes (got at least {size})")
        self.max_size = max_size
        self.size = size


class BlobSizeMismatch(BlobStoreError):
    """The stream ended with a size other than the announced ``expected_size``; nothing stored."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"expected {expected} bytes, the stream gave {actual}")
        self.expected = expected
        self.actual = actual


class InvalidRange(BlobStoreError, ValueError):
    """``start``/``end`` do not describe a range inside a blob of ``size`` bytes."""

    def __init__(self, start: int, end: int | None, size: int | None) -> None:
        super().__init__(f"invalid range [{start}, {end}) for a blob of {size} bytes")
        self.start = start
        self.end = end
        self.size = size
