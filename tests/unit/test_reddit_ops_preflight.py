"""Pre-flight findings for each rule, from parsed Reddit answers (no network)."""

from __future__ import annotations

from typing import Any

import pytest

from core.reddit import FlairChoice, PostRequirements, SubredditAbout
from core.reddit_ops.preflight import (
    Draft,
    Finding,
    Level,
    PreflightReport,
    SubredditFacts,
    check_post,
    domain_of,
)


def about(**data: Any) -> SubredditAbout:
    base = {"display_name": "testsub", "submission_type": "any", "allow_images": True}
    base.update(data)
    return SubredditAbout.parse({"kind": "t5", "data": base})


def facts(
    requirements: dict[str, Any] | None = None,
    flairs: list[FlairChoice] | None = None,
    **about_data: Any,
) -> SubredditFacts:
    return SubredditFacts(
        name="testsub",
        about=about(**about_data),
        requirements=PostRequirements.parse(requirements or {}),
        flairs=flairs if flairs is not None else [],
    )


def draft(**values: Any) -> Draft:
    base: dict[str, Any] = {"subreddit": "testsub", "kind": "self", "title": "A fine title"}
    base.update(values)
    return Draft(**base)


def codes(findings: list[Finding], level: Level = Level.error) -> list[str]:
    return [f.code for f in findings if f.level == level]


def test_a_good_post_passes() -> None:
    found = check_post(draft(body="hello"), facts())
    assert codes(found) == []
    assert codes(found, Level.ok) == ["PASSED"]
    assert PreflightReport(found).ok


@pytest.mark.parametrize(
    ("requirements", "values", "code", "words"),
    [
        ({"title_text_min_length": 20}, {}, "TITLE_MIN_LENGTH", "at least 20"),
        ({"title_text_max_length": 5}, {}, "TITLE_MAX_LENGTH", "at most 5"),
        (
            {"title_required_strings": ["[OC]", "[Question]"]},
            {},
            "TITLE_REQUIRED_STRINGS",
            "“[OC]”, “[Question]”",
        ),
        ({"title_blacklisted_strings": ["FINE"]}, {}, "TITLE_BLACKLISTED_STRING", "“FINE”"),
        ({"title_regexes": [r"^\[\w+\] "]}, {}, "TITLE_REGEX", "pattern"),
        ({"body_restriction_policy": "required"}, {"body": None}, "BODY_REQUIRED", "text body"),
        (
            {"body_restriction_policy": "notAllowed"},
            {"body": "some text"},
            "BODY_NOT_ALLOWED",
            "does not allow a text body",
        ),
        ({"body_text_min_length": 50}, {"body": "short"}, "BODY_MIN_LENGTH", "at least 50"),
        ({"body_text_max_length": 3}, {"body": "too long"}, "BODY_MAX_LENGTH", "at most 3"),
        (
            {"body_required_strings": ["source:"]},
            {"body": "no link"},
            "BODY_REQUIRED_STRINGS",
            "“source:”",
        ),
        (
            {"body_blacklisted_strings": ["buy now"]},
            {"body": "Please BUY NOW"},
            "BODY_BLACKLISTED_STRING",
            "“buy now”",
        ),
        ({"body_regexes": [r"\d{4}"]}, {"body": "no year"}, "BODY_REGEX", "pattern"),
        (
            {"domain_blacklist": ["spam.example"]},
            {"kind": "link", "url": "https://www.cdn.spam.example/x"},
            "DOMAIN_BLACKLISTED",
            "cdn.spam.example",
        ),
        (
            {"domain_whitelist": ["youtube.com", "youtu.be"]},
            {"kind": "link", "url": "https://vimeo.com/1"},
            "DOMAIN_NOT_WHITELISTED",
            "only allows links to “youtube.com”, “youtu.be”, not vimeo.com",
        ),
        ({"is_flair_required": True}, {}, "FLAIR_REQUIRED", "requires a flair"),
    ],
)
def test_each_requirement(
    requirements: dict[str, Any], values: dict[str, Any], code: str, words: str
) -> None:
    found = check_post(draft(**values), facts(requirements))
    errors = [f for f in found if f.level == Level.error]
    assert [f.code for f in errors] == [code]
    assert words in errors[0].text
    assert "r/testsub" in errors[0].text
    assert codes(found, Level.ok) == []  # no "passes" line next to an error


def test_required_strings_need_only_one_and_ignore_case() -> None:
    req = {"title_required_strings": ["[oc]", "[meta]"]}
    assert codes(check_post(draft(title="[OC] my photo"), facts(req))) == []


