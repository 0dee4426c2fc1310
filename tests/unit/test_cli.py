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
