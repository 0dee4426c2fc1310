"""The blob store contract shared by the local-directory and S3-compatible stores.

Blobs are immutable and content-addressed: the key is derived from the sha256 of the bytes
(``ab/cd/abcd…``), so storing the same bytes twice keeps one copy and a key always names
exactly one content. Every operation streams in bounded memory.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Self

from storage.blobs.errors import (
    BlobSizeMismatch,
    BlobStoreError,
    BlobTooLarge,
    InvalidBlobKey,
    InvalidRange,
)

DEFAULT_CHUNK_SIZE = 256 * 1024
"""Size of the chunks ``open_range`` yields unless told otherwise."""

FILE_READ_CHUNK_SIZE = 1024 * 1024
"""Size of the reads ``put_file`` makes."""

_KEY_RE = re.compile(r"([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """What ``put_*`` stored: the key to read it back with, its size and its sha256 (hex)."""

    key: str
    size: int
    sha256: str


def key_for_sha256(sha256_hex: str) -> str:
    """The content-addressed key of the bytes whose sha256 is ``sha256_hex``."""
    digest = sha256_hex.lower()
    key = f"{digest[:2]}/{digest[2:4]}/{digest}"
    return validate_key(key)


def validate_key(key: str) -> str:
    """Return ``key`` if it is a well-formed content key, else raise ``InvalidBlobKey``.

    Keys reach the stores from the database and from URLs; checking their shape here is what
    keeps a hostile key (``../../etc/passwd``) from ever becoming a path or an object name.
    """
    match = _KEY_RE.fullmatch(key) if isinstance(key, str) else None
    if match is None:
        raise InvalidBlobKey(str(key))
    first, second, digest = match.groups()
    if digest[:2] != first or digest[2:4] != second:
        raise InvalidBlobKey(key)
    return key


def sha256_of_key(key: str) -> str:
    """The sha256 (hex) that a content key names."""
    return validate_key(key).rsplit("/", 1)[1]


class SizeGuard:
    """Counts the bytes of a stream and enforces ``max_size`` and ``expected_size``."""

    def __init__(self, *, expected_size: int | None, max_size: int | None) -> None:
        if expected_size is not None and expected_size < 0:
            raise ValueError("expected_size must not be negative")
        if max_size is not None and max_size < 0:
            raise ValueError("max_size must not be negative")
        if expected_size is not None and max_size is not None and expected_size > max_size:
            # Refuse before a single byte is read.
            raise BlobTooLarge(max_size, expected_size)
        self.expected_size = expected_size
        self.max_size = max_size
        self.size = 0

    def add(self, n: int) -> None:
        self.size += n
        if self.max_size is not None and self.size > self.max_size:
            raise BlobTooLarge(self.max_size, self.size)
        if self.expected_size is not None and self.size > self.expected_size:
            raise BlobSizeMismatch(self.expected_size, self.size)

    def finish(self) -> int:
        if self.expected_size is not None and self.size != self.expected_size:
            raise BlobSizeMismatch(self.expected_size, self.size)
        return self.size


def resolve_range(start: int, end: int | None, size: int) -> tuple[int, int]:
    """Turn ``[start, end)`` (``end=None`` meaning "to the end") into bounds inside ``size``.

    ``end`` past the end of the blob is clamped; ``start == size`` is an empty range.
    """
    if start < 0 or start > size or (end is not None and end < start):
        raise InvalidRange(start, end, size)
    return start, size if end is None else min(end, size)


class BlobReader(AsyncIterator[bytes]):
    """Chunks of ``[start, end)`` of one blob, as returned by ``BlobStore.open_range``.

    The blob has been found and the range checked by the time you hold one of these, so an
    HTTP handler can send its status and headers (``total_size`` for ``Content-Range``,
    ``length`` for ``Content-Length``) before streaming. Iterate it to the end or close it
    (``async with reader:`` or ``await reader.aclose()``) to release the file or connection.
    A reader that ends short of ``length`` raises ``BlobStoreError`` instead of stopping.
    """

    def __init__(
        self,
        *,
        key: str,
        start: int,
        end: int,
        total_size: int,
        chunks: AsyncIterator[bytes],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self.key = key
        self.start = start
        self.end = end
        self.total_size = total_size
        self._chunks = chunks
        self._close = close
        self._closed = False
        self._received = 0

    @property
    def length(self) -> int:
        """Number of bytes this reader yields in total."""
        return self.end - self.start

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            await self.aclose()
            if self._received != self.length:
                raise BlobStoreError(
                    f"blob {self.key} ended after {self._received} of {self.length} bytes"
                ) from None
            raise
        except BaseException:
            await self.aclose()
            raise
        self._received += len(chunk)
        if self._received > self.length:
            await self.aclose()
            raise BlobStoreError(f"blob {self.key} gave more bytes than the range asked for")
        return chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            await self._close()

    async def read_all(self) -> bytes:
        """The whole range as one ``bytes`` — only for ranges known to be small."""
        async with self:
            return b"".join([chunk async for chunk in self])

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class BlobStore(ABC):
    """Content-addressed, immutable blob storage with streaming reads and writes.

    Writes are all-or-nothing: when ``put_stream`` raises (the source failed, the size limit
    was hit, the task was cancelled, the store failed), nothing it wrote is left behind.
    Errors of the source stream propagate unchanged; failures of the store itself are raised
    as ``BlobStoreError`` (or a subclass).
    """

    @abstractmethod
    async def put_stream(
        self,
        chunks: AsyncIterator[bytes],
        *,
        expected_size: int | None = None,
        max_size: int | None = None,
    ) -> StoredBlob:
        """Store the concatenation of ``chunks`` and return its key, size and sha256.

        ``max_size``: raise ``BlobTooLarge`` as soon as the stream goes past it (and before
        reading anything when ``expected_size`` already does). ``expected_size``: raise
        ``BlobSizeMismatch`` when the stream turns out longer or shorter. If the same bytes
        are already stored, the existing blob is kept and its key returned.
        """

    async def put_file(
        self, path: str | os.PathLike[str], *, max_size: int | None = None
    ) -> StoredBlob:
        """Store the contents of the file at ``path`` (read in a worker thread)."""
        file = await asyncio.to_thread(open, path, "rb")
        try:
            st = os.fstat(file.fileno())
            expected = st.st_size if stat.S_ISREG(st.st_mode) else None
            return await self.put_stream(
                _read_file(file), expected_size=expected, max_size=max_size
            )
        finally:
            await asyncio.to_thread(file.close)

    async def put_bytes(self, data: bytes, *, max_size: int | None = None) -> StoredBlob:
        """Store ``data`` — for content already in memory."""
        return await self.put_stream(_once(data), expected_size=len(data), max_size=max_size)

    @abstractmethod
    async def open_range(
        self,
        key: str,
        start: int = 0,
        end: int | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> BlobReader:
        """Open bytes ``[start, end)`` of a blob for streaming, in chunks of ``chunk_size``.

        ``end`` is exclusive, as in Python slices; ``None`` means the end of the blob and an
        ``end`` past it is clamped. An HTTP ``Range: bytes=a-b`` is ``start=a, end=b + 1``.
        Raises ``BlobNotFound`` when there is no such blob and ``InvalidRange`` when ``start``
        is negative or past the end or ``end < start``.
        """

    @abstractmethod
    async def size(self, key: str) -> int:
        """Size in bytes of the blob; ``BlobNotFound`` if there is none."""

    @abstractmethod
    async def exists(self, key: str) -> bool:
        """Whether a blob is stored under ``key`` (``False`` for malformed keys)."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the blob. Deleting a missing blob is not an error.

        Blobs are shared by everything that stored the same bytes: delete only when no
        record refers to ``key`` any more (the caller's database decides that).
        """

    @abstractmethod
    async def sweep_incomplete(self, older_than: float) -> int:
        """Remove leftovers of writes that a crashed process never finished.

        A failing ``put_stream`` cleans up after itself; only a process killed mid-write can
        leave a temporary file or an unfinished multipart upload. This removes those older
        than ``older_than`` seconds and returns how many it removed. Run it periodically with
        an age well above the longest upload.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections or other resources the store holds."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _read_file(file: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(file.read, FILE_READ_CHUNK_SIZE):
        yield chunk


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
