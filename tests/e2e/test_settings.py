"""/settings through the fake Telegram server: owners only, every secret masked, and the
"Test connection" button per Reddit account answering from the fake Reddit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from core.settings import RedditSettings
from tests.e2e.conftest import OPERATOR, OWNER, VIEWER, Harness
from tests.fakes.reddit import FakeReddit

DB_PASSWORD = "pg-pass-Zq81"
S3_KEY_ID, S3_SECRET = "AKIAOPSDECKTEST01", "s3-secret-Ux7f9Lw2"
CLIENT_ID, CLIENT_SECRET, PASSWORD = "opsdeckapp01", "app-secret-xyz", "hunter2-pass"


@pytest.fixture
async def reddit() -> AsyncIterator[FakeReddit]:
    async with FakeReddit() as fake:
        yield fake


async def test_operator_and_viewer_are_refused(app: Harness) -> None:
    for user in (OPERATOR, VIEWER):
        answer = await app.say(user, "/settings")
        assert "cannot see the settings" in answer["text"]
        assert "Effective settings" not in answer["text"]


async def test_every_secret_is_masked(app: Harness) -> None:
    s = app.app.settings
    # secrets a deployment would carry; shown from the live settings object
    s.vault.s3_access_key_id = SecretStr(S3_KEY_ID)
    s.vault.s3_secret_access_key = SecretStr(S3_SECRET)
    s.database.url = f"postgresql+asyncpg://opsdeck:{DB_PASSWORD}@db.internal:5432/opsdeck"
    s.telegram.webhook_secret = SecretStr("hook-secret-Lm3p0q")
    msg = await app.say(OWNER, "/settings", "Effective settings")
    text = msg["text"]
    secrets = [
        app.tg.token,
        app.tg.token.split(":", 1)[1],
        s.opsdeck.secret_key.get_secret_value(),
        "hook-secret-Lm3p0q",
        DB_PASSWORD,
        S3_KEY_ID,
        S3_SECRET,
    ]
    for secret in secrets:
        assert secret not in text, secret
    assert "TELEGRAM_BOT_TOKEN: •••••••• (set)" in text
    assert "OPSDECK_SECRET_KEY: •••••••• (set)" in text
    assert "TELEGRAM_WEBHOOK_SECRET: •••••••• (set)" in text
    assert "VAULT_S3_SECRET_ACCESS_KEY: •••••••• (set)" in text
    assert "opsdeck:••••••••@db.internal:5432/opsdeck" in text
    # the harmless values are shown as they are
    assert f"OPSDECK_OWNER_IDS: {OWNER}" in text and "HTTP_PORT" in text
    assert "none yet" in text  # no Reddit accounts


async def test_passwords_inside_every_url_valued_setting_are_masked(app: Harness) -> None:
    s = app.app.settings
    s.vault.storage_url = "s3://vaultuser:vault-pass-K2@opsdeck-vault/vault"
    s.vault.s3_endpoint_url = "http://minio:S3passw0rd@minio:9000"
    s.reddit.media_upload_url = "https://uploader:Upl0ad-Pw9@media.internal/upload"
    s.database.url = "postgresql+asyncpg://u:p-Db-77@db.internal/opsdeck"
    text = (await app.say(OWNER, "/settings", "Effective settings"))["text"]
    for secret in ("vault-pass-K2", "S3passw0rd", "Upl0ad-Pw9", "p-Db-77"):
        assert secret not in text, secret
    assert "VAULT_STORAGE_URL: s3://vaultuser:••••••••@opsdeck-vault/vault" in text
    assert "VAULT_S3_ENDPOINT_URL: http://minio:••••••••@minio:9000" in text
    assert "REDDIT_MEDIA_UPLOAD_URL: https://uploader:••••••••@media.internal/upload" in text
    assert "vault storage: s3://vaultuser:••••••••@opsdeck-vault/vault" in text
    assert "database: postgresql+asyncpg://u:••••••••@db.internal/opsdeck" in text


async def test_a_workspace_owner_sees_only_their_workspace(app: Harness) -> None:
    other = 4001
    await app.say(OWNER, f"/tenants add other {other}", "created")
    app.users[other] = app.tg.user(other, "Otto")
    app.app.settings.vault.s3_endpoint_url = "http://minio:S3passw0rd@minio:9000"
    text = (await app.say(other, "/settings", "Workspace settings"))["text"]
    assert "Effective settings" not in text
    for deployment_wide in ("OPSDECK_OWNER_IDS:", "S3passw0rd", "minio", "HTTP_PORT", "sqlite"):
        assert deployment_wide not in text, deployment_wide
    assert "only to the deployment's owners" in text


async def test_test_connection_button_per_reddit_account(start_app, reddit: FakeReddit) -> None:
    from tests.e2e.test_reddit_accounts import connect

    app = await start_app(
        reddit=RedditSettings(_env_file=None, oauth_url=reddit.oauth_url, www_url=reddit.www_url)
    )
    reddit.add_account("team_main", PASSWORD, CLIENT_ID, CLIENT_SECRET, link_karma=42)
    await connect(app, OWNER, "team_main")
    msg = await app.say(OWNER, "/settings", "Effective settings")
    assert PASSWORD not in msg["text"] and CLIENT_SECRET not in msg["text"]
    assert "u/team_main · active" in msg["text"]
    answer = await app.press(OWNER, msg, app.button(msg, "Test connection u/team_main"))
    assert "✅ connected as u/team_main" in answer["text"] and "karma 42/" in answer["text"]
    assert answer["show_alert"]
