"""The HTTP doors as an attacker sees them: metrics off the public port (or behind a bearer
token where one port must do), no version in `Server`, and a webhook body nested 100k deep
answered 400 without a traceback."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import SecretStr

from core.errors import ConfigError
from core.settings import MetricsSettings
from tests.e2e.conftest import Harness

# Raw request targets, sent byte for byte (a client library would normalise some of them).
PATH_TRICKS = [
    "/metrics",
    "/%6detrics",
    "/%6D%65trics",
    "//metrics",
    "/METRICS",
    "/Metrics",
    "/metrics/",
    "/./metrics",
    "/x/../metrics",
    "/metrics;x",
    "/metrics?x=1",
    "/metrics%00",
    "/metrics%2f",
    "http://127.0.0.1/metrics",
]
TOKEN = "metrics-token-0123456789abcdef"


async def raw_get(
    port: int, target: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request over a plain socket; (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    method = "POST" if body is not None else "GET"
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 15)
    writer.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, rest


def assert_no_version(headers: dict[str, str]) -> None:
    server = headers.get("server", "")
    assert "aiohttp" not in server.lower() and "python" not in server.lower(), server
    assert not any(ch.isdigit() for ch in server), server


async def test_metrics_live_on_their_own_listener_and_never_on_the_public_port(
    app: Harness,
) -> None:
    s = app.app.settings
    assert not s.metrics.on_http_port and app.app.metrics_port
    for target in PATH_TRICKS:
        status, headers, body = await raw_get(s.http.port, target)
        assert status in (400, 404), (target, status)
        assert b"opsdeck_" not in body, target
        assert_no_version(headers)
    status, headers, body = await raw_get(app.app.metrics_port, "/metrics")
    assert status == 200 and b"opsdeck_build_info" in body
    assert_no_version(headers)
    # the public port's other doors carry no version either, malformed requests included
    for target in ("/healthz", "/readyz", "/nowhere", "/claim/x", "/ bad", "/\x00"):
        _, headers, _ = await raw_get(s.http.port, target)
        assert_no_version(headers)


async def test_a_metrics_token_guards_the_separate_listener_too(start_app, monkeypatch) -> None:
    monkeypatch.setenv("METRICS_TOKEN", TOKEN)
    app = await start_app()
    port = app.app.metrics_port
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
        status, got, body = await raw_get(port, "/metrics", headers)
        assert status == 401 and b"opsdeck_" not in body, headers
        assert_no_version(got)
    status, _, body = await raw_get(port, "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and b"opsdeck_build_info" in body


async def test_one_port_mode_needs_the_bearer_token(start_app, monkeypatch) -> None:
    monkeypatch.setenv("METRICS_ON_HTTP_PORT", "true")
    monkeypatch.setenv("METRICS_TOKEN", TOKEN)
    app = await start_app()
    port = app.app.settings.http.port
    assert app.app.metrics_port is None  # no second listener
    for target in PATH_TRICKS:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
            status, got, body = await raw_get(port, target, headers)
            assert status in (400, 401, 404), (target, headers, status)
            assert b"opsdeck_" not in body, (target, headers)
            assert_no_version(got)
    status, _, body = await raw_get(port, "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and b"opsdeck_build_info" in body


def test_one_port_mode_refuses_to_start_without_a_token(tmp_path, monkeypatch) -> None:
    from tests.e2e.conftest import make_settings
    from tests.fakes.telegram import FakeTelegram

    settings = make_settings(tmp_path, FakeTelegram())
    settings.metrics = MetricsSettings(_env_file=None, on_http_port=True)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        settings.require_runtime()
    settings.metrics.token = SecretStr("short")
    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        settings.require_runtime()
    settings.metrics.token = SecretStr(TOKEN)
    settings.require_runtime()


async def test_a_webhook_body_nested_100k_deep_is_a_400_without_a_traceback(
    start_app, caplog
) -> None:
    app = await start_app(webhook=True)
    s = app.app.settings
    secret = {"X-Telegram-Bot-Api-Secret-Token": "e2e-secret-token"}
    path = "/telegram/webhook"
    caplog.set_level(logging.INFO)
    for body in (
        b"[" * 100_000 + b"]" * 100_000,
        b'{"update_id": 1, "message": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001,
        b"[" * 100_000,  # never closed
    ):
        status, headers, answer = await raw_get(s.http.port, path, secret, body)
        assert status == 400, answer[:200]
        assert b"Traceback" not in answer and b"RecursionError" not in answer
        assert_no_version(headers)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    # a genuine update still goes through
    status, _, _ = await raw_get(
        s.http.port,
        path,
        secret,
        b'{"update_id": 7, "message": {"message_id": 1, "date": 1, "chat": {"id": 5, '
        b'"type": "private"}, "from": {"id": 5, "is_bot": false, "first_name": "A"}, '
        b'"text": "hi"}}',
    )
    assert status == 200
