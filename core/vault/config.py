"""The vault's limits. Built from `VaultSettings` by the factory; defaults suit tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.ratelimit import Limit

MIN_LINK_LIFETIME_SECONDS = 60
MAX_LINK_LIFETIME_SECONDS = 365 * 24 * 3600
MAX_LINK_USES = 1_000_000
MAX_AUTO_DELETE_SECONDS = 2880 * 60  # 48 hours, Telegram's limit on deleting bot messages
MIN_AUTO_DELETE_SECONDS = 60


@dataclass(frozen=True, slots=True)
class VaultConfig:
    max_file_bytes: int = 2 * 1024**3
    """Larger files are refused at ingest, with or without bytes."""
    operator_max_uploads_per_hour: int = 0
    """Files one operator may add in any sliding hour (0 = no cap). Counted in the database."""
    operator_max_bytes_per_day: int = 0
    """Bytes one operator may add in any sliding 24 hours (0 = no cap). Counted in the database."""
    download_ttl_seconds: int = 600
    """How long a signed `/files/<token>` URL stays valid."""
    claim_log_retention_days: int = 90
    """`vault.expire_links` prunes access-log rows and finished links older than this."""
    blob_sweep_age_seconds: int = 6 * 3600
    """`vault.sweep_blobs` removes half-written uploads older than this."""
    claim_failure_limit: int = 10
    claim_failure_window_seconds: float = 900.0
    """Failed Telegram claims (malformed or unknown codes) allowed per user per window; past
    it, `/start <code>` is refused without looking the code up (counted in the database)."""

    @property
    def claim_failures(self) -> Limit:
        return Limit(self.claim_failure_limit, self.claim_failure_window_seconds)

    @classmethod
    def from_settings(cls, vault_settings: Any) -> VaultConfig:
        """From `core.settings.VaultSettings` (or anything with the same attributes)."""
        return cls(
            max_file_bytes=int(vault_settings.max_file_bytes),
            claim_failure_limit=int(vault_settings.claim_failure_limit),
            claim_failure_window_seconds=float(vault_settings.claim_failure_window_seconds),
            operator_max_uploads_per_hour=int(
                getattr(vault_settings, "operator_max_uploads_per_hour", 0)
            ),
            operator_max_bytes_per_day=int(
                getattr(vault_settings, "operator_max_bytes_per_day", 0)
            ),
        )
