"""What the submit job does differently for a comment (a post of kind `comment`): send it
with `/api/comment`, look for it among the account's comments after an unclear answer, and
check the thread in a dry run. Claiming, pacing, RATELIMIT and the outcomes stay the job's."""

from __future__ import annotations

from core.errors import InvalidInput, NotFound
from core.reddit import RedditClient
from core.reddit.thread_models import Comment
from core.reddit_ops.comments import ReplyLink, ask_reddit, parse_reply_link
from storage.reddit_models import RedditPost


def _parent(post: RedditPost) -> str:
    if not post.parent_fullname:
        raise ValueError(f"comment #{post.id} has no parent")
    return post.parent_fullname


async def send_comment(client: RedditClient, post: RedditPost) -> tuple[str, str | None]:
    """`/api/comment`; the new comment's fullname and permalink."""
    made = await client.comment(_parent(post), post.body or "")
    return made.fullname, made.permalink_url


async def look_for_comment(
    client: RedditClient, post: RedditPost, within_seconds: float
) -> Comment | None:
    """The account's comment with this text on this parent, if an earlier attempt made it."""
    return await client.recent_comment(_parent(post), post.body or "", within_seconds)


async def dry_run_problem(client: RedditClient | None, post: RedditPost) -> str | None:
    """Why the comment could not go out now (thread locked, parent deleted…), or None.
    Without a client only the shape was checked (when it was drafted)."""
    if client is None:
        return None
    link = parse_reply_link(_parent(post))
    try:
        await ask_reddit(client, ReplyLink(link.post_id, link.comment_id, post.subreddit))
    except (InvalidInput, NotFound) as exc:
        return exc.message
    return None
