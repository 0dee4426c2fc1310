"""Settings come from `.env` for every concern, the outbox's included (issue 11 item 4): a value
in `.env` reaches the running sender and `/settings` shows it."""

from __future__ import annotations

from core.settings import Settings
from tests.e2e.conftest import OWNER, make_settings
from tests.fakes.telegram import FakeTelegram


async def test_outbox_values_in_dotenv_reach_the_sender_and_settings(tmp_path, tg: FakeTelegram):
    from bot.app import Opsdeck

    env_file = tmp_path / ".env"
    env_file.write_text(
        "OUTBOX_GLOBAL_PER_SECOND=17\nOUTBOX_PER_CHAT_PER_SECOND=0.5\nOUTBOX_BATCH_SIZE=40\n"
    )
    base = make_settings(tmp_path, tg)
    # every other concern as the e2e tests build it; the outbox's straight from the file
    given = {name: getattr(base, name) for name in type(base).model_fields if name != "outbox"}
    settings = Settings.load(env_file=env_file, **given)
    assert settings.outbox.global_per_second == 17

    app = Opsdeck(settings)
    await app.start()
    try:
        tg.user(OWNER, "Olga")
        assert app.sender.s.global_per_second == 17
        assert app.sender.pacer.gap == 1 / 0.5 + app.sender.s.pacing_margin_seconds
        since = tg.mark()
        await tg.send_text(tg.user(OWNER, "Olga"), "/settings")
        msg = await tg.wait_for_message(OWNER, "Effective settings", since=since, timeout=15)
        text = msg["text"]
        assert "OUTBOX_GLOBAL_PER_SECOND: 17" in text
        assert "OUTBOX_PER_CHAT_PER_SECOND: 0.5" in text
        assert "OUTBOX_BATCH_SIZE: 40" in text
    finally:
        await app.stop()
