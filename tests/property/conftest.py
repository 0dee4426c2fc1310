"""Reuse the end-to-end harness (real app over HTTP, fake Telegram)."""

from tests.e2e.conftest import app, start_app, tg  # noqa: F401
