"""Accounts: connecting (secrets sealed), roles, pause/resume/remove, health checks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.jobs.registry import RetryLater
from core.reddit import RedditUnavailable
from core.reddit_ops import HEALTH_CHECK, RemovedAccount
from core.reddit_ops.health import health_check, health_check_all
from core.reddit_ops.submit import submit_post
from storage.models import AuditEntry, Job, JobStatus
from storage.reddit_models import AccountStatus, PostStatus, RedditAccount, RedditPost
from tests.integration import test_reddit_helpers as helpers
from tests.integration.test_reddit_helpers import APP, SECRET, RedditWorld

vt, fake, world = helpers.vt, helpers.fake, helpers.world  # fixtures


async def _raw_account_row(world: RedditWorld, account_id: int) -> str:
    async with world.sessionmaker() as session:
        row = (
            await session.execute(
                text("SELECT * FROM reddit_accounts WHERE id = :id"), {"id": account_id}
            )
        ).one()
    return " ".join(str(value) for value in row)


async def test_add_seals_secrets_and_shows_them_masked(world: RedditWorld) -> None:
    async with world.services() as (accounts, _, _):
        view = await accounts.add(
            world.operator,
            username="u/Alice",
            client_id=APP,
            client_secret=SECRET,
            password="alice-pw",
            check=True,
        )
    assert view.username == "Alice"
    assert view.auth_kind == "script"
    assert view.status == AccountStatus.active
    assert not view.dry_run
    assert (view.client_secret, view.password, view.refresh_token) == (
        "•••••••• (set)",
        "•••••••• (set)",
        "not set",
    )
    raw = await _raw_account_row(world, view.id)
    assert "alice-pw" not in raw
    assert SECRET not in raw
    stored = await world.account(view.id)
    assert world.box.reveal(stored.password_enc or "") == "alice-pw"
    assert world.box.reveal(stored.client_secret_enc or "") == SECRET
    # a health check was queued with it, and the addition is audited without secrets
    (job,) = await world.jobs_of_kind(HEALTH_CHECK)
    assert job.payload == {"account_id": view.id}
    async with world.sessionmaker() as session:
        entries = (
            (await session.execute(select(AuditEntry).where(AuditEntry.action.like("reddit.%"))))
            .scalars()
            .all()
        )
    assert [e.action for e in entries] == ["reddit.account.add"]
    assert "alice-pw" not in str(entries[0].details)


async def test_refresh_token_account(world: RedditWorld) -> None:
    token = world.fake.accounts["alice"].refresh_token
    account_id = await world.add_account("alice", refresh_token=token)
    stored = await world.account(account_id)
    assert stored.auth_kind == "refresh_token"
    assert stored.password_enc is None
    assert token not in await _raw_account_row(world, account_id)
    installed = await world.add_account("bob", refresh_token="tok", client_secret="")
    assert (await world.account(installed)).client_secret_enc is None  # no secret: none stored

    result = await health_check(world.ctx(HEALTH_CHECK, {"account_id": account_id}))

    assert result["status"] == AccountStatus.active
    assert world.fake.grants[-1]["grant_type"] == "refresh_token"


async def test_no_credentials_makes_a_dry_run_account(world: RedditWorld) -> None:
    async with world.services() as (accounts, _, _):
        view = await accounts.add(world.operator, username="ghost")
    assert view.auth_kind == "none"
    assert view.dry_run and not view.has_credentials
    assert await world.jobs_of_kind(HEALTH_CHECK) == []  # nothing to check on Reddit


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"username": "no spaces allowed"}, "not a valid Reddit username"),
        ({"username": "bob", "client_id": "x y", "client_secret": "s", "password": "p"}, "app id"),
        ({"username": "bob", "client_id": APP, "password": "p"}, "secret"),
        ({"username": "bob", "client_id": APP, "client_secret": "s"}, "password"),
        ({"username": "bob", "auth_kind": "refresh_token", "client_id": APP}, "refresh token"),
        ({"username": "bob", "auth_kind": "none", "password": "p"}, "no credentials"),
        ({"username": "bob", "posts_per_day": -1}, "Posts per day"),
        ({"username": "bob", "user_agent": "curl"}, "User-Agent"),
    ],
)
async def test_add_refuses_bad_input(world: RedditWorld, kwargs: dict, words: str) -> None:
    async with world.services() as (accounts, _, _):
        with pytest.raises(InvalidInput) as caught:
            await accounts.add(world.operator, **kwargs)
    assert words in caught.value.message


async def test_same_name_twice_is_a_conflict_whatever_the_case(world: RedditWorld) -> None:
    await world.add_account("alice")
    async with world.services() as (accounts, _, _):
        with pytest.raises(Conflict):
            await accounts.add(world.operator, username="ALICE")


async def test_roles(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    async with world.services() as (accounts, _, _):
        with pytest.raises(Forbidden):
            await accounts.add(world.viewer, username="bob")
        with pytest.raises(Forbidden):
            await accounts.pause(world.viewer, account_id)
        with pytest.raises(Forbidden):
            await accounts.remove(world.operator, account_id)
        assert [a.username for a in await accounts.list(world.viewer)] == ["alice"]
        with pytest.raises(NotFound):  # another workspace sees nothing
            await accounts.get(world.stranger, account_id)
        assert await accounts.list(world.stranger) == []


async def test_pause_and_resume_are_audited_and_wake_overdue_posts(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id)
    async with world.services() as (accounts, _, _):
        paused = await accounts.pause(world.operator, account_id)
        with pytest.raises(Conflict):
            await accounts.pause(world.operator, account_id)
    assert paused.status == AccountStatus.paused

    with pytest.raises(RetryLater) as caught:
        await world.run_job(submit_post, job_id)
    assert caught.value.seconds == 900
    assert "paused" in caught.value.message
    assert (await world.post(post_id)).status == PostStatus.queued
    assert world.fake.requests_to("submit") == []

    async with world.sessionmaker() as session:  # the engine would have rescheduled it
        await session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(run_at=world.vt.now() + timedelta(minutes=15))
        )
        await session.commit()
    async with world.services() as (accounts, _, _):
        resumed = await accounts.resume(world.operator, account_id)
    assert resumed.status == AccountStatus.active
    assert (await world.job(job_id)).run_at == world.vt.now()  # overdue: runs now
    await world.run_job(submit_post, job_id)
    assert (await world.post(post_id)).status == PostStatus.published


async def test_remove_deletes_everything_and_cancels_waiting_jobs(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id)
    await world.clients.client(await world.account(account_id))  # cached client

    async with world.services() as (accounts, _, _):
        removed = await accounts.remove(world.owner, account_id)

    assert removed == RemovedAccount("alice", had_credentials=True, revoke_problem=None)
    job = await world.job(job_id)
    assert job.status == JobStatus.cancelled
    assert "removed" in (job.last_error or "")
    async with world.sessionmaker() as session:
        assert await session.get(RedditPost, post_id) is None
    assert account_id not in world.clients._clients
    assert await world.run_job(submit_post, job_id) == {"skipped": "the post no longer exists"}


async def test_remove_revokes_the_tokens_on_reddit(world: RedditWorld) -> None:
    """A script account's access token in hand, and a refresh-token account's refresh token
    (which takes its access tokens along), are revoked with the app's basic auth."""
    script = await world.add_account("alice")
    world.fake.accounts["bob"].refresh_token = "bob-refresh"
    web = await world.add_account("bob", refresh_token="bob-refresh")
    for account_id in (script, web):
        client = await world.clients.client(await world.account(account_id))
        assert client is not None
        await client.me()  # a token in hand
    alice_token = next(iter(t for t, v in world.fake._tokens.items() if v.username == "alice"))

    async with world.services() as (accounts, _, _):
        await accounts.remove(world.owner, script)
        await accounts.remove(world.owner, web)

    hints = [(r["client_id"], r["token_type_hint"]) for r in world.fake.revocations]
    assert hints == [
        (APP, "access_token"),
        (APP, "refresh_token"),
        (APP, "access_token"),
    ]
    assert world.fake.revocations[0]["token"] == alice_token
    assert world.fake.revocations[1]["token"] == "bob-refresh"
    assert world.fake._tokens == {}  # nothing granted to them works any more
    assert world.fake.accounts["bob"].refresh_token == ""
    async with world.sessionmaker() as session:
        rows = (
            await session.execute(
                select(AuditEntry.details).where(AuditEntry.action == "reddit.account.remove")
            )
        ).scalars()
        assert [d["revoked"] for d in rows] == [True, True]


