"""Blob store on an S3-compatible object store (AWS S3, MinIO, moto, …).

Objects live at ``<prefix>/ab/cd/<sha256>``. The key depends on the sha256, which is only
known once the whole stream has been read, while the bytes must be sent before that to keep
memory bounded. So:

* Content that fits in one part (``part_size``, 8 MiB by default) is buffered, hashed and
  sent with a single ``PutObject`` straight to its content key — one request, atomic.
* Larger content is sent as a multipart upload to a temporary key
  ``<prefix>/.tmp/<random>``, one part per ``part_size`` bytes. When the stream ends, the
  upload is completed, copied server-side to its content key (``CopyObject``, or
  ``UploadPartCopy`` parts above ``copy_part_size``, 5 GiB by default — S3's CopyObject
  limit) and the temporary object deleted. Any failure aborts the upload, or deletes the
  temporary object if it was already completed, so no partial object or dangling upload is
  left behind. Neither an unfinished multipart upload nor a temporary key is ever visible
  under a content key.

In both cases, when an object already exists under the content key, nothing is written
there: the same bytes are already stored. Memory use is one part buffer plus one chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from storage import txguard
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
from storage.blobs.errors import BlobNotFound, BlobStoreError, InvalidRange

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB
"""S3's smallest allowed part (all parts but the last)."""
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MIB
DEFAULT_COPY_PART_SIZE = 5 * 1024 * MIB
TMP_DIR_NAME = ".tmp"

_HASH_IN_THREAD_FROM = 1 * MIB
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")

# Clean-up tasks that must finish even if the task that started them is cancelled.
_background_cleanups: set[asyncio.Task[None]] = set()


