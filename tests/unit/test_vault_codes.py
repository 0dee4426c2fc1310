"""Claim-code shape, claim URLs, the words for every outcome and the HTTP status of refusals.
(The shared rate limiter is tested on both backends in tests/integration/test_shared_limits.py.)"""

from __future__ import annotations

import pytest

from bot.vault_delivery import UNDELIVERED
from bot.web_claims import REFUSAL_STATUS
from core.crypto import new_claim_code
from core.vault.codes import CODE_LENGTH, deep_link, http_link, is_well_formed
from core.vault.texts import CLAIMER_TEXT, OPERATOR_TEXT, claimer_text, operator_text
from storage.vault_models import ClaimOutcome


def test_generated_codes_are_well_formed_and_fit_a_start_payload() -> None:
    codes = {new_claim_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(is_well_formed(c) and len(c) == CODE_LENGTH <= 64 for c in codes)


@pytest.mark.parametrize(
    "code",
    [
        "",
        "a" * 42,
        "a" * 44,
        "a" * 42 + "=",
        "a" * 42 + "/",
        "a" * 42 + " ",
        "a" * 42 + "é",
        "a" * 42 + "\n",
        None,
        42,
        b"a" * 43,
    ],
)
def test_malformed_codes(code: object) -> None:
    assert not is_well_formed(code)


def test_urls() -> None:
    code = "A" * 43
    assert deep_link("@OpsdeckBot", code) == f"https://t.me/OpsdeckBot?start={code}"
    assert http_link("https://x.example/", code) == f"https://x.example/claim/{code}"


def test_every_outcome_has_words_and_every_refusal_a_status() -> None:
    for outcome in ClaimOutcome:
        assert OPERATOR_TEXT[outcome]
        assert operator_text(outcome.value) == OPERATOR_TEXT[outcome]
        if outcome in UNDELIVERED.values():
            # Written after a granted send failed: operators read it, no claimer is answered.
            assert outcome not in CLAIMER_TEXT and outcome not in REFUSAL_STATUS
            assert not outcome.delivers
            continue
        assert CLAIMER_TEXT[outcome]
        assert claimer_text(outcome.value) == CLAIMER_TEXT[outcome]
        if not outcome.delivers:
            assert REFUSAL_STATUS[outcome] in (404, 409, 410, 429)
    assert operator_text("denied:something-new") == "denied:something-new"
