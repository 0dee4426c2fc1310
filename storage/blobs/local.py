"""Blob store on a local directory: ``<root>/ab/cd/<sha256>``.

A write goes to a temporary file under ``<root>/.tmp`` (same file system, so the final
rename is atomic), is fsync'ed, renamed into place with ``os.replace`` and the directory is
fsync'ed, so a crash leaves either the whole blob or none of it under its key.

All file I/O runs in worker threads. Each write owns one worker thread, so its operations
(write, fsync, rename, and the clean-up after a failure) run strictly in order even when
the writing task is cancelled while a chunk is still being written.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from storage.blobs.base import (
    DEFAULT_CHUNK_SIZE,
    BlobReader,
    BlobStore,
    SizeGuard,
    StoredBlob,
    key_for_sha256,
    resolve_range,
    validate_key,
)
from storage.blobs.errors import BlobNotFound, BlobStoreError

T = TypeVar("T")

TMP_DIR_NAME = ".tmp"
DEFAULT_WRITE_BUFFER = 1024 * 1024


class LocalBlobStore(BlobStore):
    """Content-addressed blobs in a directory on the local file system."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        write_buffer_size: int = DEFAULT_WRITE_BUFFER,
        fsync: bool = True,
    ) -> None:
        self.root = Path(root).absolute()
        self._tmp_dir = self.root / TMP_DIR_NAME
        self._write_buffer_size = write_buffer_size
        self._fsync = fsync

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path_for(self, key: str) -> Path:
        """The file that holds (or would hold) the blob ``key``.

        For serving the blob with the web server's own file response (sendfile, Range).
        """
        return self.root / validate_key(key)

    async def put_stream(
        self,
        chunks: AsyncIterator[bytes],
        *,
        expected_size: int | None = None,
        max_size: int | None = None,
    ) -> StoredBlob:
        guard = SizeGuard(expected_size=expected_size, max_size=max_size)
        writer = _TempFileWriter(self._tmp_dir, fsync=self._fsync)
        try:
            await writer.open()
            buffer = bytearray()
            async for chunk in chunks:
                if not chunk:
                    continue
                guard.add(len(chunk))
                buffer += chunk
                if len(buffer) >= self._write_buffer_size:
                    data, buffer = buffer, bytearray()
                    await writer.write(data)
            if buffer:
                await writer.write(buffer)
            size = guard.finish()
            digest = await writer.finish()
            key = key_for_sha256(digest)
            await writer.commit(self.root / key, size)
            return StoredBlob(key=key, size=size, sha256=digest)
        except BaseException:
            await writer.discard()
            raise
        finally:
            writer.shutdown()

    async def open_range(
        self,
        key: str,
        start: int = 0,
        end: int | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> BlobReader:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        path = self.path_for(key)
        try:
            file, first, last, size = await asyncio.to_thread(_open_range, path, start, end)
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        except OSError as exc:
            raise BlobStoreError(f"cannot open blob {key}: {exc}") from exc

        async def close() -> None:
            # A buffered file's close waits for a read still running in a worker thread.
            await asyncio.to_thread(file.close)

        return BlobReader(
            key=key,
            start=first,
            end=last,
            total_size=size,
            chunks=_read_range(file, key, last - first, chunk_size),
            close=close,
        )

    async def size(self, key: str) -> int:
        path = self.path_for(key)
        try:
            st = await asyncio.to_thread(os.stat, path)
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        except OSError as exc:
            raise BlobStoreError(f"cannot stat blob {key}: {exc}") from exc
        return st.st_size

    async def exists(self, key: str) -> bool:
        try:
            path = self.path_for(key)
        except BlobNotFound:
            return False
        return await asyncio.to_thread(path.is_file)

    async def delete(self, key: str) -> None:
        path = self.path_for(key)
        try:
            await asyncio.to_thread(os.unlink, path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise BlobStoreError(f"cannot delete blob {key}: {exc}") from exc

    async def sweep_incomplete(self, older_than: float) -> int:
        return await asyncio.to_thread(_sweep_tmp_dir, self._tmp_dir, time.time() - older_than)


def _open_range(path: Path, start: int, end: int | None) -> tuple[IO[bytes], int, int, int]:
    file = open(path, "rb")  # noqa: SIM115 - closed by the BlobReader
    try:
        size = os.fstat(file.fileno()).st_size
        first, last = resolve_range(start, end, size)
        file.seek(first)
    except BaseException:
        file.close()
        raise
    return file, first, last, size


async def _read_range(
    file: IO[bytes], key: str, length: int, chunk_size: int
) -> AsyncIterator[bytes]:
    remaining = length
    while remaining > 0:
        try:
            chunk = await asyncio.to_thread(file.read, min(chunk_size, remaining))
        except OSError as exc:
            raise BlobStoreError(f"cannot read blob {key}: {exc}") from exc
        if not chunk:
            return  # the BlobReader reports the short read
        remaining -= len(chunk)
        yield chunk


def _sweep_tmp_dir(tmp_dir: Path, cutoff: float) -> int:
    removed = 0
    try:
        entries = list(os.scandir(tmp_dir))
    except FileNotFoundError:
        return 0
    for entry in entries:
        with contextlib.suppress(FileNotFoundError):
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
    return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _TempFileWriter:
    """One put's temporary file, written, hashed and committed on a dedicated thread."""

    def __init__(self, tmp_dir: Path, *, fsync: bool) -> None:
        self._tmp_dir = tmp_dir
        self._fsync = fsync
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="blob-writer"
        )
        self._hasher = hashlib.sha256()
        self._file: IO[bytes] | None = None
        self._tmp_path: str | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.wrap_future(self._executor.submit(fn, *args))
        except OSError as exc:
            raise BlobStoreError(f"local blob store: {exc}") from exc

    async def open(self) -> None:
        await self._run(self._open_sync)

    async def write(self, data: bytes | bytearray) -> None:
        await self._run(self._write_sync, data)

    async def finish(self) -> str:
        await self._run(self._finish_sync)
        return self._hasher.hexdigest()

    async def commit(self, final_path: Path, size: int) -> None:
        await self._run(self._commit_sync, final_path, size)

    async def discard(self) -> None:
        # Queued behind any write still in flight; it runs even if this await is cancelled.
        await asyncio.wrap_future(self._executor.submit(self._discard_sync))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False)

    # --- run on the writer thread -------------------------------------------------------

    def _open_sync(self) -> None:
        self._tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, self._tmp_path = tempfile.mkstemp(dir=self._tmp_dir, prefix="put-", suffix=".part")
        self._file = os.fdopen(fd, "wb")

    def _write_sync(self, data: bytes | bytearray) -> None:
        assert self._file is not None
        self._hasher.update(data)
        self._file.write(data)

    def _finish_sync(self) -> None:
        assert self._file is not None
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        self._file.close()

    def _commit_sync(self, final_path: Path, size: int) -> None:
        assert self._tmp_path is not None
        try:
            if final_path.stat().st_size == size:
                # The same bytes are already stored (the key is their hash): keep that copy.
                os.unlink(self._tmp_path)
                self._tmp_path = None
                return
        except FileNotFoundError:
            pass
        created = [d for d in (final_path.parent.parent, final_path.parent) if not d.exists()]
        final_path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp_path, final_path)
        self._tmp_path = None
        if self._fsync:
            _fsync_dir(final_path.parent)
            for directory in created:
                _fsync_dir(directory.parent)

    def _discard_sync(self) -> None:
        if self._file is not None and not self._file.closed:
            with contextlib.suppress(OSError):
                self._file.close()
        if self._tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp_path)
            self._tmp_path = None
