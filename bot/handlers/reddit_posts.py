"""/post and /posts (placeholder until the compose flow lands)."""

from __future__ import annotations

from aiogram import Router


def build_router() -> Router:
    return Router(name="reddit_posts")
