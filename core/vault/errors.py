"""Vault-specific errors (all `OpsdeckError`s, so the bot's mapping to text applies)."""

from __future__ import annotations

from core.errors import OpsdeckError


class Gone(OpsdeckError):
    """The link or file existed but can no longer be handed out (HTTP 410)."""


class NotDownloadable(OpsdeckError):
    """The file exists only in Telegram; there are no bytes to serve over HTTP (HTTP 409)."""
