"""A post's fields as an operator gives them: checked for shape and normalised."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput
from core.reddit import RedditAPIError, normalize_subreddit
from storage.reddit_models import PostKind
from storage.repositories import reddit as repo

BODY_MAX = 40_000  # Reddit's limit for a text post
IMAGE_MAX_BYTES = 20 * 1024 * 1024  # the largest image Reddit's media upload takes
EDITABLE_FIELDS = frozenset(
    {
        "account_id",
        "subreddit",
        "kind",
        "title",
        "body",
        "url",
        "vault_item_id",
        "image_blob_key",
        "image_name",
        "image_mime",
        "flair_id",
        "flair_text",
        "nsfw",
        "spoiler",
        "send_replies",
    }
)


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _too_big(what: str, size: int) -> str:
    shown, cap = _mb(size), _mb(IMAGE_MAX_BYTES)
    if shown == cap:  # just over the limit: do not print the limit as the size
        shown = f"over {cap}"
    return f"{what} is {shown}; Reddit takes pictures up to {cap}."


def image_file_problem(
    *, mime: str | None, size: int | None, what: str = "This file"
) -> str | None:
    """Why a file offered as a post's picture cannot be one, judged from what Telegram says
    before any byte is fetched (None: worth fetching; the bytes are checked after)."""
    declared = (mime or "").split(";")[0].strip().lower()
    if declared and declared != "application/octet-stream" and not declared.startswith("image/"):
        return f"{what} is {declared}, not a picture."
    if size is not None and size > IMAGE_MAX_BYTES:
        return _too_big(what, size)
    return None


def parse_subreddit(text: str) -> str:
    try:
        return normalize_subreddit(text or "")
    except RedditAPIError as exc:
        raise InvalidInput(f"{exc.message}; give a name like r/test.") from None


async def clean_fields(
    session: AsyncSession, tenant_id: int, raw: dict[str, Any], *, partial: bool = False
) -> dict[str, Any]:
    """Check and normalise post fields; raises InvalidInput with what to fix. Reads the
    vault item a picture comes from through `session`."""
    out: dict[str, Any] = {}
    if "account_id" in raw:
        out["account_id"] = int(raw["account_id"])
    if "subreddit" in raw:
        out["subreddit"] = parse_subreddit(str(raw["subreddit"]))
        out["subreddit_key"] = out["subreddit"].lower()
    if "kind" in raw:
        kind = str(raw["kind"] or "").strip().lower()
        if kind == "text":
            kind = PostKind.self
        if kind not in {k.value for k in PostKind}:
            raise InvalidInput("A post is a text (self), link or image post.")
        out["kind"] = kind
    if "title" in raw:
        title = " ".join(str(raw["title"] or "").split())
        if not title:
            raise InvalidInput("The title is empty.")
        if len(title) > 300:
            raise InvalidInput(f"The title has {len(title)} characters; Reddit allows 300.")
        out["title"] = title
    if "body" in raw:
        body = raw["body"]
        body = body.strip() if isinstance(body, str) else None
        if body and len(body) > BODY_MAX:
            raise InvalidInput(f"The text has {len(body)} characters; Reddit allows 40,000.")
        out["body"] = body or None
    if "url" in raw:
        url = str(raw["url"]).strip() if raw["url"] else None
        if url and not url.lower().startswith(("http://", "https://")):
            raise InvalidInput("A link starts with http:// or https://.")
        out["url"] = url
    if "vault_item_id" in raw and raw["vault_item_id"] is not None:
        item_id = int(raw["vault_item_id"])
        image = await repo.vault_image(session, tenant_id, item_id)
        if image is None:
            raise InvalidInput(f"Vault item #{item_id} does not exist (or was deleted).")
        if image.blob_key is None:
            raise InvalidInput(
                f"Vault item #{item_id} has no stored copy of its bytes (Telegram holds "
                "the only one); send the picture to the bot again."
            )
        if not image.mime.startswith("image/"):
            raise InvalidInput(f"Vault item #{item_id} is {image.mime}, not an image.")
        if image.size is not None and image.size > IMAGE_MAX_BYTES:
            raise InvalidInput(_too_big(f"Vault item #{item_id}", image.size))
        out["vault_item_id"] = item_id
        out.setdefault("image_name", image.name)
        out.setdefault("image_mime", image.mime)
    elif "vault_item_id" in raw:
        out["vault_item_id"] = None
    for key in ("image_blob_key", "image_name", "image_mime"):
        if key in raw and raw[key] is not None:
            out[key] = str(raw[key])
        elif key in raw and key not in out:
            out[key] = None
    if "flair_id" in raw:
        flair_id = str(raw["flair_id"]).strip() if raw["flair_id"] else None
        if flair_id and len(flair_id) > 36:
            raise InvalidInput("That flair id is longer than Reddit's 36 characters.")
        out["flair_id"] = flair_id
    if "flair_text" in raw:
        text = str(raw["flair_text"]).strip() if raw["flair_text"] else None
        if text and len(text) > 64:
            raise InvalidInput("The flair text is longer than Reddit's 64 characters.")
        out["flair_text"] = text
    for key in ("nsfw", "spoiler", "send_replies"):
        if key in raw:
            out[key] = bool(raw[key])
    if not partial:
        kind = out["kind"]
        if kind == PostKind.link and not out.get("url"):
            raise InvalidInput("A link post needs a link.")
        if kind == PostKind.image and not (out.get("vault_item_id") or out.get("image_blob_key")):
            raise InvalidInput("An image post needs an image (send a photo or pick one).")
    return out
