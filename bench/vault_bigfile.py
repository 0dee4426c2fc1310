"""Vault: a 1 GB file through ingest from disk and HTTP download, in the real bot process
(issue 3's bench line).

    python -m bench.vault_bigfile                          # 1024 MiB, source file under /tmp
    python -m bench.vault_bigfile --size-mb 64             # quick smoke run
    python -m bench.vault_bigfile --fresh                  # the bot migrates its database itself

Measured in one run, on the same file:

1. **baselines** — `sha256sum <file>` in a subprocess (after one warm-up read, so the page
   cache is as warm for the baseline as for the bot), and Python's `hashlib.sha256`.
2. **the bot** — `python -m bot run` on the embedded defaults (SQLite and the local vault in a
   fresh data dir, long polling) against `tests/fakes/telegram.py` in local mode, as behind a
   local `telegram-bot-api` server: `getFile` answers the file's absolute path and the bot
   reads it from disk. The database is migrated first by `python -m bot migrate`, as the
   compose example's migrate step does (`--fresh` leaves that to the bot's start-up).
3. **ingest from disk** — the owner sends the file as a document; timed from the update
   being queued to the bot's item card (read from disk, hashed, sniffed, written through a
   temp file + fsync into the blob store, the row committed).
4. **a claim link** made in chat with the card's buttons, as an operator does.
5. **HTTP download** — a *separate client process* (this module with `--client`) does
   `POST /claim/<code>` as a script does (JSON in, `download_url` out), then
   `GET /files/<token>` on the bot's own web server, streams the body and hashes it; the
   hash must equal the baseline's.
6. **peak RSS of the bot process** — `/proc/<pid>/status` sampled every 20 ms per phase by
   this process, and the kernel's high-water mark `VmHWM` for the bot's whole life (start-up
   included), read just before SIGTERM; the bot must then exit with code 0.

Nothing is asserted apart from the hashes and the clean exit (exit code 1 otherwise); the
numbers go to bench/README.md by hand, with the load average of the machine at the time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MB = 1024 * 1024
OWNER = 1001
SOURCE_NAME = "vault-bigfile-{size_mb}MB.bin"
REPO_ROOT = Path(__file__).resolve().parent.parent
HTTP_LINK = re.compile(r"(http://127\.0\.0\.1:\d+/claim/[A-Za-z0-9_-]{43})")


# -- memory --------------------------------------------------------------------------------------


def status_kb(field: str, pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds; peak per named phase."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.peaks: dict[str, int] = {}
        self._phase: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self, phase: str) -> None:
        with contextlib.suppress(OSError):  # the process may be gone
            self.peaks[phase] = max(self.peaks.get(phase, 0), status_kb("VmRSS", self.pid))

    def _run(self) -> None:
        while not self._stop.is_set():
            if (phase := self._phase) is not None:
                self._sample(phase)
            self._stop.wait(self.interval)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._sample(name)
        self._phase = name
        try:
            yield
        finally:
            self._sample(name)
            self._phase = None


# -- the source file and the baselines -----------------------------------------------------------


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
    async with aiohttp.ClientSession(timeout=timeout) as session:
        # a GET is only the landing page; a script claims with a JSON POST
        async with session.post(url, headers={"Accept": "application/json"}) as claimed:
            claimed.raise_for_status()
            download_url = (await claimed.json())["download_url"]
        resp = await session.get(download_url)
        status = resp.status
        first_byte = time.perf_counter() - started
        async for chunk in resp.content.iter_chunked(chunk_size):
            digest.update(chunk)
            size += len(chunk)
        resp.release()
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "status": status,
                "via": "POST /claim (JSON) then GET /files",
                "bytes": size,
                "sha256": digest.hexdigest(),
                "seconds": elapsed,
                "first_byte_seconds": first_byte,
                "hwm_kb": status_kb("VmHWM"),
            }
        )
    )


# -- the bot process -----------------------------------------------------------------------------


def button(tg: Any, message: dict, text_part: str) -> str:
    for text, data in tg.buttons(message):
        if text_part in text:
            return data
    raise RuntimeError(f"no button {text_part!r} in {tg.buttons(message)}")


async def becomes(tg: Any, message: dict, predicate: Any, timeout: float = 30) -> dict:
    chat_id, message_id = message["chat"]["id"], message["message_id"]

    def current() -> dict | None:
        found = [m for m in tg.messages(chat_id) if m["message_id"] == message_id]
        return found[0] if found and predicate(found[0]) else None

    return await tg.wait_until(current, timeout, f"message {message_id} to change")


async def press(tg: Any, owner: dict, message: dict, text_part: str) -> None:
    qid = await tg.press(owner, message, button(tg, message, text_part))
    await tg.wait_answer(qid, timeout=30)


async def make_link(tg: Any, owner: dict, card: dict) -> str:
    """Create link → 24h → 10 uses → Create link, with the card's buttons; the HTTP link."""
    await press(tg, owner, card, "Create link")
    step = await becomes(tg, card, lambda m: "How long" in m["text"])
    await press(tg, owner, step, "24h")
    step = await becomes(tg, card, lambda m: "How many uses" in m["text"])
    await press(tg, owner, step, "10")
    step = await becomes(tg, card, lambda m: "Protect content" in m["text"])
    await press(tg, owner, step, "Create link")
    done = await becomes(tg, card, lambda m: "t.me/" in m["text"])
    found = HTTP_LINK.search(done["text"])
    if found is None:
        raise RuntimeError(f"no HTTP claim link in {done['text']!r}")
    return found.group(1)


