"""Pure parsing: RATELIMIT durations, plain-words errors, User-Agent and config guards."""

from __future__ import annotations

import pytest

from core.errors import OpsdeckError
from core.reddit import (
    RedditAPIError,
    RedditConfig,
    RedditError,
    RedditMediaTooLarge,
    RedditRateLimited,
    RedditValidationError,
    build_user_agent,
    parse_ratelimit_seconds,
)
from core.reddit.client import normalize_subreddit


@pytest.mark.parametrize(
    ("message", "seconds"),
    [
        ("you are doing that too much. try again in 9 minutes.", 540),
        (
            "Looks like you've been doing that a lot. Take a break for 14 minutes before "
            "trying again.",
            840,
        ),
        ("you are doing that too much. try again in 5 seconds.", 5),
        ("you are doing that too much. try again in 500 milliseconds.", 1),
        ("you are doing that too much. try again in 1500 milliseconds.", 2),
        ("you are doing that too much. try again in 1 minute.", 60),
        ("Take a break for 1 second before trying again.", 1),
        ("you are doing that too much. try again in 2 hours.", 7200),
        ("you are doing that too much. try again in a minute.", 60),
    ],
)
def test_parse_ratelimit_seconds(message: str, seconds: int) -> None:
    assert parse_ratelimit_seconds(message) == seconds


def test_parse_ratelimit_seconds_without_a_duration() -> None:
    assert parse_ratelimit_seconds("you are doing that too much.") is None
    assert parse_ratelimit_seconds("") is None


def test_errors_are_opsdeck_errors_with_plain_messages() -> None:
    err = RedditAPIError([["NO_SELFS", "This community doesn't allow text posts.", "sr"]])
    assert isinstance(err, RedditError)
    assert isinstance(err, OpsdeckError)
    assert err.message == "this subreddit does not allow text posts"
    assert err.items == [("NO_SELFS", "This community doesn't allow text posts.", "sr")]
    assert err.code == "NO_SELFS"

    missing = RedditAPIError(
        [("SUBREDDIT_NOEXIST", "that subreddit doesn't exist", "sr")], subreddit="foo"
    )
    assert missing.message == "r/foo does not exist"

    unknown = RedditAPIError([("SOMETHING_NEW", "Reddit's own words", None)])
    assert unknown.message == "Reddit's own words"


def test_rate_limited_and_validation_messages() -> None:
    limited = RedditRateLimited(540, "try again in 9 minutes.")
    assert limited.seconds == 540
    assert "9 minutes" in limited.message

    invalid = RedditValidationError(
        "SUBMIT_VALIDATION_TITLE_BLACKLISTED_STRING",
        'You may not have "x" in your title. ',
        ["title"],
    )
    assert invalid.message == 'You may not have "x" in your title.'
    assert invalid.fields == ["title"]

    flair = RedditValidationError("SUBMIT_VALIDATION_FLAIR_REQUIRED", "", ["flair"])
    assert flair.message == "this subreddit requires a flair on every post"

    big = RedditMediaTooLarge(25 * 1_048_576, 20 * 1_048_576)
    assert big.message == "the file is 25.0 MB; Reddit accepts at most 20.0 MB"


def test_build_user_agent() -> None:
    assert (
        build_user_agent("python", "opsdeck", "0.1.0", "/u/teamlead")
        == "python:opsdeck:0.1.0 (by /u/teamlead)"
    )
    assert build_user_agent("linux", "com.example.opsdeck", "1.2", "alice") == (
        "linux:com.example.opsdeck:1.2 (by /u/alice)"
    )
    with pytest.raises(ValueError):
        build_user_agent("python", "", "0.1", "alice")


def test_config_refuses_vote_scope_and_empty_user_agent() -> None:
    with pytest.raises(ValueError, match="vote"):
        RedditConfig(user_agent="python:x:1 (by /u/a)", scopes=("read", "vote"))
    with pytest.raises(ValueError):
        RedditConfig(user_agent="  ")
    assert "vote" not in RedditConfig(user_agent="python:x:1 (by /u/a)").scopes


@pytest.mark.parametrize(
    ("given", "name"), [("r/Foo", "Foo"), ("/r/foo_bar/", "foo_bar"), ("AskReddit", "AskReddit")]
)
def test_normalize_subreddit(given: str, name: str) -> None:
    assert normalize_subreddit(given) == name


@pytest.mark.parametrize("bad", ["", "a", "has space", "../api/v1/me", "x" * 22, "foo/bar"])
def test_normalize_subreddit_refuses_non_names(bad: str) -> None:
    with pytest.raises(RedditAPIError) as caught:
        normalize_subreddit(bad)
    assert caught.value.code == "BAD_SR_NAME"