class S3BlobStore(BlobStore):
    """Content-addressed blobs in a bucket of an S3-compatible server.

    ``endpoint_url`` is ``None`` for AWS itself, or the server's base URL (MinIO, moto…).
    ``access_key``/``secret_key`` ``None`` fall back to botocore's own credential chain.
    The bucket must exist. The underlying client is created on first use and released
    by ``aclose()`` (or ``async with``); a store belongs to the event loop that first used it.
    Pass one ``session`` to many short-lived stores to load botocore's models only once.
    """

    def __init__(
        self,
        endpoint_url: str | None,
        bucket: str,
        prefix: str = "",
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str | None = None,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        copy_part_size: int = DEFAULT_COPY_PART_SIZE,
        addressing_style: str | None = None,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        max_attempts: int = 3,
        session: AioSession | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 bucket name is required")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        if copy_part_size < MIN_PART_SIZE:
            raise ValueError(f"copy_part_size must be at least {MIN_PART_SIZE} bytes")
        self.endpoint_url = endpoint_url or None
        self.bucket = bucket
        self.prefix = _normalise_prefix(prefix)
        self.region = region or "us-east-1"
        self._access_key = access_key or None
        self._secret_key = secret_key or None
        self._part_size = part_size
        self._copy_part_size = copy_part_size
        # Self-hosted servers (MinIO, moto, an IP address) rarely do virtual-hosted buckets.
        style = addressing_style or ("path" if self.endpoint_url else "auto")
        self._config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": style},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
        )
        self._session = session
        self._client: Any = None
        self._client_lock = asyncio.Lock()
        self._exit_stack: AsyncExitStack | None = None

    def __repr__(self) -> str:
        where = self.endpoint_url or "aws"
        return f"S3BlobStore({where!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    def object_key(self, key: str) -> str:
        """The name of the S3 object that holds the blob ``key``."""
        return self.prefix + validate_key(key)

    # --- client ---------------------------------------------------------------------------

    async def _s3(self) -> Any:
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    stack = AsyncExitStack()
                    with _s3_errors("connect"):
                        client = await stack.enter_async_context(
                            (self._session or get_session()).create_client(
                                "s3",
                                endpoint_url=self.endpoint_url,
                                region_name=self.region,
                                aws_access_key_id=self._access_key,
                                aws_secret_access_key=self._secret_key,
                                config=self._config,
                            )
                        )
                    client.meta.events.register("before-send.s3", txguard.s3_hook)
                    self._exit_stack, self._client = stack, client
        return self._client

    async def aclose(self) -> None:
        async with self._client_lock:
            stack, self._exit_stack, self._client = self._exit_stack, None, None
            if stack is not None:
                await stack.aclose()

    async def check(self) -> None:
        """Raise ``BlobStoreError`` unless the bucket is reachable with these credentials."""
        s3 = await self._s3()
        with _s3_errors("check bucket"):
            await s3.head_bucket(Bucket=self.bucket)

    # --- writes ---------------------------------------------------------------------------

    async def put_stream(
        self,
        chunks: AsyncIterator[bytes],
        *,
        expected_size: int | None = None,
        max_size: int | None = None,
    ) -> StoredBlob:
        guard = SizeGuard(expected_size=expected_size, max_size=max_size)
        s3 = await self._s3()
        part_size = self._part_size
        if expected_size is not None:
            # Keep a known size within S3's 10,000 parts.
            part_size = max(part_size, -(-expected_size // (MAX_PARTS - 1)))
        hasher = hashlib.sha256()
        buffer = bytearray()
        upload: _MultipartUpload | None = None
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                guard.add(len(chunk))
                if len(chunk) >= _HASH_IN_THREAD_FROM:
                    await asyncio.to_thread(hasher.update, chunk)
                else:
                    hasher.update(chunk)
                buffer += chunk
                # Strictly more than one part: content of at most one part goes by PutObject.
                while len(buffer) > part_size:
                    if upload is None:
                        upload = await _MultipartUpload.start(
                            s3, self.bucket, self._tmp_key(), temporary=True
                        )
                    part = bytes(memoryview(buffer)[:part_size])
                    del buffer[:part_size]
                    await upload.upload_part(part)
            size = guard.finish()
            digest = hasher.hexdigest()
            key = key_for_sha256(digest)
            target = self.prefix + key
            if upload is None:
                if not await self._object_exists(target):
                    with _s3_errors("put object", key):
                        await s3.put_object(
                            Bucket=self.bucket,
                            Key=target,
                            Body=bytes(buffer),
                            Metadata={"sha256": digest},
                        )
            else:
                if buffer:
                    await upload.upload_part(bytes(buffer))
                    buffer = bytearray()
                await upload.complete()
                if not await self._object_exists(target):
                    await self._copy(upload.key, target, size, digest)
                await self._delete_tmp(upload.key)
            return StoredBlob(key=key, size=size, sha256=digest)
        except BaseException:
            if upload is not None:
                await _run_cleanup(upload.discard())
            raise

    async def _copy(self, source: str, target: str, size: int, digest: str) -> None:
        s3 = await self._s3()
        copy_source = {"Bucket": self.bucket, "Key": source}
        metadata = {"sha256": digest}
        if size <= self._copy_part_size:
            with _s3_errors("copy object"):
                await s3.copy_object(
                    Bucket=self.bucket,
                    Key=target,
                    CopySource=copy_source,
                    MetadataDirective="REPLACE",
                    Metadata=metadata,
                )
            return
        # Above CopyObject's limit: copy in parts; the object appears only on completion.
        upload = await _MultipartUpload.start(
            s3, self.bucket, target, temporary=False, metadata=metadata
        )
        try:
            for offset in range(0, size, self._copy_part_size):
                last = min(offset + self._copy_part_size, size) - 1
                await upload.copy_part(copy_source, f"bytes={offset}-{last}")
            await upload.complete()
        except BaseException:
            await _run_cleanup(upload.discard())
            raise

    async def _delete_tmp(self, tmp_key: str) -> None:
        # The blob is stored: failing the put now would only make the caller retry.
        # sweep_incomplete() removes a temporary object this could not.
        try:
            s3 = await self._s3()
            with _s3_errors("delete temporary object"):
                await s3.delete_object(Bucket=self.bucket, Key=tmp_key)
        except BlobStoreError as exc:
            log.warning("could not delete temporary object %s: %s", tmp_key, exc)

    def _tmp_key(self) -> str:
        return f"{self.prefix}{TMP_DIR_NAME}/{uuid.uuid4().hex}"

    # --- reads ----------------------------------------------------------------------------

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
        target = self.object_key(key)
        if start < 0 or (end is not None and end < start):
            raise InvalidRange(start, end, None)
        if end == start:
            # An empty range cannot be asked of S3 ("bytes=5-4" would mean the whole object).
            size = await self.size(key)
            first, last = resolve_range(start, end, size)
            return _empty_reader(key, first, size)

        s3 = await self._s3()
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": target}
        ranged = not (start == 0 and end is None)
        if ranged:
            request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            with _s3_errors("get object", key):
                response = await s3.get_object(**request)
        except BlobStoreError as exc:
            if not _is_unsatisfiable_range(exc):
                raise
            # Past the end (or any range of an empty object): S3 says 416. Find out which.
            size = await self.size(key)
            first, last = resolve_range(start, end, size)
            if first != last:
                raise BlobStoreError(f"S3 refused range {request['Range']}") from exc
            return _empty_reader(key, first, size)

        body = response["Body"]
        try:
            first, last, total = _response_bounds(response, ranged)
        except BaseException:
            body.close()
            raise

        async def close() -> None:
            body.close()

        return BlobReader(
            key=key,
            start=first,
            end=last,
            total_size=total,
            chunks=_read_body(body, key, chunk_size),
            close=close,
        )

    async def size(self, key: str) -> int:
        head = await self._head(self.object_key(key), key)
        if head is None:
            raise BlobNotFound(key)
        return int(head["ContentLength"])

    async def exists(self, key: str) -> bool:
        try:
            target = self.object_key(key)
        except BlobNotFound:
            return False
        return await self._object_exists(target)

    async def delete(self, key: str) -> None:
        target = self.object_key(key)
        s3 = await self._s3()
        with _s3_errors("delete object", key):
            await s3.delete_object(Bucket=self.bucket, Key=target)

    async def _object_exists(self, target: str) -> bool:
        return await self._head(target, None) is not None

    async def _head(self, target: str, key: str | None) -> dict[str, Any] | None:
        s3 = await self._s3()
        try:
            with _s3_errors("head object", key or target):
                return await s3.head_object(Bucket=self.bucket, Key=target)
        except BlobNotFound:
            return None

    # --- maintenance ----------------------------------------------------------------------

    async def sweep_incomplete(self, older_than: float) -> int:
        s3 = await self._s3()
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
        removed = 0
        with _s3_errors("sweep"):
            # Unfinished uploads: temporary ones, and server-side copies to a content key.
            paginator = s3.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Uploads", []):
                    if item["Initiated"] < cutoff:
                        with contextlib.suppress(ClientError):
                            await s3.abort_multipart_upload(
                                Bucket=self.bucket, Key=item["Key"], UploadId=item["UploadId"]
                            )
                            removed += 1
            tmp_prefix = f"{self.prefix}{TMP_DIR_NAME}/"
            paginator = s3.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=tmp_prefix):
                for item in page.get("Contents", []):
                    if item["LastModified"] < cutoff:
                        await s3.delete_object(Bucket=self.bucket, Key=item["Key"])
                        removed += 1
        return removed


class _MultipartUpload:
    """One multipart upload: its parts so far, completion, and abort on failure."""

    def __init__(self, s3: Any, bucket: str, key: str, upload_id: str, *, temporary: bool) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.upload_id = upload_id
        self.temporary = temporary
        self.parts: list[dict[str, Any]] = []
        self.completed = False

    @classmethod
    async def start(
        cls,
        s3: Any,
        bucket: str,
        key: str,
        *,
        temporary: bool,
        metadata: dict[str, str] | None = None,
    ) -> _MultipartUpload:
        """Open an upload to ``key``; ``temporary`` ones may be deleted once completed."""
        extra = {"Metadata": metadata} if metadata else {}
        request = asyncio.ensure_future(s3.create_multipart_upload(Bucket=bucket, Key=key, **extra))
        try:
            with _s3_errors("start multipart upload"):
                response = await asyncio.shield(request)
        except asyncio.CancelledError:
            # The server may open the upload anyway: abort it once its id is known.
            await _run_cleanup(_abort_when_opened(s3, bucket, key, request))
            raise
        return cls(s3, bucket, key, response["UploadId"], temporary=temporary)

    def _next_part_number(self) -> int:
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise BlobStoreError(f"more than {MAX_PARTS} parts: raise part_size")
        return number

    async def upload_part(self, data: bytes) -> None:
        number = self._next_part_number()
        with _s3_errors("upload part"):
            response = await self.s3.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=data,
            )
        self.parts.append({"ETag": response["ETag"], "PartNumber": number})

    async def copy_part(self, copy_source: dict[str, str], source_range: str) -> None:
        number = self._next_part_number()
        with _s3_errors("copy part"):
            response = await self.s3.upload_part_copy(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                CopySource=copy_source,
                CopySourceRange=source_range,
            )
        self.parts.append({"ETag": response["CopyPartResult"]["ETag"], "PartNumber": number})

    async def complete(self) -> None:
        with _s3_errors("complete multipart upload"):
            await self.s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        self.completed = True

    async def discard(self) -> None:
        """Remove every trace of this upload.

        Aborted when not known to be complete. A temporary key is also deleted, in case
        the upload was completed after all (a completion whose answer never arrived).
        A content key never is: whatever completed there is the right content.
        """
        try:
            if not self.completed:
                with contextlib.suppress(ClientError):
                    await self.s3.abort_multipart_upload(
                        Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
                    )
            if self.temporary:
                await self.s3.delete_object(Bucket=self.bucket, Key=self.key)
        except Exception as exc:
            log.warning("could not clean up upload %s (%s): %s", self.key, self.upload_id, exc)


