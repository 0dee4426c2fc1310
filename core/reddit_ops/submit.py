"""The `reddit.submit` job: publish one queued post, exactly once.

1. *Claim* (one transaction, the account row locked): skip posts that were cancelled or
   already published; wait (RetryLater) while the account is not active, while another post
   of the account or to the subreddit is being sent, or while pacing says "not yet" (the post
   moves and says why); then mark the post `publishing`.
2. *Look first* when an earlier attempt may have reached Reddit (the post was left
   `publishing`, this is a retry, or Reddit accepted an image post we have not seen): a post
   with the same title in the same subreddit since the first attempt means it is published.
3. *Send*: dry-run accounts are validated (pre-flight) and never send; self and link posts go
   through `/api/submit`, image posts through the media lease and are then found in
   `/user/{me}/submitted`.
4. *Outcome*: success stores fullname + permalink and tells the operators. `RATELIMIT`
   reschedules at Reddit's time (not a failure). Rule errors fail the post at once with the
   reason in plain words. A refused login or a suspension pauses the account and leaves the
   post queued. An unknown outcome looks again and otherwise retries with backoff, never
   sending blindly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.jobs.context import JobContext
from core.jobs.registry import PermanentFailure, RetryLater
from core.reddit import (
    RedditAPIError,
    RedditAuthError,
    RedditClient,
    RedditError,
    RedditForbidden,
    RedditMediaError,
    RedditNotFound,
    RedditRateLimited,
    RedditUnavailable,
    RedditUnknownOutcome,
    RedditValidationError,
    Submission,
)
from core.reddit.thread_models import Comment
from core.reddit_ops.account_status import change_status, status_message
from core.reddit_ops.clients import RedditClients
from core.reddit_ops.comment_submit import dry_run_problem, look_for_comment, send_comment
from core.reddit_ops.common import DEP_BLOBS, DEP_CLIENTS, job_uow, short
from core.reddit_ops.fate import removal_words
from core.reddit_ops.pacing import PacingDecision
from core.reddit_ops.post_views import draft_of
from core.reddit_ops.preflight import preflight
from core.reddit_ops.slots import plan_slot
from core.services.audit import record
from storage.blobs.errors import BlobNotFound, BlobStoreError
from storage.reddit_models import AccountStatus, PostKind, PostStatus, RedditAccount, RedditPost
from storage.repositories import reddit as repo

log = logging.getLogger(__name__)

# While the account is not active the post waits; resuming the account wakes it earlier.
ACCOUNT_WAIT_SECONDS = 900
# Another post of the account (or to the subreddit) is being sent: look again shortly.
BUSY_WAIT_SECONDS = 30
# A post left "publishing" longer than this no longer blocks the account's other posts.
IN_FLIGHT_WINDOW = timedelta(hours=1)
# How far back (beyond the first attempt) a lookup accepts a post with the same title.
LOOKUP_SLACK_SECONDS = 600
# A job that runs this much before the post's time waits for it.
EARLY_TOLERANCE = timedelta(seconds=5)
DRY_RUN_PREFIX = "t3_dryrun_"
DRY_RUN_PREFIX_COMMENT = "t1_dryrun_"


class _PostFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class _Claimed:
    post: RedditPost
    account: RedditAccount
    look_first: bool


async def submit_post(ctx: JobContext) -> dict[str, Any]:
    """`reddit.submit` (payload `post_id`)."""
    post_id = int(ctx.payload["post_id"])
    claimed = await _claim(ctx, post_id)
    if isinstance(claimed, dict):
        return claimed
    post, account = claimed.post, claimed.account
    try:
        if account.is_dry_run:
            return await _dry_run(ctx, post, account)
        clients: RedditClients = ctx.dep(DEP_CLIENTS)
        client = await clients.client(account)
        if client is None:  # has_credentials said otherwise a moment ago
            raise _PostFailed("NO_CREDENTIALS", f"u/{account.username} has no credentials")
        if claimed.look_first:
            found = await _look(client, post, ctx.clock.now())
            if found is not None:
                return await _published(ctx, client, post, account, found, how="found")
            if post.reddit_accepted:
                return await _still_invisible(ctx, post, account)
        return await _send(ctx, client, post, account)
    except _PostFailed as exc:
        return await _fail(ctx, post, account, exc.code, exc.message)


# == claim =======================================================================================


async def _claim(ctx: JobContext, post_id: int) -> _Claimed | dict[str, Any]:
    """One write: check the post, the account and pacing, then mark the post publishing.
    A wait (RetryLater) is raised after the write committed what it noted on the post."""
    now = ctx.clock.now()
    wait: RetryLater | None = None
    async with job_uow(ctx).write() as session:
        post = await repo.get_post(session, post_id, ctx.tenant_id)
        if post is None:
            return {"skipped": "the post no longer exists"}
        if post.job_id is not None and post.job_id != ctx.job_id:
            return {"skipped": f"post #{post_id} is run by job #{post.job_id}"}
        runnable = (PostStatus.queued, PostStatus.pending_approval, PostStatus.publishing)
        if post.status not in runnable:
            return {"skipped": f"post #{post_id} is {post.status}"}
        account = await repo.get_account(session, post.account_id, ctx.tenant_id, for_update=True)
        if account is None:
            return {"skipped": "the account was removed"}
        # A post left "publishing" may be on Reddit already: it is looked for before anything
        # else, and it kept the account's other posts waiting meanwhile (no pacing re-check).
        # A retry (attempt > 1) of a post that went back to the queue looks too, and keeps
        # pacing like a first attempt.
        unsure = post.status == PostStatus.publishing or post.reddit_accepted
        look_first = unsure or ctx.attempt > 1
        claimed = None
        if account.status != AccountStatus.active:
            text = (
                f"u/{account.username} is {account.status.replace('_', ' ')}; "
                "the post waits until the account is active again"
            )
            await repo.update_post(
                session,
                post.id,
                {
                    "last_error_code": f"ACCOUNT_{account.status.upper()}",
                    "last_error_message": text,
                    "updated_at": now,
                },
            )
            wait = RetryLater(ACCOUNT_WAIT_SECONDS, text)
        elif (
            not unsure
            and post.scheduled_for is not None
            and post.scheduled_for - now > EARLY_TOLERANCE
        ):
            wait = RetryLater((post.scheduled_for - now).total_seconds(), "not due yet")
        else:
            if not unsure:
                wait = await _wait_for_turn(session, post, account, now)
            if wait is None:
                values: dict[str, Any] = {
                    "status": PostStatus.publishing,
                    "job_id": ctx.job_id,
                    "attempted_at": post.attempted_at or now,
                    "updated_at": now,
                }
                claimed = await repo.update_post(session, post.id, values, from_statuses=runnable)
    if wait is not None:
        raise wait
    if claimed is None:
        return {"skipped": f"post #{post_id} changed meanwhile"}
    return _Claimed(claimed, account, look_first)


async def _wait_for_turn(
    session: Any, post: RedditPost, account: RedditAccount, now: datetime
) -> RetryLater | None:
    """Why this post may not go now (one at a time, and pacing kept), or None."""
    busy = await repo.in_flight(
        session, since=now - IN_FLIGHT_WINDOW, exclude_post_id=post.id, account_id=account.id
    )
    busy += await repo.in_flight(
        session,
        since=now - IN_FLIGHT_WINDOW,
        exclude_post_id=post.id,
        tenant_id=account.tenant_id,
        subreddit_key=post.subreddit_key,
    )
    if busy:
        return RetryLater(BUSY_WAIT_SECONDS, "another post is being sent; this one goes next")
    decision: PacingDecision = await plan_slot(
        session,
        account,
        subreddit=post.subreddit,
        desired=now,
        include_planned=False,
        exclude_post_id=post.id,
        lock=True,
    )
    if not decision.moved:
        return None
    await repo.update_post(
        session,
        post.id,
        {
            "scheduled_for": decision.scheduled_for,
            "pacing_note": decision.reason,
            "updated_at": now,
        },
    )
    wait = (decision.scheduled_for - now).total_seconds()
    return RetryLater(wait, f"moved to keep pacing: {decision.reason}")


# == sending =====================================================================================


async def _look(
    client: RedditClient, post: RedditPost, now: datetime
) -> Submission | Comment | None:
    """The post (or comment) on Reddit, if an earlier attempt published it."""
    first = post.attempted_at or now
    within = max(3600.0, (now - first).total_seconds() + LOOKUP_SLACK_SECONDS)
    if post.kind == PostKind.comment:
        return await look_for_comment(client, post, within)
    return await client.recent_submission(post.title, post.subreddit, within_seconds=within)


async def _send(
    ctx: JobContext, client: RedditClient, post: RedditPost, account: RedditAccount
) -> dict[str, Any]:
    try:
        if post.kind == PostKind.comment:
            fullname, permalink = await send_comment(client, post)
        elif post.kind == PostKind.image:
            data, name, mime = await _image_bytes(ctx, post)
            result = await client.submit_image(
                post.subreddit,
                post.title,
                data,
                filename=name,
                mimetype=mime,
                flair_id=post.flair_id,
                flair_text=post.flair_text,
                nsfw=post.nsfw,
                spoiler=post.spoiler,
                sendreplies=post.send_replies,
            )
            permalink = result.permalink or result.url
            fullname = result.fullname
        else:
            result = await client.submit(
                post.subreddit,
                post.kind,
                post.title,
                text=post.body if post.kind == PostKind.self else None,
                url=post.url if post.kind == PostKind.link else None,
                flair_id=post.flair_id,
                flair_text=post.flair_text,
                nsfw=post.nsfw,
                spoiler=post.spoiler,
                sendreplies=post.send_replies,
            )
            permalink = result.url
            fullname = result.fullname
    except RedditRateLimited as exc:
        return await _rate_limited(ctx, post, account, exc)
    except RedditValidationError as exc:
        raise _PostFailed(exc.reason, exc.message) from exc
    except RedditAPIError as exc:
        raise _PostFailed(exc.code, exc.message) from exc
    except RedditNotFound as exc:
        raise _PostFailed("NOT_FOUND", exc.message) from exc
    except RedditMediaError as exc:
        raise _PostFailed(exc.code or "MEDIA", exc.message) from exc
    except RedditAuthError as exc:
        return await _account_down(ctx, post, account, AccountStatus.auth_failed, exc.message)
    except RedditForbidden as exc:
        return await _forbidden(ctx, client, post, account, exc)
    except RedditUnknownOutcome as exc:
        return await _unknown_outcome(ctx, client, post, account, exc)
    except RedditUnavailable:
        # Nothing reached Reddit (the client raises UnknownOutcome when something may have):
        # back to queued; the retry still looks first because its attempt number is > 1.
        await _update(ctx, post, {"status": PostStatus.queued}, from_publishing=True)
        raise
    if not fullname:
        unclear = RedditUnknownOutcome("Reddit did not say which post it became", accepted=True)
        return await _unknown_outcome(ctx, client, post, account, unclear)
    return await _published_values(
        ctx, client, post, account, fullname, _absolute(permalink), ctx.clock.now(), how="sent"
    )


async def _image_bytes(ctx: JobContext, post: RedditPost) -> tuple[bytes, str, str]:
    key, name, mime = post.image_blob_key, post.image_name, post.image_mime
    if post.vault_item_id is not None:
        async with job_uow(ctx).read() as session:
            image = await repo.vault_image(session, post.tenant_id, post.vault_item_id)
        if image is None or image.blob_key is None:
            raise _PostFailed("IMAGE_MISSING", "the image was deleted from the vault")
        key, name, mime = image.blob_key, image.name, image.mime
    if key is None:
        raise _PostFailed("IMAGE_MISSING", "the post has no image")
    blobs = ctx.dep(DEP_BLOBS)
    try:
        async with await blobs.open_range(key) as reader:
            data = await reader.read_all()
    except BlobNotFound as exc:
        raise _PostFailed("IMAGE_MISSING", "the image's bytes are no longer stored") from exc
    except BlobStoreError as exc:
        raise RedditUnavailable(f"the image could not be read: {exc}") from exc
    return data, name or "image", mime or "image/png"


async def _dry_run(ctx: JobContext, post: RedditPost, account: RedditAccount) -> dict[str, Any]:
    """Validate everything, send nothing, and say so clearly."""
    client = None
    clients: RedditClients | None = ctx.deps.get(DEP_CLIENTS)
    if clients is not None and account.has_credentials:
        client = await clients.client(account)
    if post.kind == PostKind.image:
        await _image_bytes(ctx, post)  # the image must be there, as for a real post
    warnings = ""
    try:
        if post.kind == PostKind.comment:
            problem = await dry_run_problem(client, post)
            if problem:
                raise _PostFailed("DRY_RUN_PREFLIGHT", f"{problem} (dry run)")
        else:
            report = await preflight(client, draft_of(post))
            if report.errors:
                raise _PostFailed(
                    "DRY_RUN_PREFLIGHT", "; ".join(f.text for f in report.errors) + " (dry run)"
                )
            warnings = "".join(f"\n! {f.text}" for f in report.warnings)
    except RedditAuthError as exc:
        return await _account_down(ctx, post, account, AccountStatus.auth_failed, exc.message)
    fullname = (
        f"{DRY_RUN_PREFIX_COMMENT if post.kind == PostKind.comment else DRY_RUN_PREFIX}{post.id}"
    )
    now = ctx.clock.now()
    async with job_uow(ctx).write() as session:
        updated = await repo.update_post(
            session,
            post.id,
            {
                "status": PostStatus.published,
                "fullname": fullname,
                "permalink": None,
                "dry_run": True,
                "published_at": now,
                "last_error_code": None,
                "last_error_message": None,
                "updated_at": now,
            },
            from_statuses=(PostStatus.publishing,),
        )
        await _audit(session, ctx, post, "reddit.post.dry_run", {"fullname": fullname})
    if updated is None:
        return {"skipped": "the post changed meanwhile"}
    await ctx.notifier.tell_operators(
        ctx.tenant_id,
        f"🧪 DRY RUN — nothing was sent to Reddit. u/{account.username} → r/{post.subreddit}: "
        f"{_what(post)} passed every check ({fullname}).{warnings}",
    )
    return {"post_id": post.id, "fullname": fullname, "dry_run": True}


# == outcomes ====================================================================================


def _absolute(permalink: str | None) -> str | None:
    if permalink and permalink.startswith("/"):
        return f"https://www.reddit.com{permalink}"
    return permalink


async def _published(
    ctx: JobContext,
    client: RedditClient,
    post: RedditPost,
    account: RedditAccount,
    found: Submission,
    *,
    how: str,
) -> dict[str, Any]:
    when = (
        datetime.fromtimestamp(found.created_utc, UTC)
        if found.created_utc is not None
        else ctx.clock.now()
    )
    return await _published_values(
        ctx,
        client,
        post,
        account,
        found.fullname,
        found.permalink_url,
        min(when, ctx.clock.now()),
        how=how,
    )


async def _removed_at_once(client: RedditClient, fullname: str) -> str | None:
    """Reddit accepts a post and may remove it the same moment (AutoModerator, a spam
    filter): one look right after submit. Reddit's `removed_by_category`, or None when the
    post is live (or the look failed: the hourly stats refresh will tell)."""
    try:
        seen = await client.info([fullname])
    except (RedditError, ValueError) as exc:
        log.info("post %s: the look right after submit failed: %s", fullname, exc)
        return None
    return next((s.removed_by_category for s in seen if s.fullname == fullname), None)


async def _published_values(
    ctx: JobContext,
    client: RedditClient,
    post: RedditPost,
    account: RedditAccount,
    fullname: str,
    permalink: str | None,
    published_at: datetime,
    *,
    how: str,
) -> dict[str, Any]:
    # a comment's fate is not followed (no stats refresh): no look at it either
    removed_by = None if post.kind == PostKind.comment else await _removed_at_once(client, fullname)
    async with job_uow(ctx).write() as session:
        await repo.drop_history_duplicate(session, account.id, fullname, post.id)
        updated = await repo.update_post(
            session,
            post.id,
            {
                "status": PostStatus.published,
                "fullname": fullname,
                "permalink": permalink,
                "published_at": published_at,
                "reddit_accepted": False,
                "removed_by_category": removed_by,
                "removal_notified": removed_by is not None,  # told below, not again hourly
                "last_error_code": None,
                "last_error_message": None,
                "updated_at": ctx.clock.now(),
            },
            from_statuses=(PostStatus.publishing,),
        )
        await _audit(
            session,
            ctx,
            post,
            "reddit.post.published",
            {"fullname": fullname, "how": how, "removed_by": removed_by},
        )
    if updated is None:
        log.warning("post %s published as %s but its row had changed", post.id, fullname)
    note = (
        " (found after an unclear answer from Reddit; it was not sent twice)"
        if how == "found"
        else ""
    )
    if removed_by is not None:
        text = (
            f"⚠️ Published on r/{post.subreddit} as u/{account.username}, but removed "
            f"{removal_words(removed_by)} at once: {_what(post)}{note}. Others do not "
            f"see it; check the subreddit's rules or ask its moderators.\n{permalink or fullname}"
        )
    else:
        text = (
            f"✅ Published on r/{post.subreddit} as u/{account.username}: "
            f"{_what(post)}{note}\n{permalink or fullname}"
        )
    await ctx.notifier.tell_operators(ctx.tenant_id, text)
    result = {"post_id": post.id, "fullname": fullname, "permalink": permalink, "how": how}
    if removed_by is not None:
        result["removed_by"] = removed_by
    return result


async def _fail(
    ctx: JobContext, post: RedditPost, account: RedditAccount, code: str, message: str
) -> dict[str, Any]:
    """The post cannot be published as it is: failed, with the reason; operators told."""
    await _update(
        ctx,
        post,
        {
            "status": PostStatus.failed,
            "last_error_code": code[:64],
            "last_error_message": message,
            "attempted_at": None,
            "reddit_accepted": False,
        },
        from_publishing=True,
        action="reddit.post.failed",
        details={"code": code},
    )
    await ctx.notifier.tell_operators(
        ctx.tenant_id,
        f"❌ Not published on r/{post.subreddit} as u/{account.username}: "
        f"{_what(post)} — {message}. "
        + (
            "Reply again with /reply if it still fits."
            if post.kind == PostKind.comment
            else "Edit the post and queue it again."
        ),
    )
    raise PermanentFailure(f"{code}: {message}")


async def _rate_limited(
    ctx: JobContext, post: RedditPost, account: RedditAccount, exc: RedditRateLimited
) -> dict[str, Any]:
    """Reddit's RATELIMIT: the post and the whole account wait the time Reddit gave."""
    now = ctx.clock.now()
    until = now + timedelta(seconds=exc.seconds)
    async with job_uow(ctx).write() as session:
        await repo.update_account(session, account.id, {"cooldown_until": until, "updated_at": now})
        await repo.update_post(
            session,
            post.id,
            {
                "status": PostStatus.queued,
                "scheduled_for": until,
                "pacing_note": exc.message,
                "attempted_at": None,
                "last_error_code": "RATELIMIT",
                "last_error_message": exc.message,
                "updated_at": now,
            },
            from_statuses=(PostStatus.publishing,),
        )
    raise RetryLater(exc.seconds, exc.message)


