"""Numbers typed by people: Unicode digits that str.isdigit() accepts but int() rejects."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from core.services.operators import parse_role, parse_user_id


@pytest.mark.parametrize("text", ["²", "¹²³", "١٢٣", "12a", "", " ", "-5", "0", "9" * 20, "1.5"])
def test_parse_user_id_refuses_anything_but_plain_ascii_digits(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_user_id(text)


def test_parse_user_id_accepts_an_id() -> None:
    assert parse_user_id(" 123456789 ") == 123456789


@pytest.mark.parametrize("text", ["owner", "", "admin", "Operator "])
def test_parse_role(text: str) -> None:
    if text.strip().lower() == "operator":
        assert parse_role(text) == "operator"
    else:
        with pytest.raises(InvalidInput):
            parse_role(text)
