"""Plain words for every claim outcome: one for the person claiming, one for operators."""

from __future__ import annotations

import math

from storage.vault_models import ClaimOutcome

CLAIMER_TEXT: dict[ClaimOutcome, str] = {
    ClaimOutcome.delivered: "Here is your file.",
    ClaimOutcome.redelivered: "Here is your file again.",
    ClaimOutcome.denied_malformed: (
        "This link is not valid. Check that you copied all of it, or ask the sender again."
    ),
    ClaimOutcome.denied_unknown: (
        "This link does not exist. Check that you copied all of it, or ask the sender for a "
        "new one."
    ),
    ClaimOutcome.denied_expired: "This link has expired. Ask the sender for a new one.",
    ClaimOutcome.denied_used_up: (
        "This link has already been used as many times as allowed. Ask the sender for a new one."
    ),
    ClaimOutcome.denied_revoked: "This link was withdrawn by the sender.",
    ClaimOutcome.denied_deleted: "The file behind this link is no longer available.",
    ClaimOutcome.denied_telegram_only: (
        "HTTP download is not available for this file; open the Telegram link instead."
    ),
    ClaimOutcome.denied_rate_limited: "Too many attempts with links that do not work. Try later.",
}

OPERATOR_TEXT: dict[ClaimOutcome, str] = {
    ClaimOutcome.delivered: "delivered (one use spent)",
    ClaimOutcome.redelivered: "delivered again to the same person (no use spent)",
    ClaimOutcome.denied_malformed: "refused: not a valid code",
    ClaimOutcome.denied_unknown: "refused: no such link",
    ClaimOutcome.denied_expired: "refused: link expired",
    ClaimOutcome.denied_used_up: "refused: no uses left",
    ClaimOutcome.denied_revoked: "refused: link revoked",
    ClaimOutcome.denied_deleted: "refused: file deleted",
    ClaimOutcome.denied_telegram_only: "refused over HTTP: the file is Telegram-only",
    ClaimOutcome.denied_rate_limited: "refused: too many failed attempts (code not checked)",
    ClaimOutcome.undelivered_source: "not delivered: the stored copy could not be read",
    ClaimOutcome.undelivered_unreachable: "not delivered: they blocked the bot or left the chat",
    ClaimOutcome.undelivered_rejected: "not delivered: Telegram refused the file",
    ClaimOutcome.undelivered_gave_up: "not delivered: Telegram kept failing",
    ClaimOutcome.undelivered_unknown: "sent, but the answer was lost: it may not have arrived",
}


def rate_limited_text(retry_after_seconds: float) -> str:
    """What a claimer over the failed-attempt limit reads, with the wait in minutes."""
    minutes = max(1, math.ceil(retry_after_seconds / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return (
        "Too many attempts with links that do not work. "
        f"Try again in {minutes} {unit}, or ask the sender for the link again."
    )


def claimer_text(outcome: str) -> str:
    return CLAIMER_TEXT.get(ClaimOutcome(outcome), "This link cannot be used.")


def operator_text(outcome: str) -> str:
    try:
        return OPERATOR_TEXT[ClaimOutcome(outcome)]
    except ValueError:
        return outcome
