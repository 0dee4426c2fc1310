"""One blob-store test suite, run against the local store and the S3 store.

The S3 store talks to a real S3-compatible server on loopback (moto in server mode), so
multipart uploads, server-side copies, ranged GETs and error answers are the server's own.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.blobs import (
    BlobNotFound,
    BlobReader,
    BlobSizeMismatch,
    BlobStore,
    BlobStoreError,
    BlobTooLarge,
    InvalidBlobKey,
    InvalidRange,
    LocalBlobStore,
    StoredBlob,
    blob_store_from_url,
)

try:
    from moto.server import ThreadedMotoServer
except ImportError:  # pragma: no cover - depends on the environment
    ThreadedMotoServer = None

MIB = 1024 * 1024
PART_SIZE = 5 * MIB  # S3's minimum, so multipart paths are reached with small blobs
COPY_PART_SIZE = 8 * MIB  # so a 12 MiB blob is copied server-side in parts, a 6 MiB one whole
S3_PREFIX = "vault/blobs"
S3_REGION = "us-east-1"
S3_KEY_ID = "testing"
S3_SECRET = "testing"


def random_bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


async def chunked(data: bytes, sizes: Iterable[int] = (65536,)) -> AsyncIterator[bytes]:
    """``data`` in chunks whose sizes cycle through ``sizes``."""
    sizes = list(sizes)
    pos = 0
    i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        yield data[pos : pos + n]
        pos += n
        i += 1
        await asyncio.sleep(0)


async def read_range(store: BlobStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    reader = await store.open_range(key, start, end)
    return await reader.read_all()


def expected_key(data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f"{digest[:2]}/{digest[2:4]}/{digest}"


# --- servers and stores -------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    if ThreadedMotoServer is None:
        pytest.skip("moto[server] is not installed: no S3-compatible server to test against")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@functools.cache
def aio_session() -> Any:
    """One botocore session for the whole run: it loads the S3 model once."""
    from aiobotocore.session import get_session

    return get_session()


class S3Admin:
    """A plain client on the test server, to look at the bucket behind the store's back."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.endpoint = endpoint
        self.bucket = bucket

    def _client(self) -> Any:
        return aio_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=S3_REGION,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
        )

    async def create_bucket(self) -> None:
        async with self._client() as s3:
            await s3.create_bucket(Bucket=self.bucket)

    async def listing(self) -> list[str]:
        """Every object and every unfinished multipart upload in the bucket."""
        async with self._client() as s3:
            objects = await s3.list_objects_v2(Bucket=self.bucket)
            uploads = await s3.list_multipart_uploads(Bucket=self.bucket)
        names = [item["Key"] for item in objects.get("Contents", [])]
        names += [f"upload:{item['Key']}" for item in uploads.get("Uploads", [])]
        return sorted(names)

    async def leave_crash_debris(self, prefix: str) -> None:
        """What a process killed mid-put leaves: an open upload and a temporary object."""
        async with self._client() as s3:
            await s3.create_multipart_upload(Bucket=self.bucket, Key=f"{prefix}/.tmp/crashed")
            await s3.put_object(Bucket=self.bucket, Key=f"{prefix}/.tmp/orphan", Body=b"x")


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
        return
    from storage.blobs.s3 import S3BlobStore

    endpoint = request.getfixturevalue("s3_endpoint")
    admin = S3Admin(endpoint, f"blobs-{uuid.uuid4().hex[:16]}")
    await admin.create_bucket()
    s3_store = S3BlobStore(
        endpoint_url=endpoint,
        bucket=admin.bucket,
        prefix=S3_PREFIX,
        access_key=S3_KEY_ID,
        secret_key=S3_SECRET,
        region=S3_REGION,
        part_size=PART_SIZE,
        copy_part_size=COPY_PART_SIZE,
        session=aio_session(),
    )
    s3_store.test_admin = admin  # type: ignore[attr-defined]
    async with s3_store:
        yield s3_store


