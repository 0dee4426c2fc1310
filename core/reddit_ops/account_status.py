"""An account's status: moving it (audited, race-safe) and what the operators are told."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.actor import Actor
from core.clock import Clock
from core.services.audit import record
from storage.reddit_models import AccountStatus, RedditAccount
from storage.repositories import reddit as repo

# Statuses a health check may turn back to active when Reddit says all is well.
RECOVERABLE = (AccountStatus.suspended, AccountStatus.auth_failed)


async def change_status(
    session: AsyncSession,
    clock: Clock,
    account: RedditAccount,
    status: str,
    reason: str | None,
    *,
    actor: Actor | None = None,
    action: str = "reddit.account.status",
    from_statuses: tuple[str, ...] | None = None,
    extra: dict[str, Any] | None = None,
) -> RedditAccount | None:
    """Move an account to `status` if it is still where we saw it; audited. None = lost race."""
    now = clock.now()
    updated = await repo.update_account(
        session,
        account.id,
        {
            "status": status,
            "status_reason": reason,
            "status_changed_at": now,
            "updated_at": now,
            **(extra or {}),
        },
        tenant_id=account.tenant_id,
        from_statuses=from_statuses or (account.status,),
    )
    if updated is not None:
        await record(
            session,
            clock,
            tenant_id=account.tenant_id,
            actor=actor,
            action=action,
            target=f"reddit_account:{account.id}",
            details={"username": account.username, "status": status, "reason": reason},
        )
    return updated


_REFUSED_PREFIX = re.compile(r"^reddit refused the login(?: for \S+?)?:\s*", re.IGNORECASE)


def status_message(username: str, status: str, reason: str | None) -> str:
    """What the operators are told when an account's status changes on its own."""
    if status == AccountStatus.suspended:
        return (
            f"⛔ u/{username} is suspended on Reddit{f' ({reason})' if reason else ''}. "
            "Its queue is paused: its queued posts wait until the account is active again."
        )
    if status == AccountStatus.auth_failed:
        # The client's error already reads "Reddit refused the login for u/x: why"; say it once.
        why = _REFUSED_PREFIX.sub("", (reason or "").strip(), count=1)
        return (
            f"🔑 Reddit refused the login for u/{username}: {why or 'unknown reason'}. "
            "Its queue is paused until the credentials are fixed (/accounts)."
        )
    if status == AccountStatus.active:
        return f"✅ u/{username} checks out fine again; its queue runs again."
    return f"u/{username} is now {status.replace('_', ' ')}{f': {reason}' if reason else ''}."