async def _account_down(
    ctx: JobContext, post: RedditPost, account: RedditAccount, status: str, reason: str
) -> dict[str, Any]:
    """The account cannot post (login refused, suspended): pause it, keep the post queued."""
    now = ctx.clock.now()
    async with job_uow(ctx).write() as session:
        current = await repo.get_account(session, account.id)
        changed = None
        if current is not None and current.status != status:
            changed = await change_status(session, ctx.clock, current, status, reason)
        await repo.update_post(
            session,
            post.id,
            {
                "status": PostStatus.queued,
                "attempted_at": None,
                "last_error_code": f"ACCOUNT_{status.upper()}",
                "last_error_message": reason,
                "updated_at": now,
            },
            from_statuses=(PostStatus.publishing,),
        )
    if changed is not None:
        await ctx.notifier.tell_operators(
            ctx.tenant_id, status_message(account.username, status, reason)
        )
    raise RetryLater(
        ACCOUNT_WAIT_SECONDS,
        f"u/{account.username} is {status.replace('_', ' ')}; the post waits in the queue",
    )


async def _forbidden(
    ctx: JobContext,
    client: RedditClient,
    post: RedditPost,
    account: RedditAccount,
    exc: RedditForbidden,
) -> dict[str, Any]:
    """A 403 on submit: a suspended account pauses; anything else fails the post."""
    try:
        me = await client.me()
    except RedditError:
        me = None
    if me is not None and me.is_suspended:
        return await _account_down(
            ctx, post, account, AccountStatus.suspended, "Reddit refused a post: suspended"
        )
    raise _PostFailed("FORBIDDEN", exc.message)


