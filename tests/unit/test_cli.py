"""The CLI contract: a missing setting is one clear line and exit 2, `migrate` migrates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM_", "OPSDECK_", "DATABASE_", "VAULT_", "HTTP_"))
    }
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_token_is_one_line_naming_the_variable(tmp_path) -> None:
    result = run_cli("run", env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "TELEGRAM_BOT_TOKEN" in result.stderr and "BotFather" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_owner_ids_names_the_variable(tmp_path) -> None:
    result = run_cli("run", env={"TELEGRAM_BOT_TOKEN": "1:x"}, cwd=tmp_path)
    assert result.returncode == 2 and "OPSDECK_OWNER_IDS" in result.stderr


def test_malformed_owner_ids_names_the_variable(tmp_path) -> None:
    result = run_cli(
        "run", env={"TELEGRAM_BOT_TOKEN": "1:x", "OPSDECK_OWNER_IDS": "12,bob"}, cwd=tmp_path
    )
    assert (
        result.returncode == 2
        and "OPSDECK_OWNER_IDS" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_dotenv_file_is_read(tmp_path) -> None:
    (tmp_path / ".env").write_text("TELEGRAM_BOT_TOKEN=1:x\n")
    result = run_cli("run", env={}, cwd=tmp_path)
    assert "OPSDECK_OWNER_IDS" in result.stderr  # the token came from .env


def test_migrate_creates_the_database_in_the_data_dir(tmp_path) -> None:
    result = run_cli("migrate", env={"OPSDECK_DATA_DIR": str(tmp_path / "d")}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "opsdeck.db").exists()
    assert "database at revision" in result.stderr


def test_accounts_add_from_the_shell_seals_secrets(tmp_path) -> None:
    env = {
        "OPSDECK_DATA_DIR": str(tmp_path / "d"),
        "OPSDECK_OWNER_IDS": "1001",
        "REDDIT_CLIENT_SECRET": "shell-secret-123",
        "REDDIT_PASSWORD": "shell-pass-456",
    }
    result = run_cli(
        "accounts", "add", "u/team_cli", "--client-id", "cliapp01", env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Connected u/team_cli" in result.stdout
    assert "shell-secret-123" not in result.stdout and "shell-pass-456" not in result.stdout
    db = (tmp_path / "d" / "opsdeck.db").read_bytes()
    assert b"shell-secret-123" not in db and b"shell-pass-456" not in db
    again = run_cli(
        "accounts", "add", "u/team_cli", "--client-id", "cliapp01", env=env, cwd=tmp_path
    )
    assert again.returncode == 2 and again.stderr.count("\n") == 1


def test_accounts_add_without_a_password_says_how(tmp_path) -> None:
    env = {"OPSDECK_DATA_DIR": str(tmp_path / "d"), "OPSDECK_OWNER_IDS": "1001"}
    result = run_cli(
        "accounts", "add", "team_cli", "--client-id", "cliapp01", env=env, cwd=tmp_path
    )
    assert result.returncode == 2 and "REDDIT_PASSWORD" in result.stderr
    dry = run_cli("accounts", "add", "team_dry", "--kind", "dry_run", env=env, cwd=tmp_path)
    assert dry.returncode == 0 and "dry run" in dry.stdout, dry.stderr
