"""`/settings`: the effective configuration with every secret masked, and a Reddit login test."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from core.actor import Actor, require_deployment_owner
from core.crypto import mask
from core.errors import NotFound
from core.masking import mask_urls
from core.reddit import RedditAuthError, RedditError
from core.settings import Settings
from storage.models import Role
from storage.repositories import reddit as reddit_repo
from storage.uow import UnitOfWork

_SECRET_WORDS = ("token", "secret", "password", "access_key", "key_id")
_DERIVED = {
    ("opsdeck", "secret_key"): "generated into the data dir",
    ("telegram", "webhook_secret"): "derived from the secret key",
}


def _show(concern: str, name: str, value: Any) -> str:
    if isinstance(value, SecretStr):
        return mask(value.get_secret_value())
    if value is None:
        return _DERIVED.get((concern, name), "not set")
    if any(word in name for word in _SECRET_WORDS):
        return mask(str(value))
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return mask_urls(str(value))  # any URL-valued setting: its password masked


def effective_settings(settings: Settings, actor: Actor) -> list[tuple[str, list[tuple[str, str]]]]:
    """Every concern and field as `ENV_NAME: value` pairs, secrets masked.

    The configuration is the deployment's, not a workspace's: owners in OPSDECK_OWNER_IDS only.
    """
    require_deployment_owner(actor, settings.opsdeck.owner_ids, "see the deployment's settings")
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    for concern in type(settings).model_fields:
        part = getattr(settings, concern)
        prefix = str(part.model_config.get("env_prefix", ""))
        pairs = [
            (f"{prefix}{name}".upper(), _show(concern, name, getattr(part, name)))
            for name in type(part).model_fields
        ]
        sections.append((concern.capitalize(), pairs))
    sections.append(
        (
            "Effective",
            [
                ("database", mask_urls(settings.database_url)),
                ("vault storage", mask_urls(settings.vault_storage_url)),
                ("public base URL", mask_urls(settings.public_base_url)),
                ("data dir", str(settings.data_dir)),
            ],
        )
    )
    return sections


async def check_reddit_connection(
    uow: UnitOfWork, actor: Actor, clients: Any, account_id: int
) -> str:
    """Log in as the account and read `/api/v1/me` now; a sentence saying how it went.

    Read-only: the account's status is the periodic health check's business.
    """
    actor.require(Role.owner, "test Reddit connections")
    async with uow.read() as session:
        account = await reddit_repo.get_account(session, account_id, actor.tenant_id)
    if account is None:
        raise NotFound("That Reddit account does not exist in your workspace.")
    name = f"u/{account.username}"
    client = await clients.client(account)
    if client is None:
        return f"{name}: no credentials stored — a dry-run account, nothing to test."
    try:
        me = await client.me()
    except RedditAuthError as exc:
        return f"{name}: ❌ Reddit refused the login ({mask_urls(exc.message)})."
    except RedditError as exc:
        return f"{name}: ❌ could not reach Reddit ({mask_urls(exc.message)})."
    if me.is_suspended:
        return f"{name}: ⚠️ logged in, but Reddit says the account is suspended."
    return f"{name}: ✅ connected as u/{me.name} · karma {me.link_karma}/{me.comment_karma}."
