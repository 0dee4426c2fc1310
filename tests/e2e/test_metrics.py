"""`GET /metrics`: Prometheus text with the numbers of what just happened."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import Metrics
from core.vault.claims import claim
from core.vault.types import Claimer
from tests.e2e.conftest import OPERATOR, OWNER, STRANGER, Harness


async def scrape(app: Harness) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    s = app.app.settings
    url = f"http://{s.metrics.host}:{app.app.metrics_port}/metrics"  # the metrics listener
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        body = await resp.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_after_some_activity(app: Harness) -> None:
    before = await scrape(app)
    assert value(before, "opsdeck_jobs", status="queued") == 0
    assert value(before, "opsdeck_build_info", version=app.app.dispatcher["runtime"].version) == 1

    # updates: two commands and a stranger's message
    await app.say(OPERATOR, "/queue", "Queue")
    await app.say(OWNER, "/jobs", "Jobs")
    await app.say(STRANGER, "hello", "private operations bot")
    # jobs: one succeeds, one dies, two wait for approval
    ok = await app.submit_job("test.ok")
    dead = await app.submit_job("test.boom", max_attempts=1)
    await app.wait_job(ok, "succeeded")
    await app.wait_job(dead, "dead")
    for _ in range(2):
        await app.submit_job("test.ok", requires_approval=True)
    # claims: two attempts with codes that were never issued
    for code in ("not-a-code", "x" * 43):
        await claim(app.app.uow, app.clock, code, Claimer.telegram(STRANGER))
    # a Telegram 429 that the retry middleware waits out
    app.tg.fail_next("getWebhookInfo", 429, retry_after=1)
    await app.app.bot.get_webhook_info()
    # Reddit told us the budget of one app id
    app.app.reddit_clients.budgets.get("opsdeckapp01").update(
        {"X-Ratelimit-Remaining": "93.0", "X-Ratelimit-Used": "7", "X-Ratelimit-Reset": "300"}
    )

    after = await scrape(app)
    assert value(after, "opsdeck_updates_total", type="message", outcome="handled") >= 3
    assert value(after, "opsdeck_update_handling_seconds_count", type="message") >= 3
    assert value(after, "opsdeck_jobs", status="succeeded") == 1
    assert value(after, "opsdeck_jobs", status="dead") == 1
    assert value(after, "opsdeck_jobs", status="pending_approval") == 2
    assert (
        value(after, "opsdeck_job_duration_seconds_count", kind="test.ok", status="succeeded") == 1
    )
    assert value(after, "opsdeck_job_duration_seconds_count", kind="test.boom", status="dead") == 1
    assert value(after, "opsdeck_vault_claims_total", outcome="denied:malformed") == 1
    assert value(after, "opsdeck_vault_claims_total", outcome="denied:unknown") == 1
    assert value(after, "opsdeck_telegram_retry_after_total") == 1
    assert value(after, "opsdeck_reddit_rate_remaining", client_id="opsdeckapp01") == 93


async def test_each_app_has_its_own_registry(app: Harness) -> None:
    # two instruments sets in one process must not collide on the global default registry
    one = Metrics(app.app.uow, version="a")
    two = Metrics(app.app.uow, version="b")
    assert one.registry is not two.registry
    assert b"opsdeck_build_info" in await two.render()
