"""The Reddit queue over the HTTP API: the spreadsheet scenario and the chat's rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.reddit_models import RedditPost
from tests.e2e.conftest import OWNER, Harness
from tests.e2e.test_api import OTHER_OWNER, client, make_token
from tests.e2e.test_reddit_posts import add_account, rapp, reddit, setup_reddit
from tests.fakes.reddit import FakeReddit

__all__ = ["rapp", "reddit"]  # fixtures


def row(account_id: int, n: int, when: datetime, **extra) -> dict:
    return {
        "account_id": account_id,
        "subreddit": "opsdeck_test",
        "kind": "self",
        "title": f"Weekly note {n}",
        "body": "What the team shipped this week.",
        "when": when.isoformat(),
        **extra,
    }


async def count_posts(app: Harness) -> int:
    from sqlalchemy import func, select

    async with app.app.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(RedditPost))


async def test_spreadsheet_queues_twenty_posts_once(rapp: Harness, reddit: FakeReddit) -> None:
    """A cron queues 20 rows from a sheet, then (a network blip) sends them all again with the
    same idempotency keys: 20 posts, each paced like the chat paces them."""
    setup_reddit(reddit, "opsdeck_test")
    account_id = await add_account(rapp, "team_main")
    token = await make_token(rapp, OWNER, "sheet operator")
    start = datetime.now(UTC) + timedelta(days=1)
    async with client(rapp, token) as http:
        answers = []
        for attempt in range(2):
            for n in range(20):
                r = await http.post(
                    "/api/v1/reddit/posts",
                    json=row(account_id, n, start),
                    headers={"Idempotency-Key": f"sheet-2026-w49-row-{n}"},
                )
                assert r.status_code == 201, r.text
                if attempt:
                    assert r.headers.get("Idempotent-Replayed") == "true"
                    assert r.json() == answers[n]
                else:
                    answers.append(r.json())
        assert await count_posts(rapp) == 20
        times = sorted(a["scheduled_for"] for a in answers)
        assert len(set(times)) == 20  # pacing spread them; none share a slot
        assert any(a["moved"] and a["pacing_note"] for a in answers)
        listed = (await http.get("/api/v1/reddit/posts", params={"limit": 100})).json()
        assert listed["total"] == 20 and listed["items"][0]["status"] == "queued"

        # dry run: checked and planned, nothing saved
        dry = await http.post("/api/v1/reddit/posts", json=row(account_id, 99, start, dry_run=True))
        assert dry.status_code == 201 and dry.json()["post"] is None
        assert dry.json()["dry_run"] is True and dry.json()["moved"] is True
        assert await count_posts(rapp) == 20

        # pre-flight refusals are 422 and leave nothing behind
        bad = await http.post(
            "/api/v1/reddit/posts", json=row(account_id, 1, start, title="x" * 301)
        )
        assert bad.status_code == 422
        link_without_url = await http.post(
            "/api/v1/reddit/posts", json=row(account_id, 2, start, kind="link")
        )
        assert link_without_url.status_code == 422, link_without_url.text
        assert await count_posts(rapp) == 20

        # reschedule and cancel like the chat's buttons
        first = answers[0]["post"]
        later = (start + timedelta(days=3)).isoformat()
        moved = await http.post(
            f"/api/v1/reddit/posts/{first['id']}/reschedule", json={"when": later}
        )
        assert moved.status_code == 200 and moved.json()["scheduled_for"] >= later[:16]
        naive = await http.post(
            f"/api/v1/reddit/posts/{first['id']}/reschedule", json={"when": "2030-01-01T00:00:00"}
        )
        assert naive.status_code == 422  # a time without a zone is ambiguous
        cancelled = await http.post(f"/api/v1/reddit/posts/{first['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        again = await http.post(f"/api/v1/reddit/posts/{first['id']}/cancel")
        assert again.status_code == 409

        accounts = (await http.get("/api/v1/reddit/accounts")).json()["items"]
        assert accounts[0]["username"] == "team_main" and "password" not in accounts[0]
        check = await http.post(f"/api/v1/reddit/accounts/{account_id}/check")
        assert check.status_code == 200 and check.json()["job_id"]
        stats = await http.post(f"/api/v1/reddit/accounts/{account_id}/backfill/stats")
        assert stats.status_code == 200 and stats.json()["job_id"]
        nothing = await http.post(f"/api/v1/reddit/accounts/{account_id}/backfill/votes")
        assert nothing.status_code == 404


async def test_reddit_ids_of_another_workspace_are_not_found(
    rapp: Harness, reddit: FakeReddit
) -> None:
    setup_reddit(reddit, "opsdeck_test")
    account_id = await add_account(rapp, "team_main")
    await rapp.say(OWNER, f"/tenants add beta {OTHER_OWNER}", contains="beta")
    rapp.users[OTHER_OWNER] = rapp.tg.user(OTHER_OWNER, "Bea")
    ours = await make_token(rapp, OWNER, "sheet operator")
    theirs = await make_token(rapp, OTHER_OWNER, "beta operator")
    start = datetime.now(UTC) + timedelta(days=1)
    async with client(rapp, ours) as http:
        post = (await http.post("/api/v1/reddit/posts", json=row(account_id, 1, start))).json()
    post_id = post["post"]["id"]
    async with client(rapp, theirs) as http:
        for method, path, body in (
            ("GET", f"/api/v1/reddit/accounts/{account_id}", None),
            ("POST", f"/api/v1/reddit/accounts/{account_id}/check", None),
            ("POST", f"/api/v1/reddit/accounts/{account_id}/backfill/history", None),
            ("GET", f"/api/v1/reddit/posts/{post_id}", None),
            ("POST", f"/api/v1/reddit/posts/{post_id}/cancel", None),
            ("POST", f"/api/v1/reddit/posts/{post_id}/reschedule", {"when": start.isoformat()}),
            ("POST", "/api/v1/reddit/posts", row(account_id, 2, start)),
        ):
            r = await http.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
        assert (await http.get("/api/v1/reddit/posts")).json()["total"] == 0
    assert await count_posts(rapp) == 1