async def download(url: str) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.vault_bigfile", "--client", url,
        stdout=asyncio.subprocess.PIPE, cwd=REPO_ROOT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])


async def run(args: argparse.Namespace) -> int:
    from bench.process_bench import clean_env, free_port, wait_ready_http
    from tests.fakes.telegram import FakeTelegram

    size_mb = args.size_mb
    directory = Path(args.dir)
    load_before = os.getloadavg()
    started = time.perf_counter()
    source, reused = ensure_source(directory, size_mb)
    how = "reused" if reused else f"written in {time.perf_counter() - started:.1f} s"
    size = source.stat().st_size
    print(f"source {source} ({size_mb} MiB, {how})", flush=True)

    sha256sum(source)  # warm the page cache, then the baseline proper
    expected, base_s = sha256sum(source)
    print(f"sha256sum: {base_s:.2f} s", flush=True)
    py_hash, py_s = await asyncio.to_thread(hashlib_sha256, source)
    assert py_hash == expected
    print(f"hashlib: {py_s:.2f} s", flush=True)

    data = Path(tempfile.mkdtemp(prefix="opsdeck-bigfile-data-", dir=directory))
    async with FakeTelegram(local_mode=True) as tg:
        port = free_port()
        env = clean_env(
            TELEGRAM_BOT_TOKEN=tg.token,
            TELEGRAM_API_URL=tg.base_url,
            TELEGRAM_API_IS_LOCAL="true",
            OPSDECK_OWNER_IDS=str(OWNER),
            OPSDECK_DATA_DIR=str(data),
            HTTP_PORT=str(port),
            PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        )
        if not args.fresh:
            migrate = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "migrate", env=env, cwd=data,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            if await migrate.wait() != 0:
                print("python -m bot migrate failed")
                return 1
        owner = tg.user(OWNER, "Olga")
        log_path = data / "bot.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", env=env, cwd=data, stdout=log, stderr=log
            )
        sampler = RssSampler(proc.pid)
        sampler.start()
        try:
            with sampler.phase("start"):
                await wait_ready_http(port, proc, timeout=120)
            with sampler.phase("idle"):
                await asyncio.sleep(2)

            with sampler.phase("ingest"):
                since = tg.mark()
                started = time.perf_counter()
                await tg.send_local_file(owner, source, file_name="bigfile.bin")
                card = await tg.wait_for_message(OWNER, "file #", timeout=1800, since=since)
                ingest_s = time.perf_counter() - started
            print(f"ingest: {ingest_s:.2f} s", flush=True)
            short_hash = expected[:12]
            ingest_ok = short_hash in card["text"]
            if not ingest_ok:
                print(f"INGEST: the card does not show sha256 {short_hash}…:\n{card['text']}")

            with sampler.phase("link"):
                url = await make_link(tg, owner, card)

            with sampler.phase("download"):
                client = await download(url)
            download_ok = client["sha256"] == expected and client["bytes"] == size
            print(f"download: {client['seconds']:.2f} s", flush=True)

            hwm_kb = status_kb("VmHWM", proc.pid)
            threads = status_kb("Threads", proc.pid)
        finally:
            sampler.stop()
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                code = await proc.wait()
    load_after = os.getloadavg()

    mbps = lambda seconds: size / MB / seconds  # noqa: E731
    base, py = mbps(base_s), mbps(py_s)
    ok = {True: "yes", False: "NO"}
    peak = lambda phase: f"{sampler.peaks.get(phase, 0) / 1024:.1f} MB"  # noqa: E731
    print()
    print(f"file {size_mb} MiB, sha256 {expected[:16]}…, {os.cpu_count()} cores")
    print(
        f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
        f", after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    print("database:", "migrated by the bot at start-up" if args.fresh else "python -m bot migrate")
    print()
    rows = [
        ("sha256sum (baseline)", base_s, "-", ""),
        ("hashlib sha256", py_s, "-", ""),
        ("ingest from disk", ingest_s, peak("ingest"), ok[ingest_ok]),
        ("HTTP download", client["seconds"], peak("download"), ok[download_ok]),
    ]
    print("| step | seconds | MB/s | vs sha256sum | vs hashlib | bot peak RSS | hash ok |")
    print("|------|---------|------|--------------|------------|--------------|---------|")
    for name, seconds, rss, good in rows:
        speed = mbps(seconds)
        print(
            f"| {name} | {seconds:.2f} | {speed:.1f} | {speed / base:.2f}x | {speed / py:.2f}x "
            f"| {rss} | {good} |"
        )
    print()
    print(
        f"bot process: VmHWM {hwm_kb / 1024:.1f} MB over its whole life; peak VmRSS while "
        f"starting {peak('start')}, idle {peak('idle')}, making the link {peak('link')}; "
        f"{threads} threads; SIGTERM → exit code {code}"
    )
    print(
        f"client process: VmHWM {client['hwm_kb'] / 1024:.1f} MB; status {client['status']}"
        f" via {client['via']}; first byte after {client['first_byte_seconds'] * 1000:.0f} ms"
    )
    if code == 0:
        import shutil

        shutil.rmtree(data, ignore_errors=True)
    else:
        print(f"the bot's log: {log_path}")
    return 0 if ingest_ok and download_ok and code == 0 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "opsdeck-bigfile"))
    parser.add_argument(
        "--fresh", action="store_true", help="let the bot migrate its database at start-up"
    )
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--client-chunk", type=int, default=256 * 1024, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(client_main(args.client, args.client_chunk))
        return
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