async def listing(store: BlobStore) -> list[str]:
    """Everything the store has on its medium: files (temporary ones too) or objects and
    unfinished uploads, named relative to the store."""
    if isinstance(store, LocalBlobStore):
        if not store.root.exists():
            return []
        return sorted(
            Path(dirpath, name).relative_to(store.root).as_posix()
            for dirpath, _dirs, files in os.walk(store.root)
            for name in files
        )
    names = await store.test_admin.listing()  # type: ignore[attr-defined]
    return [name.replace(f"{S3_PREFIX}/", "", 1) for name in names]


# --- writing and reading back -------------------------------------------------------------


async def test_round_trip(store: BlobStore) -> None:
    data = random_bytes(300_001)
    blob = await store.put_stream(chunked(data, [1, 7, 4096, 100_000, 65_537]))

    digest = hashlib.sha256(data).hexdigest()
    assert blob == StoredBlob(
        key=f"{digest[:2]}/{digest[2:4]}/{digest}", size=len(data), sha256=digest
    )
    assert await read_range(store, blob.key) == data
    assert await store.size(blob.key) == len(data)
    assert await store.exists(blob.key)
    assert await listing(store) == [blob.key]


async def test_sha256_is_that_of_the_bytes(store: BlobStore) -> None:
    blob = await store.put_bytes(b"abc")
    assert blob.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert blob.key == "ba/78/" + blob.sha256
    assert blob.size == 3


async def test_same_bytes_are_stored_once(store: BlobStore) -> None:
    data = random_bytes(200_000, seed=1)
    first = await store.put_stream(chunked(data, [1000]))
    second = await store.put_stream(chunked(data, [77_777]))
    other = await store.put_bytes(data + b"!")

    assert first == second
    assert other.key != first.key
    assert await listing(store) == sorted([first.key, other.key])
    assert await read_range(store, first.key) == data


async def test_put_file(store: BlobStore, tmp_path: Path) -> None:
    data = random_bytes(2 * MIB + 3, seed=2)
    path = tmp_path / "upload.bin"
    path.write_bytes(data)

    blob = await store.put_file(path)

    assert blob.key == expected_key(data)
    assert await read_range(store, blob.key) == data
    with pytest.raises(BlobTooLarge):
        await store.put_file(path, max_size=MIB)


async def test_empty_blob(store: BlobStore) -> None:
    blob = await store.put_stream(chunked(b""))

    assert blob.size == 0
    assert blob.sha256 == hashlib.sha256(b"").hexdigest()
    assert await store.size(blob.key) == 0
    assert await read_range(store, blob.key) == b""
    assert await read_range(store, blob.key, 0, 10) == b""
    reader = await store.open_range(blob.key)
    assert (reader.start, reader.end, reader.total_size) == (0, 0, 0)
    await reader.aclose()
    with pytest.raises(InvalidRange):
        await store.open_range(blob.key, 1)


@pytest.mark.parametrize("size", [6 * MIB + 1, 12 * MIB], ids=["6MiB+1", "12MiB"])
async def test_multipart_sized_blob(store: BlobStore, size: int) -> None:
    data = random_bytes(size, seed=3)
    blob = await store.put_stream(chunked(data, [MIB - 1, 3 * MIB]))

    assert blob == StoredBlob(expected_key(data), size, hashlib.sha256(data).hexdigest())
    reader = await store.open_range(blob.key)
    digest = hashlib.sha256()
    async for chunk in reader:
        assert 0 < len(chunk) <= 256 * 1024
        digest.update(chunk)
    assert digest.hexdigest() == blob.sha256
    # A range across the boundary of the first part.
    assert (
        await read_range(store, blob.key, PART_SIZE - 10, PART_SIZE + 10)
        == data[PART_SIZE - 10 : PART_SIZE + 10]
    )
    assert await listing(store) == [blob.key]


