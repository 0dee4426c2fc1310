"""An independent client: schemathesis fuzzes the live API from its OpenAPI document.

Run per role (owner, operator and viewer tokens): no 5xx, every answer conforms to the
document (status, content type, schema), negative data is refused, and no operation answers
without a token (`ignored_auth`). The API's own per-token rate limit is raised for the run
through the real setting, as an operator expecting this much traffic would."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

from core.settings import ApiSettings
from tests.e2e.conftest import OWNER, Harness
from tests.e2e.test_api import make_token

pytestmark = pytest.mark.slow

SCHEMATHESIS = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")


@pytest.mark.parametrize("role", ["owner", "operator", "viewer"])
async def test_schemathesis_finds_nothing(start_app, tmp_path, role: str) -> None:
    app: Harness = await start_app(api=ApiSettings(_env_file=None, requests_per_minute=100_000))
    for _ in range(3):  # something for the id-taking operations to find
        await app.submit_job("test.ok", requires_approval=True)
    token = await make_token(app, OWNER, f"fuzz-{role} {role}")
    base = app.app.settings.public_base_url
    proc = await asyncio.create_subprocess_exec(
        SCHEMATHESIS,
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{base}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--max-examples",
        os.environ.get("OPSDECK_SCHEMATHESIS_EXAMPLES", "25"),
        "--seed",
        "1",
        "--workers",
        "2",
        "--no-color",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--report-dir",
        str(tmp_path / "report"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 600)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
