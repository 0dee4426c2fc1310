"""The Telegram side of Opsdeck. aiogram's models are built on first use, not at import
(see ``bot.aiogram_models``); that has to happen before anything imports aiogram."""

from bot.aiogram_models import defer_model_builds

defer_model_builds()
