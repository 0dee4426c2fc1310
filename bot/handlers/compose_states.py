"""The steps of /post (the Reddit compose flow), apart from its handlers so that another
router can tell where the flow is without importing them: the vault leaves a file sent at
`Compose.body` to the flow, which takes it as the post's picture."""

from __future__ import annotations

from aiogram.fsm.state import State, StatesGroup


class Compose(StatesGroup):
    account = State()
    subreddit = State()
    kind = State()
    title = State()
    body = State()  # the text, the link, or the picture (typed vault number or a sent file)
    flair = State()
    flags = State()
    when = State()
    preview = State()
    reschedule = State()
    edit = State()  # choosing what to change in a draft or queued post
