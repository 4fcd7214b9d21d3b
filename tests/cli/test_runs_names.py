"""`gradesync runs list|show` name a run's destination as a person knows it: by its name,
with its id only where the name does not say which (two destinations have it, or it was
deleted), and each destination deleted while the run ran likewise, with what the run sent
to it before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gradesync.adapters.db.database import Database
from gradesync.domain.model import (
    Destination,
    DestinationKind,
    RunOutcome,
    RunScope,
    RunStage,
    SyncRun,
    Tenant,
    Trigger,
)
from tests.support.cli import Run

T, COURSE = "northwind", "chemistry-101"
AT = datetime(2025, 3, 1, 12, tzinfo=UTC)


def _run(n: int, destination_id: str | None, name: str | None, **counts: object) -> SyncRun:
    return SyncRun(
        f"run_{n:032d}",
        RunScope(T, destination_id, COURSE),
        Trigger.MANUAL,
        "ada",
        RunStage.FINISHED,
        RunOutcome.PARTLY_FAILED if counts.get("destinations_deleted") else RunOutcome.SUCCEEDED,
        {"sent": 2, **counts},
        None,
        AT + timedelta(minutes=n),
        AT + timedelta(minutes=n),
        AT + timedelta(minutes=n, seconds=30),
        destination_name=name,
    )


def _seed(db: Database) -> None:
    """Canvas (one of its name), two destinations named Brightspace, and Moodle deleted while
    its run ran; a run of each, and one of every destination."""
    with db.uow() as uow:
        uow.tenants.upsert(Tenant(T, "Northwind"), AT)
        for dest_id, name in (
            ("canvas-production", "Canvas"),
            ("d2l-a", "Brightspace"),
            ("d2l-b", "Brightspace"),
            ("moodle", "Moodle"),
        ):
            uow.destinations.upsert(
                Destination(T, dest_id, DestinationKind.LTI13_AGS, name), AT - timedelta(days=1)
            )
        runs = [
            _run(1, "canvas-production", "Canvas"),
            _run(2, "d2l-b", "Brightspace"),
            _run(3, "moodle", "Moodle", destinations_deleted={"moodle": 2}),
            _run(4, None, None),
        ]
        for r in runs:
            uow.runs.add(r)
            uow.runs.update(r)
        uow.destinations.delete(T, "moodle", AT + timedelta(minutes=3, seconds=10))
        uow.commit()


def test_runs_list_names_each_runs_destination(gradesync: Run, cli_db: Database) -> None:
    _seed(cli_db)
    out = gradesync("runs", "list", "-t", T).stdout
    assert f"{COURSE} -> Canvas, by ada" in out, out
    assert f"{COURSE} -> Brightspace (d2l-b), by ada" in out, out
    assert f"{COURSE} -> Moodle (moodle, deleted), by ada" in out, out
    assert f"{COURSE} -> all destinations, by ada" in out, out
    # a destination deleted under a run is among what the list shows of it
    assert "destinations deleted 1 (Moodle (moodle): 2 sent before)" in out, out
    assert "canvas-production" not in out, out


def test_runs_show_names_the_destination_and_those_deleted_while_it_ran(
    gradesync: Run, cli_db: Database
) -> None:
    _seed(cli_db)
    shown = gradesync("runs", "show", f"run_{3:032d}", "-t", T).stdout
    assert f"scope: course {COURSE}, destination Moodle (moodle, deleted)" in shown, shown
    # one destination deleted, two results sent to it before (not "2" destinations)
    assert "destinations deleted 1 (Moodle (moodle): 2 sent before)" in shown, shown
    one = gradesync("runs", "show", f"run_{1:032d}", "-t", T).stdout
    assert f"scope: course {COURSE}, destination Canvas\n" in one, one
    every = gradesync("runs", "show", f"run_{4:032d}", "-t", T).stdout
    assert f"scope: course {COURSE}, destination all\n" in every, every
