"""Domain errors. The bot maps each to operator-facing text."""

from __future__ import annotations


class OpsdeckError(Exception):
    """Root of every error core raises on purpose. `message` is safe to show an operator."""

    def __init__(self, message: str = "", **data: object) -> None:
        super().__init__(message or self.__class__.__name__)
        self.message = message or self.__class__.__name__
        self.data = data


class NotFound(OpsdeckError):
    """The thing does not exist, or not in the caller's workspace (the two look the same)."""


class Unauthorized(OpsdeckError):
    """No valid credentials (an unknown, revoked or expired API token)."""


class Forbidden(OpsdeckError):
    """The caller's role does not allow this."""


class InvalidInput(OpsdeckError):
    """An argument or answer the operator gave is not acceptable."""


class Conflict(OpsdeckError):
    """The thing changed state before this action landed (stale button, double press)."""


class ConfigError(OpsdeckError):
    """Configuration is missing or wrong; start-up stops with `message`."""
