"""The HTTP API end to end: tokens made in chat, then the real server over HTTP."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from bot.api import routes
from storage.models import Role
from tests.e2e.conftest import OPERATOR, OWNER, VIEWER, Harness

OTHER_OWNER = 3001
TOKEN_RE = re.compile(r"odk_[A-Za-z0-9_-]{20,}")


async def make_token(app: Harness, user: int, line: str) -> str:
    msg = await app.say(user, f"/tokens new {line}", contains="API token")
    found = TOKEN_RE.search(msg["text"])
    assert found, msg["text"]
    return found.group(0)


def client(app: Harness, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=app.app.settings.public_base_url, headers=headers)


def sample_path(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def sample_request(op) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if op.body is not None:
        kw["json"] = {"confirm": True}
    if op.multipart:
        kw["files"] = {"file": ("a.txt", b"hello")}
    return kw


async def test_tokens_in_chat_and_their_rules(app: Harness) -> None:
    token = await make_token(app, OWNER, "ci operator 30d")
    listing = await app.say(OWNER, "/tokens", contains="API tokens")
    assert "ci" in listing["text"] and "operator" in listing["text"] and "never" in listing["text"]
    assert token not in listing["text"]  # shown once only

    # bad input gets clear answers
    assert "Usage" in (await app.say(OWNER, "/tokens old x", contains="Usage"))["text"]
    said = await app.say(OWNER, "/tokens new bad/name viewer", contains="token name")
    assert "letters" in said["text"]
    said = await app.say(OWNER, "/tokens new x admin", contains="role")
    assert "operator, viewer or owner" in said["text"]
    said = await app.say(OWNER, "/tokens new x viewer 999d", contains="lifetime")
    assert "1d to 366d" in said["text"]
    said = await app.say(OWNER, "/tokens new ci viewer", contains="exists")
    assert "revoke it first" in said["text"]
    # only owners
    said = await app.say(OPERATOR, "/tokens", contains="cannot")
    assert "manage API tokens" in said["text"]

    async with client(app, token) as http:
        assert (await http.get("/api/v1/jobs")).status_code == 200

    # revoke by buttons, behind a confirmation; a stale press says so
    listing = await app.say(OWNER, "/tokens", contains="API tokens")
    ask = app.button(listing, "Revoke ci")
    await app.press(OWNER, listing, ask)
    confirm = await app.becomes(listing, lambda m: "Scripts using it stop" in m.get("text", ""))
    yes = app.button(confirm, "Yes, revoke")
    answer = await app.press(OWNER, confirm, yes)
    assert "revoked" in answer.get("text", "")
    again = await app.forge(OWNER, confirm, yes)
    assert "already revoked" in again.get("text", "")
    viewer_press = await app.forge(VIEWER, confirm, ask)
    assert "cannot" in viewer_press.get("text", "")

    async with client(app, token) as http:
        r = await http.get("/api/v1/jobs")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("#problem-unauthorized")
    assert "revoked" in r.json()["detail"]


async def test_every_operation_needs_a_valid_token(app: Harness) -> None:
    expired_secret = await make_token(app, OWNER, "short viewer 1d")
    app.clock.advance(2 * 86400)
    async with (
        client(app) as anon,
        client(app, "odk_" + "x" * 43) as wrong,
        client(app, expired_secret) as expired,
    ):
        for op in routes.registry().operations:
            url = "/api/v1" + sample_path(op.doc_path)
            for http, why in ((anon, "no token"), (wrong, "wrong"), (expired, "expired")):
                r = await http.request(op.method, url, **sample_request(op))
                assert r.status_code == 401, (op.operation_id, why, r.text)
        # an unknown path is not revealed either
        assert (await anon.get("/api/v1/nothing-here")).status_code == 401
        # the document is open
        doc = await anon.get("/api/v1/openapi.json")
        assert doc.status_code == 200 and doc.json()["openapi"].startswith("3.1")


async def test_viewer_token_is_refused_every_mutation(app: Harness) -> None:
    viewer = await make_token(app, OWNER, "dash viewer")
    job_id = await app.submit_job("test.ok", requires_approval=True)
    async with client(app, viewer) as http:
        for op in routes.registry().operations:
            url = "/api/v1" + sample_path(op.doc_path).replace("/1", f"/{job_id}", 1)
            r = await http.request(op.method, url, **sample_request(op))
            if op.role == Role.viewer:  # allowed; ids of things that do not exist are 404
                expected = (200,) if "{" not in op.doc_path or "job_id" in op.doc_path else (404,)
                assert r.status_code in expected, (op.operation_id, r.text)
            else:
                assert r.status_code == 403, (op.operation_id, r.text)
                assert r.json()["type"].endswith("#problem-forbidden")
    assert (await app.job(job_id)).status == "pending_approval"


async def test_operator_token_steers_jobs_like_the_chat(app: Harness) -> None:
    token = await make_token(app, OWNER, "ops operator")
    job_id = await app.submit_job("test.ok", requires_approval=True)
    async with client(app, token) as http:
        listed = (await http.get("/api/v1/jobs", params={"status": "pending"})).json()
        assert listed["total"] == 1 and listed["items"][0]["id"] == job_id
        r = await http.post(f"/api/v1/jobs/{job_id}/approve")
        assert r.status_code == 200 and r.json()["status"] in ("queued", "running", "succeeded")
        again = await http.post(f"/api/v1/jobs/{job_id}/approve")
        assert again.status_code == 409
        assert "already approved by you" in again.json()["detail"]  # the token acts as its maker
        bad = await http.get("/api/v1/jobs", params={"status": "sideways"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"][0] == "query"
        assert (await http.get("/api/v1/jobs/abc")).status_code == 404
        assert (await http.get(f"/api/v1/jobs/{2**63}")).status_code == 404
        no_confirm = await http.post("/api/v1/jobs/retry-all", json={"confirm": False})
        assert no_confirm.status_code == 422
        not_json = await http.post(
            "/api/v1/jobs/retry-all", content=b"confirm", headers={"Content-Type": "text/plain"}
        )
        assert not_json.status_code == 415
        deep = await http.post(
            "/api/v1/jobs/retry-all",
            content=b"[" * 100_000,
            headers={"Content-Type": "application/json"},
        )
        assert deep.status_code == 400
    await app.wait_job(job_id, "succeeded")
    # audited as the token and its creator
    from storage.repositories import audit as audit_repo

    async with app.app.sessionmaker() as session:
        entry = await audit_repo.last_for_target(
            session, (await app.actor(OWNER)).tenant_id, f"job:{job_id}"
        )
    assert entry.action == "job.approve" and entry.actor_id == OWNER
    assert entry.details["via"] == "api" and entry.details["token_id"] > 0


async def test_idempotency_key_replays_and_refuses_reuse(app: Harness) -> None:
    token = await make_token(app, OWNER, "cron operator")
    job_id = await app.submit_job("test.ok", requires_approval=True)
    async with client(app, token) as http:
        headers = {"Idempotency-Key": "approve-1"}
        first = await http.post(f"/api/v1/jobs/{job_id}/approve", headers=headers)
        second = await http.post(f"/api/v1/jobs/{job_id}/approve", headers=headers)
        assert first.status_code == second.status_code == 200
        assert second.headers.get("Idempotent-Replayed") == "true"
        assert second.json() == first.json()
        other = await http.post(f"/api/v1/jobs/{job_id}/reject", headers=headers)
        # another operation: the key is its own there, and it runs (the job is approved now)
        assert other.status_code == 409 and other.json()["type"].endswith("#problem-conflict")
        changed = await http.post(
            "/api/v1/jobs/retry-all", json={"confirm": True}, headers={"Idempotency-Key": "k"}
        )
        assert changed.status_code == 200
        mismatch = await http.post(
            "/api/v1/jobs/retry-all",
            content=b'{"confirm": true }',
            headers={"Idempotency-Key": "k", "Content-Type": "application/json"},
        )
        assert mismatch.status_code == 409
        assert mismatch.json()["type"].endswith("#problem-idempotency-mismatch")
        bad_key = await http.post(
            f"/api/v1/jobs/{job_id}/reject", headers={"Idempotency-Key": "x" * 129}
        )
        assert bad_key.status_code == 422


async def test_other_workspace_ids_are_not_found(app: Harness) -> None:
    await app.say(OWNER, f"/tenants add beta {OTHER_OWNER}", contains="beta")
    app.users[OTHER_OWNER] = app.tg.user(OTHER_OWNER, "Bea")
    theirs = await make_token(app, OTHER_OWNER, "beta-ops operator")
    job_id = await app.submit_job("test.ok", requires_approval=True)  # workspace A's job
    async with client(app, theirs) as http:
        for op in routes.registry().operations:
            if "{job_id}" not in op.doc_path:  # the vault's ids: tests/e2e/test_api_vault.py
                continue
            url = "/api/v1" + op.doc_path.replace("{job_id}", str(job_id))
            r = await http.request(op.method, url, **sample_request(op))
            assert r.status_code == 404, (op.operation_id, r.text)
        listed = (await http.get("/api/v1/jobs", params={"status": "all"})).json()
        assert listed["total"] == 0
    assert (await app.job(job_id)).status == "pending_approval"


@pytest.mark.parametrize("limit,offset", [(0, 0), (101, 0), (10, -1)])
async def test_paging_bounds(app: Harness, limit: int, offset: int) -> None:
    token = await make_token(app, OWNER, "pager viewer")
    async with client(app, token) as http:
        r = await http.get("/api/v1/jobs", params={"limit": limit, "offset": offset})
    assert r.status_code == 422


async def test_status_and_backup_keep_the_deployment_rule(app: Harness) -> None:
    await app.say(OWNER, f"/tenants add beta {OTHER_OWNER}", contains="beta")
    app.users[OTHER_OWNER] = app.tg.user(OTHER_OWNER, "Bea")
    deployment = await make_token(app, OWNER, "root owner")
    workspace = await make_token(app, OTHER_OWNER, "beta-root owner")
    viewer = await make_token(app, OWNER, "dash viewer")
    await app.submit_job("test.ok", requires_approval=True)
    async with client(app, deployment) as http:
        status = (await http.get("/api/v1/status")).json()
        assert status["jobs"]["pending_approval"] == 1
        assert status["version"] and status["database"] == "SQLite"
        backup = await http.get("/api/v1/backup")
        assert backup.status_code == 200 and backup.json()["supported"] is True
    for token in (workspace, viewer):
        async with client(app, token) as http:
            status = (await http.get("/api/v1/status")).json()
            assert status["version"] is None and status["backup"] is None
            refused = await http.get("/api/v1/backup")
            assert refused.status_code == 403
    async with client(app, workspace) as http:
        assert (await http.get("/api/v1/status")).json()["jobs"] == {}


async def test_docs_page_lists_every_operation_and_problem(app: Harness) -> None:
    async with client(app) as anon:
        page = await anon.get("/api/v1/docs")
        css = await anon.get("/api/v1/docs.css")
    assert page.status_code == 200 and css.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for op in routes.registry().operations:
        assert f'id="{op.operation_id}"' in page.text
        assert f"/api/v1{op.doc_path}" in page.text
    doc_types = {p.split("#")[1] for p in _problem_types(routes.registry())}
    for slug in doc_types:
        assert f'id="{slug}"' in page.text


def _problem_types(reg) -> set[str]:
    from bot.api.problems import PROBLEMS, TYPE_BASE

    return {TYPE_BASE + slug for slug in PROBLEMS}


@pytest.mark.parametrize(
    "role,maker",
    [("viewer", OWNER), ("operator", OWNER), ("owner", OWNER), ("owner", OTHER_OWNER)],
    ids=["viewer", "operator", "deployment-owner", "workspace-owner"],
)
async def test_every_route_by_role(app: Harness, role: str, maker: int) -> None:
    """The authorisation matrix over HTTP: every operation with a token of each role answers
    403 exactly when the role is too low (or the route is deployment-wide and the token's maker
    owns one workspace only), and never 401 or 5xx."""
    if maker == OTHER_OWNER:
        await app.say(OWNER, f"/tenants add beta {OTHER_OWNER}", contains="beta")
        app.users[OTHER_OWNER] = app.tg.user(OTHER_OWNER, "Bea")
    token = await make_token(app, maker, f"matrix-{role} {role}")
    rank = {"viewer": 0, "operator": 1, "owner": 2}
    async with client(app, token) as http:
        for op in routes.registry().operations:
            r = await http.request(
                op.method, "/api/v1" + sample_path(op.doc_path), **sample_request(op)
            )
            too_low = rank[role] < rank[op.role.value] or (op.deployment_only and maker != OWNER)
            assert (r.status_code == 403) == too_low, (op.operation_id, r.status_code, r.text)
            assert r.status_code != 401 and r.status_code < 500, (op.operation_id, r.text)
