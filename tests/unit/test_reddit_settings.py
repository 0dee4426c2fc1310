"""REDDIT_* settings reach the Reddit client configuration the way the factory builds it."""

from __future__ import annotations

import pytest

from core.reddit_ops import config_from_settings
from core.settings import RedditSettings


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
