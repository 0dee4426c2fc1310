"""Vault: a 1 GB file through ingest from disk and HTTP download (issue 3's bench line).

    python -m bench.vault_bigfile                          # 1024 MB, source file under /tmp
    python -m bench.vault_bigfile --size-mb 64             # quick smoke run
    python -m bench.vault_bigfile --size-mb 1024 --dir /tmp/opsdeck-bigfile

Measured in one run, on the same file:

1. **baseline** — `sha256sum <file>` in a subprocess, wall time → MB/s. The file was just
   written or read, so the page cache is warm for the baseline and the ingest alike.
2. **ingest from disk** — `VaultService.ingest` of an `IngestSource(kind="document")` whose
   content is `read_local` below — a copy of `bot.vault_delivery._read_local`, the iterator
   the bot uses when a local Bot API server hands over a file path (64 KiB reads in a worker
   thread); copied because importing that module loads aiogram (~190 MB RSS by itself,
   ~150 MB more than everything ingest and the claim routes import) — into a
   `LocalBlobStore` on production defaults (1 MiB write buffer, fsync on), SQLite on disk.
3. **HTTP download** — the claim routes (`add_claim_routes`, production `ClaimRoutesConfig`)
   served by aiohttp on 127.0.0.1; a link is created, and a *separate client process*
   (this module with `--client`) does `GET /claim/<code>` (303 → `/files/<token>`), streams
   the body with aiohttp and hashes it; the hash must equal the ingested sha256.
4. **peak RSS** — of the process that ingests and serves: `/proc/self/status` sampled every
   20 ms per phase, plus `VmHWM` (the kernel's high-water mark) for the whole process; and
   of the client process (its own `VmHWM`; not `ru_maxrss`, which Linux carries over from
   the parent through vfork + exec). The client runs apart so the server's
   numbers are not mixed with the client's buffers.

Nothing is asserted apart from the hash (exit code 1 on a mismatch); the numbers go to
bench/README.md by hand, with the load average of the machine at the time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

MB = 1024 * 1024
OWNER = 1001
SOURCE_NAME = "vault-bigfile-{size_mb}MB.bin"
REPO_ROOT = Path(__file__).resolve().parent.parent


# -- memory --------------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Samples this process's VmRSS every `interval` seconds; peak per named phase."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self._phase: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            phase = self._phase
            if phase is not None:
                rss = _status_kb("VmRSS")
                self.peaks[phase] = max(self.peaks.get(phase, 0), rss)
            self._stop.wait(self.interval)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.peaks[name] = _status_kb("VmRSS")
        self._phase = name
        try:
            yield
        finally:
            self.peaks[name] = max(self.peaks[name], _status_kb("VmRSS"))
            self._phase = None


# -- the source file -----------------------------------------------------------------------------


def ensure_source(directory: Path, size_mb: int) -> tuple[Path, bool]:
    """A file of random bytes of `size_mb` MiB; reused when one of that size is there."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SOURCE_NAME.format(size_mb=size_mb)
    if path.is_file() and path.stat().st_size == size_mb * MB:
        return path, True
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(MB))
    os.replace(tmp, path)
    return path, False


def sha256sum(path: Path) -> tuple[str, float]:
    started = time.perf_counter()
    out = subprocess.run(["sha256sum", str(path)], check=True, capture_output=True, text=True)
    return out.stdout.split()[0], time.perf_counter() - started


async def read_local(path: Path, chunk_size: int) -> AsyncIterator[bytes]:
    """Same as `bot.vault_delivery._read_local`."""
    with open(path, "rb") as f:  # noqa: ASYNC230 - chunks are read in a thread below
        while chunk := await asyncio.to_thread(f.read, chunk_size):
            yield chunk


def hashlib_sha256(path: Path) -> tuple[str, float]:
    """Second baseline: Python's hashlib (OpenSSL, SHA-NI where the CPU has it), 1 MiB reads."""
    started = time.perf_counter()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(MB):
            digest.update(block)
    return digest.hexdigest(), time.perf_counter() - started


# -- the client process --------------------------------------------------------------------------


async def client_main(url: str, chunk_size: int) -> None:
    import aiohttp

    digest = hashlib.sha256()
    size = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    started = time.perf_counter()
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url) as resp,  # follows the 303 to /files/<token>
    ):
        status = resp.status
        redirects = [str(r.url.path).split("/")[1] for r in resp.history]
        first_byte = time.perf_counter() - started
        async for chunk in resp.content.iter_chunked(chunk_size):
            digest.update(chunk)
            size += len(chunk)
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "status": status,
                "redirects": redirects,
                "bytes": size,
                "sha256": digest.hexdigest(),
                "seconds": elapsed,
                "first_byte_seconds": first_byte,
                "hwm_kb": _status_kb("VmHWM"),
            }
        )
    )


