"""The vault: files operators send to the bot, handed out through expiring, limited-use links.

Public API for the Telegram side (none of it imports aiogram):

* `VaultService(uow, clock, blobs, config)` — ingest, get, page, stats, rename, set_nsfw,
  delete, create_link, revoke, get_link, links, access_log, record_file_id
* `ClaimService(uow, clock).claim(code, Claimer.telegram(user_id), "telegram", then=…)` →
  `ClaimResult` (`then` writes in the claim's transaction); `.record_file_id(item_id,
  file_id, file_unique_id)` after an upload
* `VaultGateway` — the HTTP door (`bot.web_claims.add_claim_routes`)
* `register_vault_jobs(registry)`, `vault_periodic_specs(config)` — housekeeping jobs
* `deep_link(bot_username, code)`, `http_link(public_base_url, code)`, `claimer_text`,
  `operator_text` — words and URLs for messages
"""

from core.vault.claims import ClaimService, claim
from core.vault.codes import deep_link, http_link, is_well_formed
from core.vault.config import VaultConfig
from core.vault.errors import Gone, NotDownloadable
from core.vault.gateway import BatchEntry, Download, SignedDownload, VaultGateway
from core.vault.jobs import register_vault_jobs, vault_periodic_specs
from core.vault.service import VaultService, human_size
from core.vault.texts import claimer_text, operator_text
from core.vault.types import (
    Claimer,
    ClaimResult,
    IngestResult,
    IngestSource,
    KindStats,
    NewLink,
    Page,
    VaultStats,
)
from storage.vault_models import (
    ClaimerKind,
    ClaimOutcome,
    VaultClaim,
    VaultItem,
    VaultKind,
    VaultLink,
)

__all__ = [
    "BatchEntry",
    "ClaimOutcome",
    "ClaimResult",
    "ClaimService",
    "Claimer",
    "ClaimerKind",
    "Download",
    "Gone",
    "IngestResult",
    "IngestSource",
    "KindStats",
    "NewLink",
    "NotDownloadable",
    "Page",
    "SignedDownload",
    "VaultClaim",
    "VaultConfig",
    "VaultGateway",
    "VaultItem",
    "VaultKind",
    "VaultLink",
    "VaultService",
    "VaultStats",
    "claim",
    "claimer_text",
    "deep_link",
    "http_link",
    "human_size",
    "is_well_formed",
    "operator_text",
    "register_vault_jobs",
    "vault_periodic_specs",
]