async def test_a_failed_revocation_is_reported_but_keeps_no_secret(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    client = await world.clients.client(await world.account(account_id))
    assert client is not None
    await client.me()
    world.fake.queue_error("/api/v1/revoke_token", status=503, times=10)

    async with world.services() as (accounts, _, _):
        removed = await accounts.remove(world.owner, account_id)

    assert removed.username == "alice" and removed.revoke_problem is not None
    assert "503" in removed.revoke_problem
    async with world.sessionmaker() as session:
        assert await session.get(RedditAccount, account_id) is None
        details = (
            await session.execute(
                select(AuditEntry.details).where(AuditEntry.action == "reddit.account.remove")
            )
        ).scalar_one()
    assert details["revoked"] is False and "503" in details["revoke_problem"]


async def test_removing_a_dry_run_account_talks_to_no_one(world: RedditWorld) -> None:
    account_id = await world.add_account("carol", credentials=False)
    async with world.services() as (accounts, _, _):
        removed = await accounts.remove(world.owner, account_id)
    assert removed == RemovedAccount("carol", had_credentials=False, revoke_problem=None)
    assert world.fake.revocations == []


async def test_set_pacing_and_dry_run(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    async with world.services() as (accounts, _, _):
        view = await accounts.set_pacing(
            world.operator, account_id, posts_per_day=3, min_gap_minutes=45
        )
        assert (view.posts_per_day, view.min_gap_minutes) == (3, 45)
        view = await accounts.set_dry_run(world.operator, account_id, True)
        assert view.dry_run and view.marked_dry_run and view.has_credentials
        with pytest.raises(InvalidInput):
            await accounts.set_pacing(world.operator, account_id, min_gap_minutes=99999)


# -- health checks ------------------------------------------------------------------------


async def test_health_check_stores_karma_and_leaves_a_good_account_alone(
    world: RedditWorld,
) -> None:
    account_id = await world.add_account("alice")

    result = await health_check(world.ctx(HEALTH_CHECK, {"account_id": account_id}))

    assert result == {"account_id": account_id, "status": "active", "changed": False}
    account = await world.account(account_id)
    assert (account.link_karma, account.comment_karma) == (42, 7)
    assert account.last_check_at == world.vt.now()
    assert world.texts == []


async def test_suspended_account_is_paused_and_operators_told_once(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    post_id, job_id = await world.queued_post(account_id)
    world.fake.accounts["alice"].suspended = True

    result = await health_check(world.ctx(HEALTH_CHECK, {"account_id": account_id}))
    again = await health_check(world.ctx(HEALTH_CHECK, {"account_id": account_id}))

    assert result["status"] == AccountStatus.suspended and result["changed"]
    assert not again["changed"]
    account = await world.account(account_id)
    assert account.status == AccountStatus.suspended
    (told,) = world.texts
    assert "u/alice is suspended" in told and "queue is paused" in told
    # its queue is paused: the post stays queued and nothing is sent
    with pytest.raises(RetryLater, match="suspended"):
        await world.run_job(submit_post, job_id)
    assert (await world.post(post_id)).status == PostStatus.queued
    assert world.fake.requests_to("submit") == []

    # the suspension ends: a check turns the account active again and says so
    world.fake.accounts["alice"].suspended = False
    result = await health_check(world.ctx(HEALTH_CHECK, {"account_id": account_id}))
    assert result["status"] == AccountStatus.active
    assert "fine again" in world.texts[-1]


async def test_invalid_grant_is_auth_failed(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    world.fake.accounts["alice"].password = "changed-on-reddit"

    result = await health_check(world.ctx(HEALTH_CHECK, {"account_id": account_id}))

    assert world.fake.requests_to("token")[-1].status == 200  # Reddit's 200 invalid_grant
    assert result["status"] == AccountStatus.auth_failed
    account = await world.account(account_id)
    assert "wrong username or password" in (account.status_reason or "")
    (told,) = world.texts
    assert "refused the login for u/alice" in told

    # new credentials make it active again
    async with world.services() as (accounts, _, _):
        view = await accounts.set_credentials(
            world.operator,
            account_id,
            client_id=APP,
            client_secret=SECRET,
            password="changed-on-reddit",
            check=False,
        )
    assert view.status == AccountStatus.active
    result = await health_check(world.ctx(HEALTH_CHECK, {"account_id": account_id}))
    assert result["status"] == AccountStatus.active and not result["changed"]


async def test_credentials_of_another_account_are_auth_failed(world: RedditWorld) -> None:
    bobs_token = world.fake.accounts["bob"].refresh_token
    account_id = await world.add_account("alice", refresh_token=bobs_token)

    await health_check(world.ctx(HEALTH_CHECK, {"account_id": account_id}))

    account = await world.account(account_id)
    assert account.status == AccountStatus.auth_failed
    assert account.status_reason == "these credentials log in as u/bob, not u/alice"


async def test_outage_changes_nothing(world: RedditWorld) -> None:
    account_id = await world.add_account("alice")
    world.fake.queue_error("me", status=503, times=10)

    with pytest.raises(RedditUnavailable):
        await health_check(world.ctx(HEALTH_CHECK, {"account_id": account_id}))

    account = await world.account(account_id)
    assert account.status == AccountStatus.active
    assert account.last_check_at is None
    assert world.texts == []


async def test_periodic_check_queues_one_job_per_active_account(world: RedditWorld) -> None:
    alice = await world.add_account("alice")
    bob = await world.add_account("bob")
    await world.add_account("ghost", credentials=False)
    async with world.services() as (accounts, _, _):
        await accounts.pause(world.operator, bob)
    ctx = world.ctx("reddit.health_check_all", {}, job_id=77)

    assert await health_check_all(ctx) == {"queued": 1}
    assert await health_check_all(ctx) == {"queued": 0}  # a retried fan-out adds nothing twice
    (job,) = await world.jobs_of_kind(HEALTH_CHECK)
    assert job.payload == {"account_id": alice}
    assert job.tenant_id == world.tenant_id


async def test_accounts_on_one_app_share_one_rate_budget(world: RedditWorld) -> None:
    alice_id = await world.add_account("alice")
    alice = await world.clients.client(await world.account(alice_id))
    bob = await world.clients.client(await world.account(await world.add_account("bob")))
    assert alice is not None and bob is not None and alice is not bob
    assert alice.budget is bob.budget
    # the client (and its token) is kept until the stored credentials change
    assert await world.clients.client(await world.account(alice_id)) is alice
    async with world.services() as (accounts, _, _):
        await accounts.set_credentials(
            world.operator,
            alice_id,
            client_id=APP,
            client_secret=SECRET,
            password="new",
            check=False,
        )
    assert await world.clients.client(await world.account(alice_id)) is not alice
