"""What became of a post on Reddit, in words: live, removed (by whom), deleted, not visible."""

from __future__ import annotations

from core.reddit_ops.post_views import PostView
from storage.reddit_models import PostStatus

# removed_by_category values that mean the author deleted the post: its content is wiped.
AUTHOR_DELETED = frozenset({"deleted", "author"})
REMOVED_BY = {
    "moderator": "by the subreddit's moderators",
    "automod_filtered": "by AutoModerator's filter",
    "reddit": "by Reddit",
    "anti_evil_ops": "by Reddit's safety team",
    "community_ops": "by Reddit's community team",
    "legal_operations": "by Reddit for legal reasons",
    "copyright_takedown": "after a copyright notice",
    "content_takedown": "after a content takedown",
}


NOT_VISIBLE = "not visible to this account (subreddit private, quarantined or banned from?)"


def removal_words(category: str) -> str:
    """ "by the subreddit's moderators", … for Reddit's `removed_by_category`."""
    return REMOVED_BY.get(category, f"({category.replace('_', ' ')})")


def is_author_deletion(removed_by_category: str | None, author: str | None) -> bool:
    """Reddit's own evidence that the post was deleted (not merely hidden from us)."""
    return removed_by_category in AUTHOR_DELETED or author == "[deleted]"


def fate(p: PostView) -> str:
    """One phrase for `/posts published|all`: what an operator needs to know of the post."""
    if p.status == PostStatus.failed:
        return f"failed: {p.last_error_message or p.last_error_code or 'no reason given'}"
    if p.status != PostStatus.published:
        return p.status.replace("_", " ")
    if p.dry_run:
        return "dry run: nothing was sent"
    if p.kind == "comment":  # its fate on Reddit is not followed (no stats refresh)
        return "published"
    if p.content_deleted:
        return "deleted on Reddit"
    if p.hidden_since is not None:
        return NOT_VISIBLE
    if p.removed_by_category:
        return f"removed {removal_words(p.removed_by_category)}"
    if p.score is None:
        return "live"
    comments = p.num_comments or 0
    return f"live · {p.score} point{'s' if p.score != 1 else ''} · {comments} comment" + (
        "s" if comments != 1 else ""
    )
