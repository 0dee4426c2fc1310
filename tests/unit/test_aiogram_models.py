"""aiogram's models are built on first use (bot/aiogram_models.py), and every one of them can be.

Each check runs in a fresh interpreter: whether the models were deferred depends on what the
process imported before aiogram.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import bot.aiogram_models

ROOT = Path(__file__).resolve().parents[2]

EVERY_MODEL_BUILDS = """
import bot.app
import aiogram.methods, aiogram.types
from pydantic import BaseModel

assert not aiogram.types.Message.__pydantic_complete__, "built at import"
models = [
    getattr(module, name)
    for module in (aiogram.types, aiogram.methods)
    for name in module.__all__
    if isinstance(getattr(module, name), type) and issubclass(getattr(module, name), BaseModel)
]
assert len(models) > 500, len(models)
for model in models:
    model.model_rebuild()
    assert model.__pydantic_complete__, model
print(len(models))
"""

RICH_UPDATES = """
import bot
from aiogram import Bot
from aiogram.methods import SendDocument
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Update

message = {
    "message_id": 7, "date": 1700000000, "chat": {"id": 5, "type": "private"},
    "from": {"id": 5, "is_bot": False, "first_name": "Olga"},
    "document": {"file_id": "D1", "file_unique_id": "U1", "file_name": "a.pdf",
                 "mime_type": "application/pdf", "file_size": 3},
    "caption": "/q3", "caption_entities": [{"type": "bot_command", "offset": 0, "length": 3}],
    "reply_to_message": {
        "message_id": 6, "date": 1700000000, "chat": {"id": 5, "type": "private"},
        "photo": [{"file_id": "P1", "file_unique_id": "U2", "width": 90, "height": 60}],
        "reply_markup": {"inline_keyboard": [[{"text": "Go", "callback_data": "v:1"}]]},
    },
}
update = Update.model_validate({"update_id": 1, "message": message})
assert update.message.document.file_name == "a.pdf"
assert update.message.reply_to_message.photo[0].width == 90
assert update.message.reply_to_message.reply_markup.inline_keyboard[0][0].callback_data == "v:1"
dumped = update.model_dump(exclude_none=True, by_alias=True)
assert dumped["message"]["from"]["first_name"] == "Olga", dumped
press = Update.model_validate({"update_id": 2, "callback_query": {
    "id": "q", "from": {"id": 5, "is_bot": False, "first_name": "Olga"},
    "chat_instance": "c", "data": "v:1", "message": message}})
assert press.callback_query.message.document.file_id == "D1"
call = SendDocument(chat_id=5, document="D1", reply_markup=InlineKeyboardMarkup(
    inline_keyboard=[[InlineKeyboardButton(text="a", callback_data="b")]]))
assert call.reply_markup.inline_keyboard[0][0].text == "a"
print("ok")
"""

CLI_IMPORTS = """
import sys
import bot.__main__
print("aiogram" in sys.modules)
"""


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_every_aiogram_model_builds_on_first_use() -> None:
    assert int(_python(EVERY_MODEL_BUILDS)) > 500


def test_deferred_models_parse_nested_updates_and_build_calls() -> None:
    assert _python(RICH_UPDATES) == "ok"


def test_the_cli_does_not_load_aiogram_for_migrate() -> None:
    assert _python(CLI_IMPORTS) == "False"


def test_this_test_process_runs_the_deferred_models_too() -> None:
    """tests/conftest.py imports `bot` first, so every test sees what production sees."""
    from aiogram.types import Update

    assert bot.aiogram_models._aiogram_namespace is not None
    assert Update.model_validate({"update_id": 3}).update_id == 3
