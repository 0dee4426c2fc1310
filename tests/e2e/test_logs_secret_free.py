"""A full end-to-end run with every logger at DEBUG (but the database drivers' statement and
row dumps, which setup_logging keeps out), through the real logging set-up (JSON):
no bot token, webhook secret, OPSDECK_SECRET_KEY, Reddit password or app secret, claim code
or signed download token may appear; records carry the update id or the job id."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import aiohttp
import pytest

from bot.logs import DATA_LOGGERS, setup_logging
from core.settings import RedditSettings
from tests.e2e import conftest
from tests.e2e.conftest import OPERATOR, OWNER, STRANGER, Harness
from tests.e2e.test_reddit_accounts import CLIENT_ID, CLIENT_SECRET, PASSWORD, connect
from tests.fakes.reddit import FakeReddit

try:  # the vault's chat flow, when its handlers are in this checkout
    from tests.e2e.test_vault_in_chat import PNG, make_link, upload
except ImportError:  # pragma: no cover - depends on what has landed
    upload = None

FILES = "/files/"
job_log = logging.getLogger("tests.e2e.job")


def logging_kind(registry) -> None:
    async def talk(ctx):
        job_log.info("working on it")
        return None

    registry.register("test.talk", talk)


@pytest.fixture
def captured(monkeypatch) -> Iterator[io.StringIO]:
    """The app's own log pipeline (setup_logging, JSON) into a buffer, every logger at DEBUG."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging("DEBUG", as_json=True)
    monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    # setup_logging keeps the database drivers' statement and row dumps out at any level
    for name in DATA_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
    saved = {}
    for name in [*logging.root.manager.loggerDict, "aiogram", "aiohttp", "apscheduler"]:
        if name.startswith(DATA_LOGGERS):
            continue
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(logging.DEBUG)
    yield stream
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)
    root.handlers[:], root.level = saved_handlers, saved_level


@pytest.fixture
async def reddit() -> Iterator[FakeReddit]:
    async with FakeReddit() as fake:
        yield fake


async def test_a_full_run_logs_no_secret(captured: io.StringIO, start_app, reddit) -> None:
    app: Harness = await start_app(
        webhook=True,
        registrars=(conftest.test_kinds, logging_kind),
        reddit=RedditSettings(_env_file=None, oauth_url=reddit.oauth_url, www_url=reddit.www_url),
    )
    s = app.app.settings
    secrets = {
        "bot token": app.tg.token,
        "bot token secret part": app.tg.token.split(":", 1)[1],
        "webhook secret": s.webhook_secret(),
        "OPSDECK_SECRET_KEY": s.secret_key().decode(),
        "Reddit password": PASSWORD,
        "Reddit app secret": CLIENT_SECRET,
    }

    # operator commands, a job that needs approval, a job that dies
    await app.say(OPERATOR, "/queue", "Queue")
    await app.say(OWNER, "/status", "Opsdeck status")
    await app.say(OWNER, "/settings", "Effective settings")
    job_id = await app.submit_job("test.ok", requires_approval=True)
    note = await app.tg.wait_for_message(OPERATOR, "waits for approval")
    await app.press(OPERATOR, note, app.button(note, "Approve"))
    await app.wait_job(job_id, "succeeded")
    dead = await app.submit_job("test.boom", max_attempts=1)
    await app.wait_job(dead, "dead")
    talk = await app.submit_job("test.talk")
    await app.wait_job(talk, "succeeded")
    # a Reddit account connected in chat (password and app secret typed into the chat)
    reddit.add_account("team_main", PASSWORD, CLIENT_ID, CLIENT_SECRET, link_karma=42)
    await connect(app, OWNER, "team_main")
    checks = await app.say(OWNER, "/accounts", "team_main")
    assert checks
    # a vault upload, a claim in Telegram and one over HTTP (the landing page, then its
    # Download form: cookie, CSRF token, the redirect to the signed download)
    if upload is not None:
        card = await upload(app, OPERATOR, "photo", PNG, caption="holiday")
        code, url, _ = await make_link(app, card)
        secrets["claim code"] = code
        since = app.tg.mark()
        await app.tg.send_text(app.user(STRANGER), f"/start {code}")
        await app.tg.wait_for_message(STRANGER, "Here is your file", since=since)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(url) as page:
                html = await page.text()
                csrf = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
                secrets["claimer cookie"] = next(iter(page.cookies.values())).value
                secrets["CSRF token"] = csrf
            async with http.post(url, data={"csrf": csrf}, allow_redirects=False) as response:
                location = response.headers.get("Location", "")
            if FILES in location:
                secrets["signed download token"] = location.split(FILES, 1)[1]
                async with http.get(location) as response:
                    assert response.status == 200
    # scrape metrics too: everything an operator might run
    metrics_url = f"http://127.0.0.1:{app.app.metrics_port}/metrics"  # its own listener
    async with aiohttp.ClientSession() as http, http.get(metrics_url) as response:
        assert response.status == 200
    await app.app.stop()

    text = captured.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(lines) > 50, "the run was not captured"
    leaks = {name for name, secret in secrets.items() if secret and secret in text}
    assert not leaks, f"secrets in the log: {sorted(leaks)}"
    # the records are attributable: some carry the update id, the job's carry job id and kind
    updates = [r for r in lines if "update_id" in r and r["logger"].startswith("core.")]
    assert updates, "no record of the app's own carries an update_id"
    said = [r for r in lines if r["message"] == "working on it"]
    assert said and all(r.get("job_id") == talk and r["job_kind"] == "test.talk" for r in said)
    assert not any("update_id" in r for r in said)
    if upload is not None:
        assert "claim code" in secrets and "signed download token" in secrets
