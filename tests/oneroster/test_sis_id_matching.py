"""A learner given their SIS id after the course's students were mapped is matched to the
SIS's student by it when their grades are next computed: the SIS id's arrival (PUT /people,
an ingest) computes them at once, and a course's sync matches those whose SIS id came
unannounced. No `sis map-students` is needed. Until then every message says, for a SIS,
that the learner is not matched to the SIS's student yet and what matches them, never that
they did not start from an LTI link.

The workers look for work on their own only once an hour: a grade reaches the SIS within the
wait only if what was done signalled them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain import remedies
from gradesync.domain.model import DeliveryState, PersonLink
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services.sis import course_overview
from gradesync.testing import wait_for
from tests.support.served import Served
from tests.support.sis import SIS_PATH, one_learner_matched, results_in, sis_row

from .facts import ROSTER


@pytest.fixture
def gs(db: Database, tmp_path: Path, sis: RunningSandbox) -> Iterator[Served]:
    """p1's 8 in q1 sent to the SIS (stu-1); p2's 7 skipped: Bo has no SIS id."""
    yield from one_learner_matched(db, tmp_path, sis, ROSTER)


def _reason(gs: Served, person: str) -> str:
    with gs.runtime.uow() as uow:
        row = uow.ledger.get_many(gs.tenant, "sis", "c1", ["q1"])[("q1", person)]
    return row.reason_text or ""


def _link(gs: Served, person: str) -> PersonLink | None:
    with gs.runtime.uow() as uow:
        return uow.links.people(gs.tenant, "sis", "c1").get(person)


def _give_sis_id_unannounced(gs: Served, person_id: str, sis_id: str) -> None:
    """The SIS id stored the way no ingest would: nothing is marked or woken by it."""
    with gs.runtime.uow() as uow:
        person = uow.people.get(gs.tenant, person_id)
        assert person is not None
        uow.people.upsert(replace(person, sis_id=sis_id))
        uow.commit()


def test_a_learner_given_their_sis_id_is_matched_and_their_grade_sent(
    gs: Served, sis: RunningSandbox
) -> None:
    """The newcomer's case: PUT /people with the SIS id, and nothing else. The grade stayed
    `skipped no_person_link` until `sis map-students` was run, which no message named."""
    gs.ok("PUT", "/people/p2", json={"name": "Bo", "sis_id": "stu-2"})
    wait_for(
        lambda: results_in(sis).get("stu-2") == 7.0,
        "p2's grade in the SIS",
        explain=lambda: f"p2's row: {sis_row(gs, 'p2')}",
    )
    link = _link(gs, "p2")
    assert link is not None and (link.remote_id, link.course_id) == ("stu-2", "c1")
    # the SIS stores the score before gradesync has its answer; the outcome is written after
    wait_for(lambda: sis_row(gs, "p2") == (DeliveryState.DELIVERED, None), "p2's row delivered")
    # matched as map-students matches: running it now changes nothing
    assert gs.ok("POST", f"{SIS_PATH}/courses/c1/students") == {
        "mapped": ["p1", "p2"],
        "unmapped": [],
    }


def test_a_resync_matches_a_learner_whose_sis_id_came_unannounced(
    gs: Served, sis: RunningSandbox
) -> None:
    """Before the sync, the diagnosis and the course's triage say the learner with SIS id
    stu-2 is not matched to the SIS's student yet and name the route that matches them (the
    triage called them "did not start from an LTI link", the diagnosis said to give them the
    SIS id they had); the course's resync then matches them and sends the grade."""
    _give_sis_id_unannounced(gs, "p2", "stu-2")
    route = "POST /api/v1/sis/connections/sis/courses/c1/students"

    checks = gs.ok("GET", "/activities/q1/learners/p2/diagnosis")["checks"]
    [matched] = [c for c in checks if c["code"] == "matched_in_sis"]
    assert not matched["passed"]
    assert "'stu-2'" in matched["evidence"] and "yet" in matched["evidence"], matched
    assert route in matched["remedy"], matched
    assert "Give the learner their SIS id" not in matched["remedy"], matched

    triage = gs.ok("GET", "/courses/c1/diagnosis")
    learners = {c["code"]: c for c in triage["causes"]["learners"]}
    assert "not_launched" not in learners, learners
    cause = learners["not_matched_in_sis"]
    assert cause["learners"] == ["p2"] and cause["destination_id"] == "sis"
    assert "LTI link" not in cause["title"] and route in cause["remedy"], cause
    assert not remedies.names_command(cause["remedy"]), cause

    gs.ok("POST", "/courses/c1/sync", json={"trigger": "resync"})
    wait_for(
        lambda: results_in(sis).get("stu-2") == 7.0,
        "p2's grade in the SIS",
        explain=lambda: f"p2's row: {sis_row(gs, 'p2')}",
    )
    link = _link(gs, "p2")
    assert link is not None and link.remote_id == "stu-2"


