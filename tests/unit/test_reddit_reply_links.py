"""What /reply accepts as the thing to answer, and what it refuses with a clear reason."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from core.reddit_ops.comments import COMMENT_MAX, check_body, parse_reply_link


@pytest.mark.parametrize(
    ("text", "thing", "sr"),
    [
        ("https://www.reddit.com/r/python/comments/abc123/some_title/", "t3_abc123", "python"),
        ("https://old.reddit.com/r/Python/comments/abc123/some_title", "t3_abc123", "Python"),
        ("reddit.com/r/python/comments/abc123", "t3_abc123", "python"),
        ("https://www.reddit.com/r/python/comments/abc123/x/def456/", "t1_def456", "python"),
        (
            "https://www.reddit.com/r/python/comments/abc123/x/def456/?context=3",
            "t1_def456",
            "python",
        ),
        ("https://www.reddit.com/r/python/comments/abc123/comment/def456/", "t1_def456", "python"),
        ("https://np.reddit.com/comments/abc123/", "t3_abc123", None),
        ("https://redd.it/abc123", "t3_abc123", None),
        ("<https://new.reddit.com/r/a_b/comments/zz9/t/>", "t3_zz9", "a_b"),
        ("t3_abc123", "t3_abc123", None),
        ("t1_def456", "t1_def456", None),
    ],
)
def test_accepted(text: str, thing: str, sr: str | None) -> None:
    link = parse_reply_link(text)
    assert link.thing_id == thing and link.subreddit == sr


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "address of a Reddit post"),
        ("https://example.com/r/python/comments/abc123/", "not a reddit.com address"),
        ("https://www.reddit.com/r/python/", "not a post or a comment"),
        ("https://www.reddit.com/r/python/s/AbCdEf123", "share link"),
        ("https://www.reddit.com/user/someone/", "not a post or a comment"),
        ("ftp://www.reddit.com/r/python/comments/abc123/", "not a reddit.com address"),
        ("https://www.reddit.com/r/python/comments/ABC!!/", "not a post or a comment"),
        ("t5_abc", "not a reddit.com address"),
    ],
)
def test_refused(text: str, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_reply_link(text)
    assert says in caught.value.message


def test_body_limits() -> None:
    assert check_body("  **hi**  ") == "**hi**"
    with pytest.raises(InvalidInput, match="empty"):
        check_body("   ")
    with pytest.raises(InvalidInput, match="allows 10,000"):
        check_body("x" * (COMMENT_MAX + 1))