def test_whitelisted_domain_and_subdomain_pass() -> None:
    req = {"domain_whitelist": ["youtube.com"]}
    found = check_post(draft(kind="link", url="https://m.youtube.com/watch?v=1"), facts(req))
    assert codes(found) == []


def test_title_regex_that_python_cannot_compile_is_only_a_warning() -> None:
    found = check_post(draft(), facts({"title_regexes": ["(?<bad"]}))
    assert codes(found) == []
    assert codes(found, Level.warn) == ["TITLE_REGEX_UNCHECKED"]


def test_body_required_for_a_link_post_is_a_warning() -> None:
    found = check_post(
        draft(kind="link", url="https://example.com"),
        facts({"body_restriction_policy": "required"}),
    )
    assert codes(found) == []
    assert codes(found, Level.warn) == ["BODY_REQUIRED"]


def test_reddits_own_limits() -> None:
    assert codes(check_post(draft(title="x" * 301))) == ["TITLE_TOO_LONG"]
    assert codes(check_post(draft(title="  "))) == ["TITLE_EMPTY"]
    assert codes(check_post(draft(kind="link", url=None))) == ["NO_URL"]
    assert codes(check_post(draft(kind="link", url="ftp://x.example/a"))) == ["BAD_URL"]
    assert codes(check_post(draft(kind="image"))) == ["NO_IMAGE"]
    assert codes(check_post(draft(flair_text="f" * 65))) == ["FLAIR_TOO_LONG"]


@pytest.mark.parametrize(
    ("about_data", "values", "code"),
    [
        ({"submission_type": "link"}, {}, "NO_SELFS"),
        ({"submission_type": "self"}, {"kind": "link", "url": "https://e.example"}, "NO_LINKS"),
        ({"allow_images": False}, {"kind": "image", "has_image": True}, "NO_IMAGES"),
        ({"submission_type": "self"}, {"kind": "image", "has_image": True}, "NO_LINKS"),
        ({"user_is_banned": True}, {}, "BANNED"),
    ],
)
def test_what_the_subreddit_takes(
    about_data: dict[str, Any], values: dict[str, Any], code: str
) -> None:
    assert codes(check_post(draft(**values), facts(**about_data))) == [code]


def test_over18_subreddit_accepts_a_post_marked_nsfw() -> None:
    assert codes(check_post(draft(nsfw=True), facts(over18=True))) == []


def test_an_unmarked_post_to_an_18_plus_subreddit_is_a_warning_not_a_refusal() -> None:
    """Reddit marks it NSFW itself (the fake does too): the post may be queued."""
    found = check_post(draft(nsfw=False), facts(over18=True))
    assert codes(found) == []
    assert codes(found, Level.warn) == ["NSFW_MARKED_BY_REDDIT"]


def test_flair_required_lists_the_choices_and_checks_the_pick() -> None:
    flairs = [FlairChoice("id-news", "News", False), FlairChoice("id-meta", "Meta", True)]
    req = {"is_flair_required": True}
    missing = check_post(draft(), facts(req, flairs))
    assert codes(missing) == ["FLAIR_REQUIRED"]
    assert "“News”, “Meta”" in missing[0].text
    assert codes(check_post(draft(flair_id="id-news"), facts(req, flairs))) == []
    assert codes(check_post(draft(flair_id="nope"), facts(req, flairs))) == ["FLAIR_UNKNOWN"]
    edited = check_post(draft(flair_id="id-news", flair_text="Breaking"), facts(req, flairs))
    assert codes(edited, Level.warn) == ["FLAIR_NOT_EDITABLE"]


def test_problems_from_fetching_come_first_and_guidelines_are_shown() -> None:
    missing = SubredditFacts(
        name="gone", problems=[Finding(Level.error, "SUBREDDIT_NOEXIST", "r/gone does not exist")]
    )
    assert codes(check_post(draft(subreddit="gone"), missing)) == ["SUBREDDIT_NOEXIST"]
    found = check_post(draft(), facts({"guidelines_text": "Be nice."}))
    assert "r/testsub guidelines: Be nice." in [f.text for f in found]


def test_report_summary_puts_errors_first() -> None:
    report = PreflightReport(
        [
            Finding(Level.ok, "A", "fine"),
            Finding(Level.error, "B", "bad"),
            Finding(Level.warn, "C", "hmm"),
        ]
    )
    assert report.summary() == "✗ bad\n! hmm\n✓ fine"
    assert not report.ok
    assert [f.code for f in report.warnings] == ["C"]


def test_domain_of() -> None:
    assert domain_of("https://WWW.Example.COM/a?b") == "example.com"
    assert domain_of("http://sub.example.com:8080/") == "sub.example.com"
    assert domain_of("example.com") is None
    assert domain_of("javascript:alert(1)") is None
