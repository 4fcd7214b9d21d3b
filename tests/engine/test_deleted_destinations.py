"""A deleted destination leaves nothing behind in a long-running engine: its client (closed
once no send holds it), its limits (semaphore, rate limiter, breaker), its outcome counts and
its metric series, whether the engine hears of the deletion (a signal) or finds it on its
next read of the destinations."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.db.notifications import DestinationListener
from gradesync.adapters.metrics import REGISTRY, PrometheusMeter, drop_destinations
from gradesync.domain.model import DeliveryState, Destination
from gradesync.services import destination_admin
from gradesync.services.clock import SystemClock
from gradesync.services.destination_signals import SIGNALS, DestinationSignals
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory, add_destination, wait_for_async
from tests.engine.conftest import COURSE, DEST, FAST, T, learner, post, seed

GONE = ("vendor-0", "vendor-1", "vendor-2")
LEARNERS = 3


class _Closing:
    """A double's client that says whether it was closed."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.closed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def aclose(self) -> None:
        self.closed = True


class _Factory(DoubleFactory):
    def __init__(self) -> None:
        super().__init__()
        self.clients: dict[str, list[_Closing]] = {}

    def __call__(self, destination: Destination) -> Any:
        client = _Closing(super().__call__(destination))
        self.clients.setdefault(destination.id, []).append(client)
        return client


def _seed(db: Database) -> None:
    """`lms` and three of a vendor's platforms, each linked to the course and its learners."""
    seed(db, learners=LEARNERS)
    people = [learner(i) for i in range(LEARNERS)]
    for dest in GONE:
        add_destination(
            db.uow,
            T,
            dest,
            links={COURSE: f"https://{dest}/courses/1"},
            people={p: f"sub-{p}" for p in people},
        )


def _delivered(db: Database, dest: str) -> int:
    with db.uow() as uow:
        rows = uow.ledger.get_many(T, dest, COURSE).values()
    return sum(r.state is DeliveryState.DELIVERED for r in rows)


async def _deliver_everywhere(db: Database, engine: Engine) -> None:
    post(db, None, [("a1", learner(i), 6.0) for i in range(LEARNERS)])
    await engine.process_dirty()
    await engine.deliver_due()
    for dest in (DEST, *GONE):
        assert _delivered(db, dest) == LEARNERS, dest


def _series(dest: str) -> float | None:
    return REGISTRY.get_sample_value(
        "gradesync_results_delivered_total", {"tenant": T, "destination": dest}
    )


def _holds_none_of_the_deleted(engine: Engine) -> bool:
    keys = {(T, d) for d in GONE}
    gov = engine.deliverer.governor
    return not (
        keys & engine.clients.held()
        or keys & set(gov.limits)
        or keys & set(gov.destinations)
        or keys & set(engine.deliverer.writer.delivered)
        or any(_series(d) is not None for d in GONE)
    )


def _engine(db: Database, factory: _Factory, **parts: Any) -> Engine:
    for dest in GONE:  # no series left by another test
        drop_destinations({(T, dest)})
    return Engine(db.uow, SystemClock(), factory, FAST, meter=PrometheusMeter(), **parts)


async def _check_dropped(engine: Engine, factory: _Factory) -> None:
    await wait_for_async(
        lambda: _holds_none_of_the_deleted(engine), "the deleted destinations dropped"
    )
    await wait_for_async(
        lambda: all(c.closed for d in GONE for c in factory.clients[d]),
        "the deleted destinations' clients closed",
    )
    # the destination still registered keeps its client, limits and series
    assert (T, DEST) in engine.clients.held() & set(engine.deliverer.governor.limits)
    assert not any(c.closed for c in factory.clients[DEST])
    assert _series(DEST) is not None


def _holds_all(engine: Engine) -> None:
    keys = {(T, d) for d in (DEST, *GONE)}
    assert keys <= engine.clients.held() & set(engine.deliverer.governor.limits)
    assert all(_series(d) == LEARNERS for d in GONE)  # counted, and never scraped


async def test_a_deleted_destination_signalled_leaves_no_client_limits_or_series(
    db: Database,
) -> None:
    """The unit of work tells the process's signals of the deletion (another process's, on
    PostgreSQL, through the listener): the engine drops what it kept at once, with no
    delivery pass and no metrics scrape."""
    _seed(db)
    factory = _Factory()
    engine = _engine(db, factory, signals=SIGNALS)
    try:
        await _deliver_everywhere(db, engine)
        _holds_all(engine)
        for dest in GONE:
            await asyncio.to_thread(destination_admin.delete, db.uow, SystemClock(), T, dest)
        await _check_dropped(engine, factory)
    finally:
        await engine.aclose()


async def test_a_deleted_destination_no_signal_told_of_goes_at_the_next_read(
    db: Database,
) -> None:
    """Without a signal (a command deleting it from another process on SQLite), the next
    read of the destinations finds it gone."""
    _seed(db)
    factory = _Factory()
    engine = _engine(db, factory)
    try:
        await _deliver_everywhere(db, engine)
        _holds_all(engine)
        for dest in GONE:
            await asyncio.to_thread(destination_admin.delete, db.uow, SystemClock(), T, dest)
        assert (T, GONE[0]) in engine.clients.held()  # nothing told it yet
        await engine.deliverer.governor.refresh_destinations(force=True)
        await _check_dropped(engine, factory)
    finally:
        await engine.aclose()


