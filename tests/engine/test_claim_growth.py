"""A pass claims more rows at a time while its sends wait for its claims: a claim costs about
the same for more rows (on PostgreSQL a round trip per statement), so a pass whose claims
cannot keep up with a fast destination doubles them, up to `CLAIM_GROWTH` times the setting."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gradesync.adapters.db.database import Database
from gradesync.services.delivery.pass_loop import CLAIM_GROWTH, next_claim_size
from tests.engine.conftest import COURSE, FAST, Harness, learner, ledger, post, seed


def test_a_full_claim_while_the_sends_ran_dry_doubles_the_next() -> None:
    assert next_claim_size(100, claimed=100, holding=0, most=800) == 200
    assert next_claim_size(400, claimed=400, holding=199, most=800) == 800
    assert next_claim_size(800, claimed=800, holding=0, most=800) == 800  # no further


def test_a_claim_stays_its_size_when_the_sends_had_enough_or_nothing_more_was_due() -> None:
    assert next_claim_size(100, claimed=100, holding=50, most=800) == 100  # sends had rows
    assert next_claim_size(100, claimed=99, holding=0, most=800) == 100  # all that was due


async def _claim_sizes(
    harness: Harness, db: Database, *, live_from: int | None = None
) -> list[int]:
    """The rows of each claim of a pass delivering 120 results of a run, claims of 4 at
    first, each claim slower than the sends: it finishes once all claimed before are sent.
    After the claim numbered `live_from` and each one after it, a live grade is computed."""
    seed(db, learners=120, activities=("a1", "b1"))
    engine = await harness.use(replace(FAST, claim_batch=4))
    post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(120)])
    await engine.process_dirty()
    rows = ledger(db).values()
    with db.uow() as uow:  # made a run's rows, as a remaster computes them
        uow.ledger.save_many([(row, COURSE) for row in rows], bulk=True)
        uow.commit()
    sizes: list[int] = []
    claimed = 0
    claim = engine.deliverer.claim

    async def slow_claim(scope: Any, limit: int, *, live_only: bool = False, **kw: Any) -> Any:
        nonlocal claimed
        await harness.all_delivered(claimed)
        got = await claim(scope, limit, live_only=live_only, **kw)
        claimed += len(got[0])
        if got[0] and not live_only:
            sizes.append(len(got[0]))
            if live_from is not None and len(sizes) >= live_from:
                post(db, harness.waker, [("b1", learner(len(sizes)), 6.0)])
                await engine.process_dirty()  # a live grade, due now
        return got

    engine.deliverer.claim = slow_claim  # type: ignore[method-assign]
    stats = await engine.deliver_due()
    assert stats.delivered == claimed and len(harness.remote.order) == claimed >= 120
    return sizes


async def test_a_pass_whose_claims_are_slower_than_its_sends_claims_more_each_time(
    harness: Harness, db: Database
) -> None:
    sizes = await _claim_sizes(harness, db)
    assert sizes[:4] == [4, 8, 16, 32], sizes
    assert max(sizes) == 4 * CLAIM_GROWTH  # and no further


async def test_claims_stay_short_while_live_grades_arrive(harness: Harness, db: Database) -> None:
    """A live grade computed meanwhile waits for the claim in progress, so a pass claims
    its first size again once live grades arrive, and grows no more while they keep
    arriving."""
    sizes = await _claim_sizes(harness, db, live_from=3)
    assert sizes[:3] == [4, 8, 16], sizes
    # from the claim after the first live grade on, the first size again
    assert set(sizes[4:]) == {4}, sizes
