"""Reddit down or slow while a post is submitted (issue 6 item 3): the submit job backs off
(raises a retryable error, never a permanent one), the account is not paused, and once Reddit
answers again the post is published exactly once."""

from __future__ import annotations

import pytest

from core.jobs.registry import PermanentFailure
from core.reddit_ops.submit import submit_post
from storage.reddit_models import AccountStatus, PostStatus
from tests.faults.test_faults import FAULTS
from tests.integration import test_reddit_helpers as helpers
from tests.integration.test_reddit_helpers import RedditWorld

vt, fake, world = helpers.vt, helpers.fake, helpers.world  # fixtures


@pytest.mark.parametrize(
    ("where", "fault"),
    [
        ("submit", {"status": 503}),
        ("submit", {"status": 502}),
        ("submit", {"status": 500}),
        ("token", {"status": 503}),
        ("*", {"status": 504}),
        ("submit", {"status": 429, "retry_after": 2}),
        ("submit", {"hang": 3}),  # slow: Reddit never handled it, the answer is a late 504
        ("submit", {"hang": 3, "process": True}),  # slow: Reddit made the post, answered late
    ],
)
async def test_outage_backs_off_and_never_pauses_or_doubles(
    world: RedditWorld, where: str, fault: dict
) -> None:
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id, title="Through the outage")
    times = 1 if "hang" in fault else 2
    world.fake.queue_error(where, times=times, **fault)
    FAULTS[f"reddit {where} {fault}"] += times

    attempt, outcome = 1, None
    while outcome is None:
        try:
            outcome = await world.run_job(submit_post, job_id, attempt=attempt)
        except PermanentFailure as exc:  # pragma: no cover - the failure we look for
            raise AssertionError(f"an outage failed the post for good: {exc}") from exc
        except Exception:  # retryable: the engine backs off and runs it again
            account = await world.account(account_id)
            assert account.status == AccountStatus.active, account.status
            world.vt.advance(600)
            attempt += 1
            assert attempt <= 5, "still failing after the outage ended"

    assert world.fake.count_posts(title="Through the outage") == 1
    assert (await world.post(post_id)).status == PostStatus.published
    assert (await world.account(account_id)).status == AccountStatus.active


def teardown_module() -> None:
    print("\nreddit faults injected:")
    for fault, n in FAULTS.items():
        if fault.startswith("reddit"):
            print(f"  {fault}: {n}")