async def test_a_client_is_closed_only_once_the_sends_holding_it_end(db: Database) -> None:
    _seed(db)
    factory = _Factory()
    engine = _engine(db, factory, signals=SIGNALS)
    remote = factory.remote(GONE[0])
    remote.hold = asyncio.Event()
    try:
        post(db, None, [("a1", learner(i), 6.0) for i in range(LEARNERS)])
        await engine.process_dirty()
        task = asyncio.create_task(engine.deliver_due())
        await remote.wait_for(lambda: remote.in_flight == LEARNERS)
        await asyncio.to_thread(destination_admin.delete, db.uow, SystemClock(), T, GONE[0])
        gov = engine.deliverer.governor
        await wait_for_async(
            lambda: (T, GONE[0]) not in engine.clients.held() and (T, GONE[0]) not in gov.limits,
            "the deleted destination dropped",
        )
        (client,) = factory.clients[GONE[0]]
        await wait_for_async(
            lambda: client.closed or (T, GONE[0]) in engine.deliverer.drops_waiting(),
            "the client closed, or its closing waiting for its sends",
        )
        assert not client.closed  # its sends still hold it
        remote.hold.set()
        await task
        await wait_for_async(lambda: client.closed, "the client closed once its sends ended")
    finally:
        remote.hold.set()
        await engine.aclose()


@pytest.mark.postgres
async def test_another_processs_deletion_reaches_the_engine_through_postgres(
    postgres_db: Database,
) -> None:
    """The engine hears only what its listener passes on (PostgreSQL's notification of a
    deletion another process committed), and drops what it kept at once."""
    db = postgres_db
    _seed(db)
    factory = _Factory()
    signals = DestinationSignals()  # not the process's: the unit of work tells it nothing
    listener = DestinationListener(db.url, signals)
    listener.start()
    engine = _engine(db, factory, signals=signals)
    try:
        await wait_for_async(listener.listening.is_set, "the listener to LISTEN")
        await _deliver_everywhere(db, engine)
        _holds_all(engine)
        engine.deliverer.governor._destinations_at = float("inf")  # no read of all meanwhile
        for dest in GONE:
            await asyncio.to_thread(destination_admin.delete, db.uow, SystemClock(), T, dest)
        await _check_dropped(engine, factory)
    finally:
        await engine.aclose()
        await asyncio.to_thread(listener.stop)


async def test_a_destination_made_again_under_its_id_keeps_its_counters(db: Database) -> None:
    """Deleted while its sends are in flight, and made again under the same id before they
    end: the clean-up of the deleted one leaves the live one's series and counts alone (a
    live destination's counters are never reset)."""
    _seed(db)
    factory = _Factory()
    engine = _engine(db, factory, signals=SIGNALS)
    key = (T, GONE[0])
    remote = factory.remote(GONE[0])
    try:
        await _deliver_everywhere(db, engine)
        remote.hold = asyncio.Event()
        post(db, None, [("a1", learner(i), 8.0) for i in range(LEARNERS)])
        await engine.process_dirty()
        task = asyncio.create_task(engine.deliver_due())
        await remote.wait_for(lambda: remote.in_flight == LEARNERS)
        await asyncio.to_thread(destination_admin.delete, db.uow, SystemClock(), T, GONE[0])
        await wait_for_async(lambda: key not in engine.clients.held(), "the deletion learned")
        await asyncio.to_thread(
            add_destination,
            db.uow,
            T,
            GONE[0],
            links={COURSE: f"https://{GONE[0]}/courses/1"},
            people={learner(i): f"sub-{learner(i)}" for i in range(LEARNERS)},
        )
        gov = engine.deliverer.governor
        await gov.refresh_destinations(force=True)
        assert key in gov.destinations
        remote.hold.set()
        await task
        (old, *_) = factory.clients[GONE[0]]
        await wait_for_async(lambda: old.closed, "the deleted one's client closed")
        assert _series(GONE[0]) == LEARNERS  # counted before the deletion, not reset
        assert engine.deliverer.writer.delivered[key] == LEARNERS
    finally:
        remote.hold.set()
        await engine.aclose()


@pytest.mark.parametrize("told", [True, False], ids=["told", "unnoticed"])
async def test_a_destination_made_again_under_its_id_makes_columns_of_its_own(
    db: Database, told: bool
) -> None:
    """Made again under the same id, linked to another LMS course: its grades go to columns
    of its own course, not to the deleted one's columns this engine remembered, whether the
    engine was told of the deletion or reads the new registration without having seen it
    gone (its `created_at` differs)."""
    _seed(db)
    factory = _Factory()
    engine = _engine(db, factory, **({"signals": SIGNALS} if told else {}))
    gone = GONE[0]
    remote = factory.remote(gone)
    try:
        await _deliver_everywhere(db, engine)
        assert {item for item, _ in remote.results} == {f"https://{gone}/courses/1/items/a1"}
        await asyncio.to_thread(destination_admin.delete, db.uow, SystemClock(), T, gone)
        if told:
            await wait_for_async(
                lambda: (T, gone) not in engine.clients.held(), "the deletion learned"
            )
        await asyncio.to_thread(
            add_destination,
            db.uow,
            T,
            gone,
            links={COURSE: "https://elsewhere/courses/9"},
            people={learner(i): f"sub-{learner(i)}" for i in range(LEARNERS)},
        )
        if not told:
            await engine.deliverer.governor.refresh_destinations(force=True)
            assert (T, gone) not in engine.clients.held()  # the deleted one's client went
        post(db, None, [("a1", learner(i), 9.0) for i in range(LEARNERS)])
        await engine.process_dirty()
        await engine.deliver_due()
        assert _delivered(db, gone) == LEARNERS
        fresh = {k for k, v in remote.results.items() if v.score_given == 9.0}
        assert {item for item, _ in fresh} == {"https://elsewhere/courses/9/items/a1"}
    finally:
        await engine.aclose()
