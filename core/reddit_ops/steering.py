"""What approving, rejecting or cancelling a `reddit.submit` job does to its post.

`JobService` calls these inside the write that moved the job row (core/jobs/registry.py), so
the job and its post move together or not at all, whether the operator pressed the post's
own button or the generic job card (/jobs).
"""

from __future__ import annotations

from typing import Any

from core.errors import Conflict
from core.jobs.registry import Steer, Steering
from storage.reddit_models import PostStatus, RedditPost
from storage.repositories import audit as audit_repo
from storage.repositories import reddit as repo

# Where a post may be when its job is cancelled: it has not gone to Reddit yet.
CANCELLABLE_POST = (PostStatus.draft, PostStatus.pending_approval, PostStatus.queued)


async def _post_of(steer: Steer) -> RedditPost | None:
    post_id = (steer.job.payload or {}).get("post_id")
    if post_id is None:
        return None
    post = await repo.get_post(steer.session, int(post_id), steer.job.tenant_id)
    if post is None or post.job_id != steer.job.id:
        return None  # the post was removed, or another job runs it now
    return post


async def _move(
    steer: Steer,
    post: RedditPost,
    from_statuses: tuple[str, ...],
    values: dict[str, Any],
    action: str,
) -> None:
    moved = await repo.update_post(
        steer.session,
        post.id,
        {**values, "updated_at": steer.now},
        tenant_id=steer.job.tenant_id,
        from_statuses=from_statuses,
    )
    if moved is None:
        state = post.status.replace("_", " ")
        raise Conflict(f"Post #{post.id} is {state}; its job #{steer.job.id} was left as it was.")
    await audit_repo.add(
        steer.session,
        tenant_id=steer.job.tenant_id,
        actor_id=steer.actor.user_id,
        action=action,
        target=f"reddit_post:{post.id}",
        details={"job": steer.job.id},
        at=steer.now,
    )


async def approve(steer: Steer) -> None:
    post = await _post_of(steer)
    if post is None:
        return
    await _move(
        steer,
        post,
        (PostStatus.pending_approval,),
        {"status": PostStatus.queued},
        "reddit.post.approve",
    )


async def reject(steer: Steer) -> None:
    post = await _post_of(steer)
    if post is None:
        return
    await _move(
        steer,
        post,
        (PostStatus.pending_approval,),
        {"status": PostStatus.cancelled, "last_error_message": f"rejected by {steer.actor.label}"},
        "reddit.post.reject",
    )


async def cancel(steer: Steer) -> None:
    post = await _post_of(steer)
    if post is None or post.status in (PostStatus.cancelled, PostStatus.failed):
        return
    if post.status not in CANCELLABLE_POST:
        # publishing (an unclear answer being looked into) or published: not stoppable here
        state = post.status.replace("_", " ")
        raise Conflict(f"Post #{post.id} is {state}; it cannot be cancelled now.")
    await _move(
        steer,
        post,
        CANCELLABLE_POST,
        {
            "status": PostStatus.cancelled,
            "last_error_message": f"cancelled by {steer.actor.label}",
        },
        "reddit.post.cancel",
    )


SUBMIT_STEERING = Steering(approve=approve, reject=reject, cancel=cancel)