async def test_concurrent_puts_of_the_same_content(store: BlobStore) -> None:
    small = random_bytes(100_000, seed=4)
    large = random_bytes(6 * MIB, seed=5)

    results = await asyncio.gather(
        *(store.put_stream(chunked(small, [10_000 + i])) for i in range(5)),
        *(store.put_stream(chunked(large, [MIB + i])) for i in range(3)),
    )

    assert len(set(results[:5])) == 1
    assert len(set(results[5:])) == 1
    assert await listing(store) == sorted([results[0].key, results[5].key])
    assert await read_range(store, results[0].key) == small
    assert await read_range(store, results[5].key) == large


# --- ranges -------------------------------------------------------------------------------

RANGE_DATA = random_bytes(1000, seed=6)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(0, None, id="whole"),
        pytest.param(0, 1000, id="whole-explicit"),
        pytest.param(10, None, id="start-only"),
        pytest.param(10, 20, id="start-end"),
        pytest.param(999, None, id="last-byte"),
        pytest.param(999, 1000, id="last-byte-explicit"),
        pytest.param(0, 1, id="first-byte"),
        pytest.param(100, 5000, id="end-clamped"),
        pytest.param(1000, None, id="empty-at-end"),
        pytest.param(500, 500, id="empty-inside"),
    ],
)
async def test_ranges(store: BlobStore, start: int, end: int | None) -> None:
    blob = await store.put_bytes(RANGE_DATA)

    reader = await store.open_range(blob.key, start, end, chunk_size=64)
    chunks = [chunk async for chunk in reader]

    expected = RANGE_DATA[start:end]
    assert b"".join(chunks) == expected
    assert all(0 < len(chunk) <= 64 for chunk in chunks)
    assert reader.start == start
    assert reader.end == start + len(expected)
    assert reader.length == len(expected)
    assert reader.total_size == len(RANGE_DATA)


@pytest.mark.parametrize(("start", "end"), [(-1, None), (1001, None), (20, 10), (1001, 1002)])
async def test_invalid_ranges(store: BlobStore, start: int, end: int | None) -> None:
    blob = await store.put_bytes(RANGE_DATA)
    with pytest.raises(InvalidRange):
        await store.open_range(blob.key, start, end)


async def test_reader_closed_early(store: BlobStore) -> None:
    data = random_bytes(MIB, seed=7)
    blob = await store.put_bytes(data)

    async with await store.open_range(blob.key, chunk_size=1000) as reader:
        assert isinstance(reader, BlobReader)
        assert await anext(reader) == data[:1000]
    assert [chunk async for chunk in reader] == []
    # The store is still usable (no leaked handle or connection in the way).
    assert await read_range(store, blob.key, 5, 10) == data[5:10]


# --- missing keys and deletion ------------------------------------------------------------


async def test_missing_key(store: BlobStore) -> None:
    key = expected_key(b"never stored")

    with pytest.raises(BlobNotFound) as info:
        await store.open_range(key)
    assert info.value.key == key
    with pytest.raises(BlobNotFound):
        await store.open_range(key, 5, 10)
    with pytest.raises(BlobNotFound):
        await store.size(key)
    assert not await store.exists(key)
    await store.delete(key)  # deleting what is not there is not an error


@pytest.mark.parametrize(
    "key",
    ["../../etc/passwd", "ab/cd/" + "0" * 64, "AB/CD/" + "ab" * 32, "", "x" * 70, "/a"],
)
async def test_malformed_keys_are_never_found(store: BlobStore, key: str) -> None:
    with pytest.raises(InvalidBlobKey):
        await store.open_range(key)
    with pytest.raises(BlobNotFound):
        await store.size(key)
    assert not await store.exists(key)
    with pytest.raises(InvalidBlobKey):
        await store.delete(key)


async def test_delete(store: BlobStore) -> None:
    kept = await store.put_bytes(b"kept")
    gone = await store.put_bytes(b"deleted")

    await store.delete(gone.key)

    assert not await store.exists(gone.key)
    with pytest.raises(BlobNotFound):
        await store.open_range(gone.key)
    assert await listing(store) == [kept.key]
    # The same bytes can be stored again afterwards.
    assert await store.put_bytes(b"deleted") == gone
    assert await read_range(store, gone.key) == b"deleted"


