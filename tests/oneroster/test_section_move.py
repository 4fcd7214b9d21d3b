"""A learner who changes section, to one mapped to another SIS class, has their results sent
to that class as soon as `map-students` records the move. Their SIS student stayed the same
and their grades did not change, so a recompute alone found nothing to send: the new class
never got the learner's grades until one of them changed."""

from __future__ import annotations

from typing import Any

import pytest

from gradesync.domain.model import DeliveryState, LedgerRow
from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import wait_for
from tests.support.api import attempt
from tests.support.served import Served

from .conftest import CLIENT_ID, CLIENT_SECRET
from .facts import ADA, ALGEBRA, QUIZ_1

SIS = "/sis/connections/sis"


def _enrol(section: str) -> dict[str, Any]:
    return {"enrollments": [{"course_id": "c1", "person_id": "p1", "section_id": section}]}


@pytest.fixture
def gs(served: Served, sis: RunningSandbox) -> Served:
    """Course c1 mapped to class cls-1, its section sec-b to cls-3; Ada (stu-1, a student of
    both classes) in section sec-a, her 8 in the ticked q1 sent to cls-1."""
    sis.admin.add_sis(
        "classes", sourcedId="cls-3", school="sch-1", term="term-1", students=["stu-1"]
    )
    gs = served
    gs.ok("POST", "/ingest", json={"courses": [ALGEBRA], "activities": [QUIZ_1]})
    gs.ok("POST", "/ingest", json={"people": [ADA], **_enrol("sec-a")})
    gs.ok("POST", "/attempts", json=attempt("e1", 8, activity_id="q1", person_id="p1"))
    body = {"name": "SIS", "base_url": sis.base_url, "client_id": CLIENT_ID}
    body |= {"client_secret": CLIENT_SECRET, "profile": {"category_match": "name"}}
    gs.ok("PUT", SIS, json=body)
    klass = {"class_id": "cls-1", "school_id": "sch-1", "term_start": "2025-01-06"}
    gs.ok("PUT", f"{SIS}/classes/c1", json=klass)
    section = {**klass, "class_id": "cls-3", "section_id": "sec-b", "new_section": True}
    gs.ok("PUT", f"{SIS}/classes/c1", json=section)
    assert gs.ok("POST", f"{SIS}/courses/c1/students") == {"mapped": ["p1"], "unmapped": []}
    gs.ok("PUT", f"{SIS}/selection", json={"activity_ids": ["q1"]})
    wait_for(lambda: _sent(sis) == {("cls-1", "stu-1"): 8.0}, "Ada's 8 in cls-1")
    wait_for(lambda: _settled(gs), "Ada's row delivered", explain=lambda: _state(gs))
    return gs


def _sent(sis: RunningSandbox) -> dict[tuple[str, str], float]:
    """(class, student) -> score, of every result the SIS holds."""
    snapshot = sis.admin.inspect()["sis"]
    classes = {li["sourcedId"]: li["class"]["sourcedId"] for li in snapshot["lineItems"]}
    return {
        (classes[r["lineItem"]["sourcedId"]], r["student"]["sourcedId"]): r["score"]
        for r in snapshot["results"]
    }


def _row(gs: Served) -> LedgerRow:
    with gs.runtime.uow() as uow:
        return uow.ledger.get_many(gs.tenant, "sis", "c1", ["q1"])[("q1", "p1")]


def _state(gs: Served) -> str:
    with gs.runtime.uow() as uow:
        waiting = uow.dirty.count()
    return f"keys waiting: {waiting}, Ada's row: {_row(gs)}"


def _settled(gs: Served) -> bool:
    """Nothing left to compute, and Ada's q1 row delivered."""
    with gs.runtime.uow() as uow:
        waiting = uow.dirty.count()
    return waiting == 0 and _row(gs).state is DeliveryState.DELIVERED


def test_a_learner_moved_to_another_section_s_class_has_their_grade_sent_there(
    gs: Served, sis: RunningSandbox
) -> None:
    gs.ok("POST", "/ingest", json=_enrol("sec-b"))
    assert gs.ok("POST", f"{SIS}/courses/c1/students") == {"mapped": ["p1"], "unmapped": []}
    with gs.runtime.uow() as uow:
        link = uow.links.people(gs.tenant, "sis", "c1")["p1"]
    assert (link.remote_id, link.data) == ("stu-1", {"by": "sis_id", "class": "cls-3"})
    wait_for(lambda: _settled(gs), "the move computed and sent", explain=lambda: _state(gs))
    # the old class keeps what it took: gradesync deletes no grade it sent
    assert _sent(sis) == {("cls-1", "stu-1"): 8.0, ("cls-3", "stu-1"): 8.0}

    # and back to the course's own class: what cls-1 holds is sent there again (the same 8)
    sent_at = _row(gs).delivered_at
    assert sent_at is not None
    gs.ok("POST", "/ingest", json=_enrol("sec-a"))
    gs.ok("POST", f"{SIS}/courses/c1/students")
    wait_for(
        lambda: _settled(gs) and (_row(gs).delivered_at or sent_at) > sent_at,
        "the move back sent",
        explain=lambda: _state(gs),
    )
    assert _sent(sis) == {("cls-1", "stu-1"): 8.0, ("cls-3", "stu-1"): 8.0}