# -- the server side ------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from bot.web_claims import ClaimRoutesConfig, add_claim_routes
    from core.clock import SystemClock
    from core.services.operators import OperatorService, bootstrap_owners
    from core.vault import IngestSource, VaultConfig, VaultGateway, VaultService
    from storage import migrate
    from storage.blobs import LocalBlobStore
    from storage.db import create_engine, create_sessionmaker

    sampler = RssSampler()
    sampler.start()
    size_mb = args.size_mb
    directory = Path(args.dir)
    load_before = os.getloadavg()

    with sampler.phase("generate"):
        gen_started = time.perf_counter()
        source, reused = ensure_source(directory, size_mb)
        gen_seconds = time.perf_counter() - gen_started
    size = source.stat().st_size
    how = "reused" if reused else f"written in {gen_seconds:.1f} s"
    print(f"source {source} ({size_mb} MiB, {how})", flush=True)

    # Warm the page cache once, then the baseline proper.
    sha256sum(source)
    expected, base_s = sha256sum(source)
    print(f"sha256sum: {base_s:.2f} s", flush=True)
    py_hash, py_s = await asyncio.to_thread(hashlib_sha256, source)
    assert py_hash == expected
    print(f"hashlib: {py_s:.2f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="opsdeck-bigfile-", dir=directory) as data:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(data) / 'opsdeck.db'}")
        await migrate.upgrade(engine)
        sessions = create_sessionmaker(engine)
        clock = SystemClock()
        blobs = LocalBlobStore(Path(data) / "blobs")
        async with sessions() as session:
            await bootstrap_owners(session, clock, [OWNER])
            await session.commit()
            actor = await OperatorService(session, clock).resolve(OWNER)
        assert actor is not None
        rss_ready_kb = _status_kb("VmRSS")

        # -- ingest from disk
        with sampler.phase("ingest"):
            started = time.perf_counter()
            async with sessions() as session:
                result = await VaultService(session, clock, blobs).ingest(
                    actor,
                    IngestSource(
                        kind="document",
                        name=source.name,
                        size=size,
                        file_id="BIGFILE",
                        file_unique_id="BIGFILE-U",
                        content=read_local(source, 65536),
                    ),
                )
                item = result.item
                new = await VaultService(session, clock, blobs).create_link(
                    actor, item.id, lifetime_seconds=3600, max_uses=5
                )
            ingest_s = time.perf_counter() - started
        print(f"ingest: {ingest_s:.2f} s (includes create_link)", flush=True)
        ingest_ok = item.sha256 == expected and item.size == size
        if not ingest_ok:
            print(f"INGEST HASH MISMATCH: {item.sha256} / {item.size} vs {expected} / {size}")

        # -- HTTP download through a separate client process
        gateway = VaultGateway(
            sessionmaker=sessions,
            clock=clock,
            blobs=blobs,
            secret_key=b"bench-secret-key-0123456789abcdef",
            config=VaultConfig(),
        )
        app = web.Application()
        add_claim_routes(app, gateway, ClaimRoutesConfig())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/claim/{new.code}"
        try:
            with sampler.phase("serve"):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.vault_bigfile",
                    "--client",
                    url,
                    stdout=asyncio.subprocess.PIPE,
                    cwd=REPO_ROOT,
                )
                out, _ = await proc.communicate()
        finally:
            await runner.cleanup()
            await engine.dispose()
        client = json.loads(out.decode().strip().splitlines()[-1])
        download_ok = client["sha256"] == expected and client["bytes"] == size

    sampler.stop()
    load_after = os.getloadavg()
    hwm_kb = _status_kb("VmHWM")
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    mbps = lambda seconds: size / MB / seconds  # noqa: E731
    base = mbps(base_s)
    print()
    print(f"file {size_mb} MiB, sha256 {expected[:16]}…, {os.cpu_count()} cores")
    print(
        f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
        f", after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    print()
    py = mbps(py_s)
    ok = {True: "yes", False: "NO"}
    rows = [
        ("sha256sum (baseline)", base_s, "-", ""),
        ("hashlib sha256", py_s, "-", ""),
        ("ingest from disk", ingest_s, f"{sampler.peaks['ingest'] / 1024:.1f} MB", ok[ingest_ok]),
        (
            "HTTP download",
            client["seconds"],
            f"{sampler.peaks['serve'] / 1024:.1f} MB",
            ok[download_ok],
        ),
    ]
    print("| step | seconds | MB/s | vs sha256sum | vs hashlib | server peak RSS | ok |")
    print("|------|---------|------|--------------|------------|-----------------|----|")
    for name, seconds, rss, good in rows:
        speed = mbps(seconds)
        print(
            f"| {name} | {seconds:.2f} | {speed:.1f} | {speed / base:.2f}x | {speed / py:.2f}x "
            f"| {rss} | {good} |"
        )
    print()
    print(
        f"server process: VmHWM {hwm_kb / 1024:.1f} MB, ru_maxrss {maxrss_kb / 1024:.1f} MB "
        f"(after setup, before ingest: VmRSS {rss_ready_kb / 1024:.1f} MB; "
        f"while generating: {sampler.peaks['generate'] / 1024:.1f} MB)"
    )
    print(
        f"client process: VmHWM {client['hwm_kb'] / 1024:.1f} MB; status {client['status']}"
        f" via {client['redirects']}; first byte after {client['first_byte_seconds'] * 1000:.0f} ms"
    )
    return 0 if ingest_ok and download_ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "opsdeck-bigfile"))
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--client-chunk", type=int, default=256 * 1024, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(client_main(args.client, args.client_chunk))
        return
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