async def _abort_when_opened(s3: Any, bucket: str, key: str, request: Any) -> None:
    try:
        response = await request
        await s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=response["UploadId"])
    except Exception as exc:
        log.debug("no upload to abort for %s: %s", key, exc)


async def _run_cleanup(cleanup: Any) -> None:
    """Run ``cleanup`` to completion even if the current task is cancelled meanwhile."""
    task = asyncio.ensure_future(cleanup)
    _background_cleanups.add(task)
    task.add_done_callback(_background_cleanups.discard)
    await asyncio.shield(task)


async def _read_body(body: Any, key: str, chunk_size: int) -> AsyncIterator[bytes]:
    buffer = bytearray()
    while True:
        with _s3_errors("read object", key):
            data = await body.read(chunk_size - len(buffer))
        if not data:
            break
        buffer += data
        if len(buffer) >= chunk_size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def _response_bounds(response: dict[str, Any], ranged: bool) -> tuple[int, int, int]:
    """``(start, end, total)`` of what a GetObject answer carries."""
    content_range = response.get("ContentRange")
    if content_range:
        match = _CONTENT_RANGE_RE.fullmatch(content_range.strip())
        if match is None:
            raise BlobStoreError(f"unexpected Content-Range {content_range!r}")
        first, last, total = (int(g) for g in match.groups())
        return first, last + 1, total
    if ranged:
        raise BlobStoreError("the server answered a range request without a Content-Range")
    length = int(response["ContentLength"])
    return 0, length, length


def _empty_reader(key: str, at: int, total: int) -> BlobReader:
    async def nothing() -> None:
        return None

    return BlobReader(
        key=key, start=at, end=at, total_size=total, chunks=_no_chunks(), close=nothing
    )


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield


def _normalise_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def _is_unsatisfiable_range(exc: BlobStoreError) -> bool:
    cause = exc.__cause__
    if not isinstance(cause, ClientError):
        return False
    error = cause.response.get("Error", {})
    status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error.get("Code") == "InvalidRange" or status == 416


@contextlib.contextmanager
def _s3_errors(action: str, key: str | None = None) -> Iterator[None]:
    """Turn client and transport errors into ``BlobStoreError``; a missing key into
    ``BlobNotFound`` when ``key`` is given."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if (
            key is not None
            and code != "NoSuchBucket"
            and (code in _NOT_FOUND_CODES or status == 404)
        ):
            raise BlobNotFound(key) from exc
        raise BlobStoreError(
            f"S3 {action} failed: {code or status}: {error.get('Message', exc)}"
        ) from exc
    except (TimeoutError, BotoCoreError, aiohttp.ClientError) as exc:
        raise BlobStoreError(f"S3 {action} failed: {exc}") from exc