async def _unknown_outcome(
    ctx: JobContext,
    client: RedditClient,
    post: RedditPost,
    account: RedditAccount,
    exc: RedditUnknownOutcome,
) -> dict[str, Any]:
    """Sent, but no clear answer: look before anything else; never resend blindly."""
    await _update(
        ctx,
        post,
        {
            "reddit_accepted": post.reddit_accepted or exc.accepted,
            "last_error_code": "UNKNOWN_OUTCOME",
            "last_error_message": exc.message,
        },
    )
    try:
        found = await _look(client, post, ctx.clock.now())
    except RedditError as look_error:
        log.info("post %s: lookup after an unknown outcome failed: %s", post.id, look_error)
        found = None
    if found is not None:
        return await _published(ctx, client, post, account, found, how="found")
    if ctx.attempt >= ctx.max_attempts:
        raise _PostFailed(
            "UNKNOWN_OUTCOME",
            "Reddit never confirmed the post and it does not show among "
            f"u/{account.username}'s posts; check the profile before queueing it again",
        )
    raise exc


async def _still_invisible(
    ctx: JobContext, post: RedditPost, account: RedditAccount
) -> dict[str, Any]:
    """Reddit accepted the post but it has not shown up: look again later, never resend."""
    if ctx.attempt >= ctx.max_attempts:
        raise _PostFailed(
            "ACCEPTED_NOT_FOUND",
            "Reddit accepted the post but it never appeared among "
            f"u/{account.username}'s posts (an image Reddit could not process, or a post "
            "removed at once); check the profile before queueing it again",
        )
    raise RedditUnknownOutcome(
        "Reddit accepted the post; it has not appeared yet, so it is looked for again later",
        accepted=True,
    )


# == helpers =====================================================================================


def _what(post: RedditPost) -> str:
    """How notifications name the post: its title, or for a comment what it answers."""
    if post.kind == PostKind.comment:
        return f"💬 comment on “{short(post.title)}”"
    return f"“{short(post.title)}”"


async def _update(
    ctx: JobContext,
    post: RedditPost,
    values: dict[str, Any],
    *,
    from_publishing: bool = False,
    action: str | None = None,
    details: dict[str, Any] | None = None,
) -> RedditPost | None:
    async with job_uow(ctx).write() as session:
        updated = await repo.update_post(
            session,
            post.id,
            {**values, "updated_at": ctx.clock.now()},
            from_statuses=(PostStatus.publishing,) if from_publishing else None,
        )
        if action is not None:
            await _audit(session, ctx, post, action, details)
    return updated


async def _audit(
    session: Any, ctx: JobContext, post: RedditPost, action: str, details: dict[str, Any] | None
) -> None:
    await record(
        session,
        ctx.clock,
        tenant_id=post.tenant_id,
        actor=None,
        action=action,
        target=f"reddit_post:{post.id}",
        details=details,
    )
