"""The per-claimer limit on failed `/start <code>` lookups holds under concurrency, on SQLite and
PostgreSQL: the check and the count are one statement, so 60 guesses at once look up at most
the limit of 10 codes (before: 25 of 60 got through on SQLite)."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter

from core.ratelimit import Limit
from core.vault import Claimer, ClaimOutcome, ClaimService
from tests.integration.test_vault_claims import World, content, world  # noqa: F401

LIMIT = Limit(10, 900)
GUESSER = 555


def service(w: World) -> ClaimService:
    return ClaimService(w.uow, w.clock, failure_limit=LIMIT)


async def outcomes(w: World) -> Counter[str]:
    return Counter(c.outcome for c in await w.log())


async def test_sixty_concurrent_guesses_look_up_at_most_ten_codes(world: World) -> None:  # noqa: F811
    claims = service(world)
    guesses = [secrets.token_urlsafe(32) for _ in range(60)]
    results = await asyncio.gather(
        *(claims.claim(code, Claimer.telegram(GUESSER), "telegram") for code in guesses)
    )
    seen = Counter(r.outcome for r in results)
    # every looked-up code is unknown: that count is the number of lookups
    assert seen[ClaimOutcome.denied_unknown] == 10, seen
    assert seen[ClaimOutcome.denied_rate_limited] == 50, seen
    assert await outcomes(world) == {"denied:unknown": 10, "denied:rate_limited": 50}
    # another claimer is not affected
    other = await claims.claim(guesses[0], Claimer.telegram(GUESSER + 1), "telegram")
    assert other.outcome is ClaimOutcome.denied_unknown


async def test_malformed_codes_count_in_the_same_statement(world: World) -> None:  # noqa: F811
    claims = service(world)
    results = await asyncio.gather(
        *(claims.claim(f"bad-{n}", Claimer.telegram(GUESSER), "telegram") for n in range(30))
    )
    seen = Counter(r.outcome for r in results)
    assert seen == {ClaimOutcome.denied_malformed: 10, ClaimOutcome.denied_rate_limited: 20}


async def test_a_real_code_gives_its_reservation_back(world: World) -> None:  # noqa: F811
    claims = service(world)
    new = await world.link(max_uses=5, content=content())
    for _ in range(9):
        assert (
            await claims.claim(secrets.token_urlsafe(32), Claimer.telegram(GUESSER))
        ).outcome is ClaimOutcome.denied_unknown
    # real claims count nothing against the claimer
    first = await claims.claim(new.code, Claimer.telegram(GUESSER))
    assert first.outcome is ClaimOutcome.delivered
    for _ in range(3):
        again = await claims.claim(new.code, Claimer.telegram(GUESSER))
        assert again.outcome is ClaimOutcome.redelivered
    # so the tenth failure is still a lookup, and only the eleventh is refused
    tenth = await claims.claim(secrets.token_urlsafe(32), Claimer.telegram(GUESSER))
    assert tenth.outcome is ClaimOutcome.denied_unknown
    eleventh = await claims.claim(secrets.token_urlsafe(32), Claimer.telegram(GUESSER))
    assert eleventh.outcome is ClaimOutcome.denied_rate_limited
    assert "Try again in 15 minutes" in eleventh.reason_text
    # past the limit even a real code is not looked up
    blocked = await claims.claim(new.code, Claimer.telegram(GUESSER))
    assert blocked.outcome is ClaimOutcome.denied_rate_limited
    assert await world.used(new.link.id) == 1


async def test_refusals_past_the_limit_leave_the_count_at_the_failures(world: World) -> None:  # noqa: F811
    """Refused attempts were never looked up: after a burst the count is the limit, so the
    window ends on time and a real code tapped twice at once is not refused below it."""
    claims = service(world)
    new = await world.link(max_uses=5, content=content())
    both = await asyncio.gather(
        *(claims.claim(new.code, Claimer.telegram(GUESSER)) for _ in range(2))
    )
    assert sorted(r.outcome.value for r in both) == ["delivered", "redelivered"]
    await asyncio.gather(
        *(claims.claim(secrets.token_urlsafe(32), Claimer.telegram(GUESSER)) for _ in range(40))
    )
    async with world.sessionmaker() as session:
        from storage.ratelimit_models import RateCounter

        counter = await session.get(RateCounter, f"claim-failures:telegram:{GUESSER}")
    assert counter is not None and counter.hits == 10
