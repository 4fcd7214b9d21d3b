"""The chaos tests' check of a run's pending results: excused only by a destination turned
off, or paused past the run's patience, as the database held it when the run finished; not
by what the run's message says, and not by a pause begun after it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.model import RunOutcome, RunScope, RunStage, Trigger
from gradesync.services import destination_admin
from gradesync.services.runs import request_run
from gradesync.testing import add_destination, add_tenant
from gradesync.testing.clock import ManualClock
from tests.faults import chaos

T, DEST = "t1", "lms"
COUNTS = {"keys": 3, "sent": 1, "pending": 2}


@pytest.fixture
def recorded(db: Database) -> Iterator[Database]:
    add_tenant(db.uow, T, "Tenant")
    add_destination(db.uow, T, DEST, name="Canvas")
    chaos.record_run_ends(db)
    try:
        yield db
    finally:
        chaos.forget_run_ends(db)  # the test database is shared with other tests


def _finish(db: Database, clock: ManualClock, message: str) -> dict[str, Any]:
    """A run that ends with two results pending and says `message`; as the API shows it."""
    run, _ = request_run(db.uow, None, clock, RunScope(T, DEST), Trigger.MANUAL, "ada")
    done = replace(
        run,
        stage=RunStage.FINISHED,
        outcome=RunOutcome.PARTLY_FAILED,
        counts=COUNTS,
        message=message,
        finished_at=clock.now(),
    )
    with db.uow() as uow:
        uow.runs.update(done)
        uow.commit()
    return {"id": run.id, "stage": "finished", "outcome": "partly_failed", "counts": COUNTS}


def _verdict(db: Database, run: dict[str, Any]) -> list[str]:
    return chaos.untruthful(run, chaos.held_past_patience(chaos.run_ends(db)[run["id"]]))


def test_a_pause_the_run_should_have_waited_out_does_not_excuse_it(recorded: Database) -> None:
    # a 429's pause of 2 s, within the 10 s patience: the run names it, but should have
    # waited; its own words do not excuse it
    clock = ManualClock()
    until = clock.now() + timedelta(seconds=2)
    destination_admin.pause(recorded.uow, clock, T, DEST, actor="gradesync", until=until)
    run = _finish(recorded, clock, "1 sent; 0 unchanged; 2 still pending (...; sent when it ends).")
    assert _verdict(recorded, run) == [
        "2 pending, though no destination was turned off or paused past the run's patience "
        "when it finished"
    ]


def test_a_pause_past_the_patience_or_until_resumed_excuses_it(recorded: Database) -> None:
    clock = ManualClock()
    until = clock.now() + chaos.PATIENCE + timedelta(seconds=1)
    destination_admin.pause(recorded.uow, clock, T, DEST, actor="ada", until=until)
    assert _verdict(recorded, _finish(recorded, clock, "")) == []
    destination_admin.pause(recorded.uow, clock, T, DEST, actor="ada", reason="exam week")
    assert _verdict(recorded, _finish(recorded, clock, "")) == []


def test_a_pause_begun_after_the_run_finished_does_not_excuse_it(recorded: Database) -> None:
    clock = ManualClock()
    run = _finish(recorded, clock, "1 sent; 0 unchanged; 2 still pending.")
    destination_admin.pause(recorded.uow, clock, T, DEST, actor="ada", reason="exam week")
    assert _verdict(recorded, run) != []