# --- failed writes leave nothing ----------------------------------------------------------


class SourceFailed(Exception):
    pass


async def stream_then_fail(data: bytes, chunk: int = MIB) -> AsyncIterator[bytes]:
    async for part in chunked(data, [chunk]):
        yield part
    raise SourceFailed("the download broke")


@pytest.mark.parametrize(
    "good_bytes", [0, 100_000, 7 * MIB, 11 * MIB], ids=["at-once", "small", "1-part", "2-parts"]
)
async def test_stream_that_raises_leaves_nothing(store: BlobStore, good_bytes: int) -> None:
    kept = await store.put_bytes(b"already there")

    with pytest.raises(SourceFailed):
        await store.put_stream(stream_then_fail(random_bytes(good_bytes, seed=8)))

    assert await listing(store) == [kept.key]


@pytest.mark.parametrize(
    ("size", "max_size"), [(2000, 1000), (12 * MIB, 6 * MIB)], ids=["small", "multipart"]
)
async def test_max_size_exceeded_leaves_nothing(store: BlobStore, size: int, max_size: int) -> None:
    data = random_bytes(size, seed=9)

    with pytest.raises(BlobTooLarge) as info:
        await store.put_stream(chunked(data, [1000 if size < MIB else MIB]), max_size=max_size)

    assert info.value.max_size == max_size
    assert info.value.size > max_size
    assert await listing(store) == []
    # Exactly at the limit is allowed.
    blob = await store.put_stream(chunked(data[:max_size], [MIB]), max_size=max_size)
    assert blob.size == max_size


async def test_announced_size_over_max_is_refused_before_reading(store: BlobStore) -> None:
    read = False

    async def source() -> AsyncIterator[bytes]:
        nonlocal read
        read = True
        yield b"x"

    with pytest.raises(BlobTooLarge):
        await store.put_stream(source(), expected_size=2000, max_size=1000)
    assert not read
    assert await listing(store) == []


@pytest.mark.parametrize(("actual", "expected"), [(1000, 1001), (1001, 1000), (6 * MIB, 7 * MIB)])
async def test_size_mismatch_leaves_nothing(store: BlobStore, actual: int, expected: int) -> None:
    data = random_bytes(actual, seed=10)
    with pytest.raises(BlobSizeMismatch) as info:
        await store.put_stream(chunked(data, [MIB]), expected_size=expected)
    assert info.value.expected == expected
    assert await listing(store) == []