def test_a_learner_with_no_sis_id_is_told_how_to_be_matched_per_reader(gs: Served) -> None:
    """The reason of a learner with no SIS id said "check the learner's SIS id and the class
    roster, then resync": it names what matches them, in each reader's words."""
    text = _reason(gs, "p2")
    said = remedies.said_of(text)
    assert "no SIS id" in said and "'SIS'" in said, said
    cli = remedies.for_reader("no_person_link", text, remedies.Reader.CLI, "sis")
    assert "gradesync sis map-student sis p2 SOURCEDID" in cli, cli
    assert "PUT /api/v1/people/p2" in cli, cli
    api = remedies.for_reader("no_person_link", text, remedies.Reader.API, "sis")
    assert "PUT /api/v1/sis/connections/sis/students/p2" in api, api
    assert not remedies.names_command(api), api
    console = remedies.for_reader("no_person_link", text, remedies.Reader.CONSOLE, "sis")
    assert "/console/sis/sis/courses/c1" in console, console
    assert remedies.for_instructor("no_person_link", text).endswith(
        remedies.FOR_INSTRUCTORS["give_sis_id"]
    )
    # the learner's diagnosis says the same, and no LTI launch
    checks = gs.ok("GET", "/activities/q1/learners/p2/diagnosis")["checks"]
    [matched] = [c for c in checks if c["code"] == "matched_in_sis"]
    assert "no SIS id" in matched["evidence"], matched
    assert "PUT /api/v1/sis/connections/sis/students/p2" in matched["remedy"], matched
    triage = gs.ok("GET", "/courses/c1/diagnosis")
    codes = {c["code"] for c in triage["causes"]["learners"]}
    assert codes == {"no_sis_id"}, triage["causes"]


def _matched(gs: Served, person: str) -> dict[str, Any]:
    checks = gs.ok("GET", f"/activities/q1/learners/{person}/diagnosis")["checks"]
    [matched] = [c for c in checks if c["code"] == "matched_in_sis"]
    return matched


def test_a_learner_s_new_sis_id_moves_their_results_to_its_student(
    gs: Served, sis: RunningSandbox
) -> None:
    """Ada was matched to stu-1 by her SIS id; her SIS id is corrected to stu-2. Her grades
    kept going to stu-1 (the link made by the old id stayed): the link follows the new id,
    her 8 is sent to stu-2 at once (unchanged, so only the move sends it), and what stu-1
    took stays in the SIS (gradesync deletes no grade it sent), said in her diagnosis."""
    gs.ok("PUT", "/people/p1", json={"name": "Ada", "sis_id": "stu-2"})
    wait_for(
        lambda: results_in(sis).get("stu-2") == 8.0,
        "p1's grade sent to their new SIS student",
        explain=lambda: f"p1's link: {_link(gs, 'p1')}; row: {sis_row(gs, 'p1')}",
    )
    link = _link(gs, "p1")
    assert link is not None and (link.remote_id, link.course_id) == ("stu-2", "c1")
    wait_for(lambda: sis_row(gs, "p1") == (DeliveryState.DELIVERED, None), "p1's row delivered")
    assert results_in(sis) == {"stu-1": 8.0, "stu-2": 8.0}  # the old record is left, not deleted
    matched = _matched(gs, "p1")
    assert matched["passed"] and "'stu-2'" in matched["evidence"], matched
    assert "'stu-1' is left in the SIS" in matched["evidence"], matched
    # matched as map-students matches: running it now changes nothing
    assert gs.ok("POST", f"{SIS_PATH}/courses/c1/students") == {
        "mapped": ["p1"],
        "unmapped": ["p2"],
    }
    assert results_in(sis) == {"stu-1": 8.0, "stu-2": 8.0}


def test_a_student_picked_by_hand_is_kept_and_the_new_sis_id_named(
    gs: Served, sis: RunningSandbox
) -> None:
    """A student linked by hand (map-student) is the admin's choice: a new SIS id does not
    replace it, and the learner's diagnosis and the course's SIS page say so."""
    gs.ok("PUT", f"{SIS_PATH}/students/p1", json={"student_id": "stu-1"})
    gs.ok("PUT", "/people/p1", json={"name": "Ada", "sis_id": "stu-2"})
    link = _link(gs, "p1")
    assert link is not None and link.remote_id == "stu-1"
    assert sis_row(gs, "p1") == (DeliveryState.DELIVERED, None)  # nothing to send again
    matched = _matched(gs, "p1")
    assert matched["passed"], matched
    assert "Linked by hand" in matched["evidence"] and "'stu-2'" in matched["evidence"], matched
    # what the course's SIS passback page shows beside the learner's student
    overview = course_overview(
        gs.runtime.uow, tenant_id=gs.tenant, destination_id="sis", course_id="c1"
    )
    ada = next(m for m in overview.learners if m.person.id == "p1")
    assert (ada.student_id, ada.sis_id_not_followed) == ("stu-1", "stu-2")
    assert results_in(sis) == {"stu-1": 8.0}
