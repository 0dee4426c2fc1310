"""`python -m bot restore <file>`: refusals are one line and exit 2, never a traceback."""

from __future__ import annotations

import sqlite3

from tests.unit.test_cli import run_cli


def test_restore_is_listed_in_help(tmp_path) -> None:
    result = run_cli("restore", "--help", env={}, cwd=tmp_path)
    assert result.returncode == 0 and "empty data dir" in result.stdout


def test_restore_needs_a_file_argument(tmp_path) -> None:
    result = run_cli("restore", env={}, cwd=tmp_path)
    assert result.returncode == 2 and "file" in result.stderr


def test_missing_file_is_refused(tmp_path) -> None:
    data = tmp_path / "d"
    result = run_cli(
        "restore", str(tmp_path / "nope.db"), env={"OPSDECK_DATA_DIR": str(data)}, cwd=tmp_path
    )
    assert result.returncode == 2 and "no such file" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert not (data / "opsdeck.db").exists()


def test_postgresql_is_refused(tmp_path) -> None:
    backup = tmp_path / "b.db"
    sqlite3.connect(backup).close()
    result = run_cli(
        "restore",
        str(backup),
        env={"DATABASE_URL": "postgresql+asyncpg://u:p@db.invalid/opsdeck"},
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "PostgreSQL with its own tools" in result.stderr


def test_existing_database_is_refused_before_reading_the_file(tmp_path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "opsdeck.db").write_bytes(b"live database")
    backup = tmp_path / "b.db"
    sqlite3.connect(backup).close()
    result = run_cli("restore", str(backup), env={"OPSDECK_DATA_DIR": str(data)}, cwd=tmp_path)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (data / "opsdeck.db").read_bytes() == b"live database"