async def test_cancelled_put_leaves_nothing(store: BlobStore) -> None:
    sent_enough = asyncio.Event()

    async def stalls_after_a_part() -> AsyncIterator[bytes]:
        async for part in chunked(random_bytes(7 * MIB, seed=11), [MIB]):
            yield part
        sent_enough.set()
        await asyncio.Event().wait()  # the peer went silent
        yield b"never"

    task = asyncio.create_task(store.put_stream(stalls_after_a_part()))
    await asyncio.wait_for(sent_enough.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await listing(store) == []


async def test_store_failure_at_the_last_step_leaves_nothing(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    if isinstance(store, LocalBlobStore):

        def disk_full(src: Any, dst: Any) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr("storage.blobs.local.os.replace", disk_full)
    else:

        async def copy_refused(*args: Any) -> None:
            raise BlobStoreError("S3 copy object failed: InternalError")

        monkeypatch.setattr(store, "_copy", copy_refused)

    with pytest.raises(BlobStoreError):
        await store.put_stream(chunked(random_bytes(7 * MIB, seed=12), [MIB]))

    monkeypatch.undo()
    assert await listing(store) == []


async def test_sweep_removes_only_crash_debris(store: BlobStore) -> None:
    kept = await store.put_bytes(b"a real blob")
    if isinstance(store, LocalBlobStore):
        tmp = store.root / ".tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        for name in ("put-crashed.part", "put-orphan.part"):
            (tmp / name).write_bytes(b"partial")
        hour_ago = time.time() - 3600
        os.utime(tmp / "put-crashed.part", (hour_ago, hour_ago))
        os.utime(tmp / "put-orphan.part", (hour_ago, hour_ago))
        age = 600.0
    else:
        await store.test_admin.leave_crash_debris(S3_PREFIX)  # type: ignore[attr-defined]
        age = 0.0  # the server sets their times; everything older than now is debris
    assert len(await listing(store)) == 3

    if isinstance(store, LocalBlobStore):
        assert await store.sweep_incomplete(older_than=7200) == 0
    assert await store.sweep_incomplete(older_than=age) == 2

    assert await listing(store) == [kept.key]


# --- S3 specifics ---------------------------------------------------------------------------


async def test_s3_missing_bucket_is_a_store_error_not_a_missing_blob(s3_endpoint: str) -> None:
    from storage.blobs.s3 import S3BlobStore

    async with S3BlobStore(
        s3_endpoint, "no-such-bucket", "", S3_KEY_ID, S3_SECRET, S3_REGION, session=aio_session()
    ) as store:
        with pytest.raises(BlobStoreError) as info:
            await store.put_bytes(b"data")
        assert not isinstance(info.value, BlobNotFound)
        with pytest.raises(BlobStoreError):
            await store.check()


async def test_s3_unreachable_server_is_a_store_error() -> None:
    from storage.blobs.s3 import S3BlobStore

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = S3BlobStore(
        f"http://127.0.0.1:{port}",
        "bucket",
        "",
        S3_KEY_ID,
        S3_SECRET,
        S3_REGION,
        max_attempts=1,
        connect_timeout=2,
        session=aio_session(),
    )
    async with store:
        with pytest.raises(BlobStoreError):
            await store.size("ab/cd/abcd" + "0" * 60)
        with pytest.raises(BlobStoreError):
            await store.put_bytes(b"data")


# --- building a store from its URL --------------------------------------------------------


class FakeSecret:
    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value


def test_factory_local_urls(tmp_path: Path) -> None:
    by_url = blob_store_from_url(f"file://{tmp_path}/vault", endpoint_url="ignored")
    assert isinstance(by_url, LocalBlobStore)
    assert by_url.root == tmp_path / "vault"

    by_path = blob_store_from_url(str(tmp_path / "vault"))
    assert isinstance(by_path, LocalBlobStore)
    assert by_path.root == tmp_path / "vault"

    relative = blob_store_from_url("data/vault")
    assert isinstance(relative, LocalBlobStore)
    assert relative.root == Path.cwd() / "data" / "vault"

    spaced = blob_store_from_url("file:///srv/my%20vault")
    assert isinstance(spaced, LocalBlobStore)
    assert spaced.root == Path("/srv/my vault")


def test_factory_s3_url() -> None:
    from storage.blobs.s3 import S3BlobStore

    store = blob_store_from_url(
        "s3://media-bucket/opsdeck/vault/",
        endpoint_url="http://127.0.0.1:9000",
        access_key="AKIA",
        secret_key=FakeSecret("s3cret"),
        region="eu-central-1",
        part_size=16 * MIB,
    )
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix, store.endpoint_url, store.region) == (
        "media-bucket",
        "opsdeck/vault/",
        "http://127.0.0.1:9000",
        "eu-central-1",
    )
    assert store.object_key("ab/cd/" + "abcd" * 16) == "opsdeck/vault/ab/cd/" + "abcd" * 16
    assert "s3cret" not in repr(store)

    bare = blob_store_from_url("s3://media-bucket")
    assert isinstance(bare, S3BlobStore)
    assert (bare.prefix, bare.endpoint_url) == ("", None)


@pytest.mark.parametrize(
    "url", ["", "   ", "s3://", "s3:///prefix", "ftp://host/x", "file://otherhost/x", "file:rel"]
)
def test_factory_rejects_unusable_urls(url: str) -> None:
    with pytest.raises(ValueError):
        blob_store_from_url(url)
