"""The account health check job (`/api/v1/me`) and the periodic fan-out per account."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.jobs.context import JobContext
from core.jobs.queue import enqueue
from core.reddit import RedditAuthError
from core.reddit_ops.account_status import RECOVERABLE, change_status, status_message
from core.reddit_ops.clients import RedditClients
from core.reddit_ops.common import DEP_CLIENTS, HEALTH_CHECK, job_uow
from core.timefmt import fmt
from storage.reddit_models import AccountStatus
from storage.repositories import reddit as repo


async def health_check(ctx: JobContext) -> dict[str, Any]:
    """`reddit.health_check` (payload `account_id`): read `/api/v1/me` and update the status.

    Suspended → `suspended`; refused login → `auth_failed`; a suspended or auth-failed account
    that checks out fine → `active`. A change pauses (or resumes) the account's queue — the
    submit job only sends for active accounts — and tells the operators. When Reddit cannot be
    reached the status is left alone and the error propagates (the engine retries later).
    """
    account_id = int(ctx.payload["account_id"])
    clients: RedditClients = ctx.dep(DEP_CLIENTS)
    uow = job_uow(ctx)
    async with uow.read() as session:
        account = await repo.get_account(session, account_id, ctx.tenant_id)
    if account is None:
        return {"skipped": "the account was removed"}
    client = await clients.client(account)
    now = ctx.clock.now()
    if client is None:
        async with uow.write() as session:
            await repo.update_account(session, account.id, {"last_check_at": now})
        return {"dry_run": True, "status": account.status}

    new_status: str | None = None
    reason: str | None = None
    values: dict[str, Any] = {"last_check_at": now}
    try:
        me = await client.me()
    except RedditAuthError as exc:
        new_status, reason = AccountStatus.auth_failed, exc.message
    else:
        if me.name and me.name.lower() != account.username_key:
            new_status = AccountStatus.auth_failed
            reason = f"these credentials log in as u/{me.name}, not u/{account.username}"
        elif me.is_suspended:
            new_status = AccountStatus.suspended
            if me.suspension_expiration_utc:
                until = datetime.fromtimestamp(me.suspension_expiration_utc, UTC)
                reason = f"until {fmt(until, 'UTC')}"
            else:
                reason = "Reddit gives no end date"
        else:
            values.update(link_karma=me.link_karma, comment_karma=me.comment_karma)
            if account.status in RECOVERABLE:
                new_status = AccountStatus.active
    changed = None
    async with uow.write() as session:
        await repo.update_account(session, account.id, values)
        if new_status is not None and new_status != account.status:
            changed = await change_status(session, ctx.clock, account, new_status, reason)
            if changed is not None and new_status == AccountStatus.active:
                await repo.wake_account_jobs(session, account.id, now)
    if changed is not None:
        await ctx.notifier.tell_operators(
            ctx.tenant_id, status_message(account.username, new_status or "", reason)
        )
    status = changed.status if changed is not None else account.status
    return {"account_id": account.id, "status": status, "changed": changed is not None}


async def fan_out(ctx: JobContext, kind: str, statuses: tuple[str, ...], **payload: Any) -> int:
    """Queue `kind` for every account (of every workspace) in `statuses`; returns how many.

    The dedupe key ties each queued job to this run, so a retried fan-out adds nothing twice.
    """
    queued = 0
    now = ctx.clock.now()
    async with job_uow(ctx).write() as session:
        accounts = await repo.accounts_with_status(session, statuses)
        for account in accounts:
            if not account.has_credentials:
                continue
            job_id = await enqueue(
                session,
                tenant_id=account.tenant_id,
                kind=kind,
                now=now,
                payload={"account_id": account.id, **payload},
                dedupe_key=f"{kind}:{account.id}:run{ctx.job_id}",
                max_attempts=3,
            )
            queued += job_id is not None
    return queued


async def health_check_all(ctx: JobContext) -> dict[str, Any]:
    """`reddit.health_check_all` (periodic): a health check for every active account."""
    return {"queued": await fan_out(ctx, HEALTH_CHECK, (AccountStatus.active,))}
