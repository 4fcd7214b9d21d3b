"""A score's send that makes a request after its first (a SIS's refused result looked up,
`oneroster._gone_or`) makes it within the send's gate (`Governor.further_requests`), given
whether the send is the breaker's probe as the send read it off the limits it holds."""

from __future__ import annotations

import asyncio
from datetime import datetime

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Destination
from gradesync.services.destination import (
    DesiredResult,
    Receipt,
    RequestGate,
    ResultTarget,
    ungated,
)
from gradesync.services.worker import Engine
from gradesync.testing import DEADLINE, ManualClock
from gradesync.testing.double import DoubleClient, Remote, server_error
from tests.engine.conftest import DEST, FAST, Harness, T, learner, post, seed, states


class _LooksUp(DoubleClient):
    """Each send, once answered, asks the destination again within its gate, as a SIS's
    refused result's look-up does; `looked` gets each look-up let through."""

    def __init__(self, d: Destination, remote: Remote, looked: list[str]) -> None:
        super().__init__(d, remote)
        self._looked = looked

    async def put_result(
        self,
        target: ResultTarget,
        result: DesiredResult,
        timestamp: datetime,
        *,
        each_request: RequestGate = ungated,
    ) -> Receipt:
        async with each_request():
            said = await super().put_result(target, result, timestamp)
        async with each_request():  # a rate token of its own, the pause and breaker read
            self._looked.append(target.person.person_id)
        return said


async def test_the_breakers_probe_makes_its_further_requests_as_the_probe(
    harness: Harness, db: Database
) -> None:
    """The breaker opened and cooled down: the next send is its probe, and its look-up goes
    on as part of it (not held back as a request beside another's probe), and the answer
    closes the breaker."""
    seed(db, learners=3, config={"concurrency": 1})
    clock, looked = ManualClock(), []
    engine = Engine(
        db.uow, clock, lambda d: _LooksUp(d, harness.factory.remote(d.id), looked), FAST
    )
    try:
        harness.remote.fail_next(3, server_error())  # FAST's threshold: the breaker opens
        post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(3)])
        await engine.process_dirty()
        await engine.deliver_due()
        lim = engine.deliverer.governor.limits[(T, DEST)]
        assert lim.breaker.state.value == "open" and looked == []
        clock.advance(FAST.breaker.cooldown)
        # the probe, then the rest (a probe's look-up held back as if another request were
        # the probe would leave its row waiting, the probe out, and the pass would not end)
        await asyncio.wait_for(engine.deliver_due(), DEADLINE)
        assert sorted(looked) == [learner(i) for i in range(3)]
        assert lim.breaker.state.value == "closed" and not lim.breaker.probing
        assert states(db) == {"delivered": 3}
    finally:
        await engine.aclose()
