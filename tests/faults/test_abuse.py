"""Abuse (issue 6 item 4): claim-code guessing and a stranger's flood of updates.

Figures are printed (run with -s) and recorded in SECURITY.md; only correctness is asserted.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import statistics
import time

import aiohttp

from core.crypto import hash_code, new_claim_code
from core.vault.codes import CODE_LENGTH, is_well_formed
from storage.outbox_models import OutboxMessage
from storage.vault_models import VaultClaim
from tests.e2e.conftest import OPERATOR, OWNER, STRANGER, Harness

GUESSES = 20  # ten past the default per-user limit of failed claims (10 per 15 minutes)
ALPHABET = 64  # A-Z a-z 0-9 _ -


def test_claim_code_space_is_256_bits() -> None:
    codes = {new_claim_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(len(c) == CODE_LENGTH and is_well_formed(c) for c in codes)
    bits = CODE_LENGTH * math.log2(ALPHABET)
    assert bits >= 256  # 43 chars x 6 bits = 258 bits of encoding for 256 random bits
    # what is stored is a hash: a database leak does not hand out working codes
    assert all(hash_code(c) != c and c not in hash_code(c) for c in list(codes)[:10])
    # at the HTTP limit (20 guesses a minute per address), hitting one of a million live
    # codes takes 2**256 / 10**6 / 20 minutes: about 1e64 years
    years = 2**256 / 10**6 / 20 / 60 / 24 / 365
    print(
        f"\nclaim code: {bits:.0f} bits encoded (256 random); guessing one of 1e6 live "
        f"codes at 20/min/address: {years:.1e} years"
    )
    assert years > 1e60


async def test_http_claim_guesses_are_rate_limited_per_address(app: Harness) -> None:
    base = app.app.settings.public_base_url
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(25):
            guess = secrets.token_urlsafe(32)
            async with http.get(f"{base}/claim/{guess}", allow_redirects=False) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    assert int(resp.headers["Retry-After"]) >= 1
    assert statuses[:20] == [404] * 20, statuses  # unknown code
    assert statuses[20:] == [429] * 5, statuses
    print(f"\nHTTP claim guesses: 20 answered 404, then 429 (per address): {statuses}")


async def test_behind_a_proxy_the_limit_counts_the_client_not_the_proxy(
    start_app, monkeypatch
) -> None:
    """HTTP_TRUSTED_PROXY_HOPS=1: every request comes from the proxy's address; the client is
    the last X-Forwarded-For entry (the one the proxy appended). What a client writes into
    the header itself is not trusted."""
    monkeypatch.setenv("HTTP_TRUSTED_PROXY_HOPS", "1")
    app = await start_app()
    base = app.app.settings.public_base_url

    async def guesses(forwarded_for: str, n: int) -> list[int]:
        out = []
        async with aiohttp.ClientSession() as http:
            for _ in range(n):
                url = f"{base}/claim/{secrets.token_urlsafe(32)}"
                headers = {"X-Forwarded-For": forwarded_for}
                async with http.get(url, allow_redirects=False, headers=headers) as resp:
                    out.append(resp.status)
        return out

    first = await guesses("203.0.113.7", 21)
    assert first == [404] * 20 + [429]
    # another client behind the same proxy has its own allowance
    assert await guesses("198.51.100.9", 3) == [404] * 3
    # the first client claiming to be someone else in front of the proxy is still itself
    assert await guesses("192.0.2.1, 203.0.113.7", 2) == [429, 429]


async def test_telegram_start_guesses_are_rate_limited_per_user(app: Harness) -> None:
    """`/start <code>` guesses are each refused, and past the per-user limit of failed claims
    (counted in the database, so shared by every process) the code is not even looked up."""
    refusals = []
    for _ in range(11):
        reply = await app.say(STRANGER, f"/start {secrets.token_urlsafe(32)}", timeout=10)
        refusals.append(reply["text"])
    assert all("Something went wrong" not in t for t in refusals)
    assert all("does not exist" in t for t in refusals[:10]), refusals
    assert "too many attempts" in refusals[10].lower(), refusals
    # the flood rule: past the limit a stranger is told once a minute; every guess is logged
    for _ in range(GUESSES - 11):
        await app.tg.send_text(app.user(STRANGER), f"/start {secrets.token_urlsafe(32)}")
    logged = await wait_for_rows(app, VaultClaim, VaultClaim.claimer_id == str(STRANGER), GUESSES)
    assert sum(c.outcome == "denied:rate_limited" for c in logged) == GUESSES - 10
    # an answer is queued in the same write as its log row: 11 answers for 20 guesses
    queued = await wait_for_rows(app, OutboxMessage, OutboxMessage.chat_id == STRANGER, 11)
    assert len(queued) == 11
    print(f"\n/start guesses from one user: {GUESSES} logged, {len(queued)} answered")


async def wait_for_rows(app: Harness, model, where, n: int) -> list:
    """The rows of `model` matching `where` once there are at least `n` of them."""
    from sqlalchemy import select

    rows: list = []

    async def enough() -> bool:
        nonlocal rows
        async with app.app.sessionmaker() as session:
            rows = list((await session.execute(select(model).where(where))).scalars())
        return len(rows) >= n

    deadline = time.monotonic() + 15
    while not await enough():
        assert time.monotonic() < deadline, f"{len(rows)} of {n} {model.__name__} rows"
        await asyncio.sleep(0.05)
    return rows


async def post_update(http: aiohttp.ClientSession, url: str, update: dict) -> int:
    async with http.post(
        url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "e2e-secret-token"}
    ) as resp:
        return resp.status


def message(uid: int, text: str, n: int) -> dict:
    return {
        "update_id": 900_000_000 + n,
        "message": {
            "message_id": n,
            "date": int(time.time()),
            "chat": {"id": uid, "type": "private"},
            "from": {"id": uid, "is_bot": False, "first_name": "U"},
            "text": text,
            **(
                {"entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]}
                if text.startswith("/")
                else {}
            ),
        },
    }


async def operator_latencies(app: Harness, url: str, http, rounds: int, seq: int) -> list[float]:
    out = []
    for i in range(rounds):
        user = (OPERATOR, OWNER)[i % 2]
        since = app.tg.mark()
        t0 = time.monotonic()
        assert await post_update(http, url, message(user, "/help", seq + i)) == 200
        await app.tg.wait_for_message(user, "What you can do", since=since, timeout=30)
        out.append(time.monotonic() - t0)
    return out


async def test_a_strangers_flood_does_not_starve_operators(start_app) -> None:
    app = await start_app(webhook=True)
    url = app.app.settings.telegram.webhook_url
    async with aiohttp.ClientSession() as http:
        quiet = await operator_latencies(app, url, http, 10, 1)

        async def flood() -> list[int]:
            sent = []
            for n in range(500):
                text = ("/jobs", "hello", "/start x", "/operators add 1")[n % 4]
                sent.append(await post_update(http, url, message(STRANGER, text, 10_000 + n)))
            return sent

        flooding = asyncio.create_task(flood())
        await asyncio.sleep(0.05)
        loaded = await operator_latencies(app, url, http, 10, 100)
        statuses = await flooding
    await app.app.feeder.drain(30)
    assert statuses == [200] * 500
    assert len(quiet) == len(loaded) == 10  # every operator message was answered
    stranger_sends = sum(c.params.get("chat_id") == STRANGER for c in app.tg.calls("sendMessage"))
    refusals = [m for m in app.tg.messages(STRANGER) if "private operations bot" in m["text"]]
    print(
        f"\noperator /help latency, quiet: median {statistics.median(quiet) * 1000:.0f} ms, "
        f"max {max(quiet) * 1000:.0f} ms; during a 500-update stranger flood: median "
        f"{statistics.median(loaded) * 1000:.0f} ms, max {max(loaded) * 1000:.0f} ms; "
        f"stranger got {stranger_sends} replies ({len(refusals)} refusals)"
    )
