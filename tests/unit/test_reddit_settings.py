"""REDDIT_* settings reach the Reddit client configuration the way the factory builds it."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from core.errors import ConfigError
from core.reddit.config import APP_USER_AGENT, VERSION, account_user_agent, user_agent_problem
from core.reddit_ops import config_from_settings
from core.reddit_ops.clients import configured_user_agent
from core.settings import RedditSettings, Settings


def test_media_upload_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDDIT_MEDIA_UPLOAD_URL", "http://127.0.0.1:9000/s3")
    monkeypatch.setenv("REDDIT_OAUTH_URL", "http://127.0.0.1:9000/oauth")
    config = config_from_settings(RedditSettings(_env_file=None))
    assert config.media_upload_url == "http://127.0.0.1:9000/s3"
    assert config.oauth_url == "http://127.0.0.1:9000/oauth"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_unset_or_empty_media_upload_url_means_reddits_own(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    # `.env.example` ships `REDDIT_MEDIA_UPLOAD_URL=` (empty): that must not become a URL.
    if value is None:
        monkeypatch.delenv("REDDIT_MEDIA_UPLOAD_URL", raising=False)
    else:
        monkeypatch.setenv("REDDIT_MEDIA_UPLOAD_URL", value)
    assert config_from_settings(RedditSettings(_env_file=None)).media_upload_url is None


@pytest.mark.parametrize(
    "agent",
    [
        "python:opsdeck:0.1.0 (by /u/opsdeck)",  # the old built-in default
        "python:opsdeck:0.1.0 (by /u/your_reddit_name)",  # .env.example's old value
        "python:opsdeck:1.0 (by /u/<username>)",
        "opsdeck bot",  # not Reddit's form at all
    ],
)
def test_a_placeholder_user_agent_is_refused_in_one_line(agent: str) -> None:
    settings = Settings.load(env_file=None, reddit=RedditSettings(_env_file=None, user_agent=agent))
    settings.telegram.bot_token = SecretStr("1:x")
    settings.opsdeck.owner_ids = [1]
    with pytest.raises(ConfigError) as caught:
        settings.require_runtime()
    assert caught.value.message.startswith("REDDIT_USER_AGENT: ")
    assert "\n" not in caught.value.message


def test_a_user_agent_naming_a_real_account_is_used_for_every_account() -> None:
    agent = "python:opsdeck:1.0 (by /u/team_lead)"
    settings = RedditSettings(_env_file=None, user_agent=agent)
    assert user_agent_problem(agent) is None
    assert configured_user_agent(settings) == agent
    assert config_from_settings(settings).user_agent == agent


@pytest.mark.parametrize("value", [None, "", "  "])
def test_unset_user_agent_means_each_accounts_own(value: str | None) -> None:
    settings = RedditSettings(_env_file=None, user_agent=value)
    assert configured_user_agent(settings) is None
    # before an account is known (the OAuth code exchange) the agent names no one
    assert config_from_settings(settings).user_agent == APP_USER_AGENT
    assert "(by" not in APP_USER_AGENT
    assert account_user_agent("team_main") == f"python:opsdeck:{VERSION} (by /u/team_main)"
