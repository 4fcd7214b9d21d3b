"""Each destination's delivery latency ends at its own acknowledgement, not when the settle
writer writes the outcome down: one grade sent to a fast LMS and a slow SIS, whose outcomes
are written in one batch, is timed apart."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from gradesync.adapters.db.database import Database
from gradesync.services.telemetry import NullMeter
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory, ManualClock, add_destination
from tests.engine.conftest import COURSE, FAST, T, learner, post, seed


class _Latencies(NullMeter):
    def __init__(self) -> None:
        self.seen: dict[str, list[float | None]] = {}

    def result_delivered(
        self, tenant: str, destination: str, latency_seconds: float | None
    ) -> None:
        self.seen.setdefault(destination, []).append(latency_seconds)


async def test_each_destination_s_latency_ends_at_its_own_acknowledgement(db: Database) -> None:
    clock = ManualClock()
    seed(db, learners=1)  # the LMS `lms`
    person = learner(0)
    add_destination(db.uow, T, "sis", links={COURSE: "class-1"}, people={person: f"sis-{person}"})
    factory = DoubleFactory()
    lms, sis = factory.remote("lms"), factory.remote("sis")
    sis.hold = asyncio.Event()  # the SIS answers once the test says
    meter = _Latencies()
    # both outcomes are written in one batch: the first waits for the second
    settings = replace(FAST, settle_gather=timedelta(minutes=1), settle_batch=2)
    engine = Engine(db.uow, clock, factory, settings, meter=meter)
    try:
        post(db, None, [("a1", person, 7.0)])
        await engine.process_dirty()  # pending at both from now
        delivering = asyncio.create_task(engine.deliver_due())
        await lms.wait_for(
            lambda: (
                lms.score_of("https://lms/courses/1/items/a1", f"sub-{person}") == 7.0
                and sis.in_flight == 1
            ),
            "the LMS's acknowledgement, the SIS still at work",
        )
        clock.advance(timedelta(seconds=5))  # the SIS takes 5 s more
        sis.hold.set()
        stats = await delivering
        assert stats.delivered == 2
    finally:
        await engine.aclose()
    assert meter.seen == {"lms": [0.0], "sis": [5.0]}
