"""One settings model (issue 11 item 4): every setting is read from `.env`, documented in
`.env.example`, and a bad value is one line naming its variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def setting_names() -> list[str]:
    names = []
    for field in Settings.model_fields.values():
        kind = field.annotation
        prefix = kind.model_config.get("env_prefix", "")
        names += [f"{prefix}{name}".upper() for name in kind.model_fields]
    return names


def test_every_setting_is_documented_in_env_example() -> None:
    text = (ROOT / ".env.example").read_text()
    missing = [n for n in setting_names() if not re.search(rf"^(# )?{n}=", text, re.M)]
    assert not missing, f"not in .env.example: {missing}"


def test_outbox_values_come_from_the_env_file(tmp_path, monkeypatch) -> None:
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    env = tmp_path / ".env"
    env.write_text("OUTBOX_GLOBAL_PER_SECOND=12\nOUTBOX_LEASE_SECONDS=20\n")
    settings = Settings.load(env_file=env)
    assert settings.outbox.global_per_second == 12
    assert settings.outbox.lease_seconds == 20
    # the environment wins over the file, as for every other concern
    monkeypatch.setenv("OUTBOX_GLOBAL_PER_SECOND", "9")
    assert Settings.load(env_file=env).outbox.global_per_second == 9


@pytest.mark.parametrize("value", ["fast", "0", "-3"])
def test_a_bad_outbox_value_names_its_variable(tmp_path, monkeypatch, value) -> None:
    monkeypatch.delenv("OUTBOX_GLOBAL_PER_SECOND", raising=False)
    env = tmp_path / ".env"
    env.write_text(f"OUTBOX_GLOBAL_PER_SECOND={value}\n")
    with pytest.raises(ConfigError) as err:
        Settings.load(env_file=env)
    assert str(err.value.message).startswith("OUTBOX_GLOBAL_PER_SECOND:")
