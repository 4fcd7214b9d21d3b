"""An admin's pause reaches the engines as a signal, not through a re-read before every send:
in the same process at once (`destination_signals.SIGNALS`), from other processes through
PostgreSQL's notifications; the slow poll stays as the fallback."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.db.notifications import DestinationListener
from gradesync.domain.pauses import PauseCause
from gradesync.services import destination_admin
from gradesync.services.clock import SystemClock
from gradesync.services.destination_signals import SIGNALS, DestinationSignals
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory, wait_for
from tests.engine.conftest import DEST, FAST, Harness, T, learner, post, seed

# Without a signal, nothing would be re-read within a test's time.
SLOW = replace(FAST, pause_check=timedelta(minutes=10), pause_poll=timedelta(minutes=10))


@pytest.fixture
def heard() -> Iterator[None]:
    """This process hears other processes' changes (as a sole SQLite server, or with a
    PostgreSQL listener connected)."""
    SIGNALS.other_processes_heard = True
    yield
    SIGNALS.other_processes_heard = False


async def test_an_admins_pause_stops_sends_at_once_without_a_re_read_per_send(
    harness: Harness, db: Database, heard: None
) -> None:
    seed(db, learners=12, config={"concurrency": 2})
    engine = Engine(
        db.uow, SystemClock(), harness.factory, SLOW, waker=harness.waker, signals=SIGNALS
    )
    await harness.engine.aclose()
    harness.engine = engine
    engine.on_written(harness._notify)
    remote = harness.remote
    remote.hold = asyncio.Event()
    post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(12)])
    await engine.process_dirty()
    task = asyncio.create_task(engine.deliver_due())
    await remote.wait_for(lambda: remote.in_flight == 2)
    governor = engine.deliverer.governor
    assert governor.pause_window() == 600.0  # sends use a read up to ten minutes old
    await asyncio.to_thread(destination_admin.pause, db.uow, SystemClock(), T, DEST, actor="admin")
    remote.hold.set()
    stats = await task
    assert remote.sends == 2  # the two in flight finished; nothing else went out
    assert stats.gated == 10
    # resumed: the signal lifts the pause as quickly
    await asyncio.to_thread(destination_admin.resume, db.uow, SystemClock(), None, T, DEST)
    await harness.start()
    await harness.all_delivered(12)
    assert remote.sends == 12


async def test_without_other_processes_heard_sends_re_read_as_before(
    db: Database,
) -> None:
    seed(db, learners=0)
    engine = Engine(db.uow, SystemClock(), DoubleFactory(), SLOW, signals=SIGNALS)
    try:
        await engine.deliverer.governor.refresh_destinations(force=True)
        assert engine.deliverer.governor.pause_window() == SLOW.pause_check.total_seconds()
        SIGNALS.other_processes_heard = True
        assert engine.deliverer.governor.pause_window() == SLOW.pause_poll.total_seconds()
    finally:
        SIGNALS.other_processes_heard = False
        await engine.aclose()
    # a closed engine no longer listens
    assert engine.deliverer.governor.pause_window() == SLOW.pause_check.total_seconds()


@pytest.mark.postgres
def test_postgres_notifies_other_processes_of_a_pause(postgres_db: Database) -> None:
    seed(postgres_db, learners=0)
    signals = DestinationSignals()
    got: list[tuple[str, str]] = []
    lock = threading.Lock()

    def note(tenant_id: str, destination_id: str) -> None:
        with lock:
            got.append((tenant_id, destination_id))

    signals.subscribe(note)
    listener = DestinationListener(postgres_db.url, signals)
    listener.start()
    try:
        wait_for(listener.listening.is_set, "the listener to LISTEN")
        assert signals.other_processes_heard
        # a write that is rolled back announces nothing
        with postgres_db.uow() as uow:
            uow.destinations.lift_pause(T, DEST, PauseCause.CIRCUIT_OPEN)
        destination_admin.pause(postgres_db.uow, SystemClock(), T, DEST, actor="admin")
        wait_for(lambda: got, "the pause's notification")
        assert got == [(T, DEST)]
    finally:
        listener.stop()
    assert not signals.other_processes_heard


def test_a_listener_meeting_a_deadlock_says_it_in_one_line_a_try(
    postgres_db: Database, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deadlock (or a serialization conflict, a lock timeout) is no outage and no bug: one
    line each time, no traceback, and no end of an outage to say."""
    left = [3]
    connect = psycopg.connect

    def deadlocked(*args: Any, **kwargs: Any) -> psycopg.Connection[Any]:
        if threading.current_thread().name == "gradesync-destination-listener" and left[0]:
            left[0] -= 1
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return connect(*args, **kwargs)

    monkeypatch.setattr(psycopg, "connect", deadlocked)
    listener = DestinationListener(postgres_db.url, DestinationSignals(), retry_seconds=0.01)
    listener.start()
    try:
        wait_for(listener.listening.is_set, "the listener to LISTEN")
    finally:
        listener.stop()
    said = [r for r in caplog.records if r.name == "gradesync.adapters.db.notifications"]
    assert [r.getMessage() for r in said] == [
        "listening for destination changes: the database gave up on it for now:"
        " DeadlockDetected: deadlock detected, retrying"
    ] * 3
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in said)
