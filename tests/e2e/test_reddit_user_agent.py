"""The Reddit User-Agent as the process uses it: a placeholder stops `python -m bot run` with
one line naming REDDIT_USER_AGENT (exit 2); unset, each account speaks as itself."""

from __future__ import annotations

import pytest

from core.reddit.config import VERSION
from tests.integration import test_reddit_helpers as helpers
from tests.integration.test_reddit_helpers import RedditWorld
from tests.unit.test_cli import run_cli

vt, fake, world = helpers.vt, helpers.fake, helpers.world  # fixtures


@pytest.mark.parametrize(
    "agent",
    ["python:opsdeck:0.1.0 (by /u/opsdeck)", "python:opsdeck:0.1.0 (by /u/your_reddit_name)"],
)
def test_a_placeholder_user_agent_is_refused_at_start_up(tmp_path, agent: str) -> None:
    env = {
        "TELEGRAM_BOT_TOKEN": "1:x",
        "OPSDECK_OWNER_IDS": "1",
        "REDDIT_USER_AGENT": agent,
    }
    result = run_cli("run", env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("opsdeck: REDDIT_USER_AGENT: ")
    assert "placeholder" in result.stderr and "Traceback" not in result.stderr


async def test_each_account_speaks_with_its_own_user_agent(world: RedditWorld) -> None:
    for name in ("alice", "bob"):
        account_id = await world.add_account(name)
        client = await world.clients.client(await world.account(account_id))
        assert client is not None
        await client.me()
    agents = {(r.username, r.user_agent) for r in world.fake.requests_to("me")}
    assert agents == {
        ("alice", f"python:opsdeck:{VERSION} (by /u/alice)"),
        ("bob", f"python:opsdeck:{VERSION} (by /u/bob)"),
    }
