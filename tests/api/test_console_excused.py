"""An excused learner reads as excused wherever gradesync words the grade, at an LMS too.

`POST /attempts {"score_given": null, "excused": true}` made the course grid of an LTI 1.3
LMS say "no score" (a SIS's said "excused"): the LMS has no excused state, so the policy
drops the flag from what it sends there, and the grid read the grade from that flag alone.
The learner's being excused is now kept in the desired result beside what is sent (not
hashed, so nothing is sent again for it), and the grid, the diagnosis page, the doctor and
the grades API say the learner is excused and what the LMS gets for it.

A grade a SIS keeps while gradesync sends nothing for it read *Kept in LMS*: at a SIS it
reads *Kept in SIS*, on its course grid, the Destinations page and the SIS passback page.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from gradesync.domain.ledger import desired_from_json, result_hash
from gradesync.domain.model import (
    CourseLink,
    DeliveryState,
    DestinationKind,
    LedgerKey,
    LedgerRow,
    PersonLink,
)
from gradesync.services.compute import compute_activity
from gradesync.testing import add_destination
from tests.support.api import ApiEnv, Caller, attempt
from tests.support.school import ada_attempts_at_lms, grid_cell, kept_at, school, words, work_out

LMS_EXCUSED = "excused (the LMS gets no score: it has no excused state)"
LTI11_EXCUSED = "excused (the LMS's grade is removed: it has no excused state)"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _ada_excused(api: ApiEnv) -> Caller:
    """Biology 101 goes to an LTI 1.3 LMS (`lms`), an LTI 1.1 LMS (`lms11`) and a SIS
    (`sis`), each knowing Ada; the courseware excuses her on Quiz 1, and her grade is worked
    out for each (not sent yet). The console is signed in as an admin."""
    admin = school(api, api.district_sis())
    ada_attempts_at_lms(admin, api, attempt("e1", None, excused=True))
    add_destination(
        api.db.uow, "t1", "lms11", DestinationKind.LTI11_OUTCOMES,
        links={"c1": "course-1"}, people={"p1": "s-p1"},
    )  # fmt: skip
    with api.db.uow() as uow:
        uow.links.save_person(PersonLink("t1", "sis", "p1", "stu-1"))
        uow.links.save_course(CourseLink("t1", "sis", "c1", "class-1"))
        uow.commit()
    work_out(api)
    api.console_admin("t1")
    return admin


def _row(api: ApiEnv, dest: str) -> LedgerRow:
    with api.db.uow() as uow:
        row = uow.ledger.get(LedgerKey("t1", dest, "a1", "p1"))
    assert row is not None and row.desired is not None
    return row


def test_the_grid_says_an_excused_learner_is_excused_at_an_lms_too(api: ApiEnv) -> None:
    _ada_excused(api)
    at = {
        d: grid_cell(api.client.get(f"/console/courses/c1?destination={d}").text, "p1", "a1")
        for d in ("lms", "lms11", "sis")
    }
    assert LMS_EXCUSED in at["lms"], at["lms"]
    assert LTI11_EXCUSED in at["lms11"], at["lms11"]
    assert "excused" in at["sis"] and "(the" not in at["sis"], at["sis"]  # the SIS takes it
    assert not any("no score" in cell.replace("gets no score", "") for cell in at.values()), at


def test_what_the_lms_is_sent_is_unchanged_and_hashed_as_before(api: ApiEnv) -> None:
    """The fact rides beside what is sent: the LMS still gets no excused flag and no score,
    and the row's hash is the one it had before the fact was kept (no grade is resent)."""
    _ada_excused(api)
    lms, sis = _row(api, "lms"), _row(api, "sis")
    assert lms.desired is not None and sis.desired is not None
    assert lms.desired["excused"] is False and lms.desired["score_given"] is None
    assert lms.desired["learner_excused"] is True
    assert sis.desired["excused"] is True
    before = replace(desired_from_json(lms.desired), learner_excused=False)
    assert lms.desired_hash == result_hash(before)


def test_the_diagnosis_page_and_the_doctor_say_the_learner_is_excused(api: ApiEnv) -> None:
    _ada_excused(api)
    page = api.client.get("/console/diagnosis?course=c1&activity=a1&person=p1")
    assert page.status_code == 200
    cards = {  # each gradebook's card, as read
        part.split('"', 1)[0]: words(part.split(">", 1)[1].split("</p>", 1)[0])
        for part in page.text.split('data-destination="')[1:]
    }
    assert f"wanted there: {LMS_EXCUSED}" in cards["lms"], cards["lms"]
    assert f"wanted there: {LTI11_EXCUSED}" in cards["lms11"], cards["lms11"]
    assert "wanted there: excused" in cards["sis"], cards["sis"]
    assert "no score /" not in page.text

    said = api.runtime.diagnose_learner_activity("t1", "p1", "a1", "lms")
    delivery = next(c for c in said.checks if c.code == "delivery")
    assert delivery.evidence.startswith(LMS_EXCUSED), delivery.evidence
    assert said.details["desired"]["excused"] is True


def test_the_grades_api_says_the_learner_is_excused_and_what_the_lms_gets(api: ApiEnv) -> None:
    admin = _ada_excused(api)
    grades = admin.get("/people/p1/grades").json()["destinations"]
    a1 = {d: next(c for c in cells if c["activity_id"] == "a1") for d, cells in grades.items()}
    assert a1["lms"]["grade_text"] == LMS_EXCUSED
    assert a1["lms"]["desired"]["learner_excused"] is True
    assert a1["lms11"]["grade_text"] == LTI11_EXCUSED
    assert a1["sis"]["grade_text"] == "excused"


def test_a_row_worked_out_before_the_fact_was_kept_reads_excused_and_is_not_resent(
    api: ApiEnv,
) -> None:
    """An excused learner's LMS row written by an older gradesync (no `learner_excused`) and
    delivered reads as excused all the same; working it out again keeps it delivered."""
    _ada_excused(api)
    row = _row(api, "lms")
    assert row.desired is not None
    old = {k: v for k, v in row.desired.items() if k != "learner_excused"}
    delivered = replace(
        row,
        desired=old,
        state=DeliveryState.DELIVERED,
        delivered_hash=row.desired_hash,
        delivered_at=T0,
    )
    with api.db.uow() as uow:
        uow.ledger.save(delivered, "c1")
        uow.commit()
    page = api.client.get("/console/courses/c1?destination=lms").text
    assert LMS_EXCUSED in grid_cell(page, "p1", "a1")

    rt = api.runtime  # a sync run works every learner out again, as here
    compute_activity(
        rt.uow, rt.clock, rt.capabilities,
        tenant_id="t1", destination_id="lms", course_id="c1", activity_id="a1", person_ids=["p1"],
    )  # fmt: skip
    again = _row(api, "lms")
    assert again.state is DeliveryState.DELIVERED  # nothing to send: the same grade
    assert again.desired_hash == row.desired_hash
    assert again.desired is not None and again.desired["learner_excused"] is True


def test_a_grade_a_sis_keeps_reads_kept_in_sis(api: ApiEnv) -> None:
    school(api)
    kept_at(api, "lms", DestinationKind.LTI13_AGS, T0)
    kept_at(api, "sis", DestinationKind.ONEROSTER_REST, T0)
    api.console_admin("t1")

    sis_grid = api.client.get("/console/courses/c1?destination=sis").text
    assert grid_cell(sis_grid, "p1", "a1").startswith("Kept in SIS")
    assert "Kept in LMS" not in sis_grid  # the legend too
    lms_grid = api.client.get("/console/courses/c1?destination=lms").text
    assert grid_cell(lms_grid, "p1", "a1").startswith("Kept in LMS")

    dests = words(api.client.get("/console/destinations").text)
    assert "Gradebook sis" in dests and "Kept in SIS 1" in dests, dests
    assert "Kept in LMS 1" in dests  # the LMS's own
    sis_page = words(api.client.get("/console/sis").text)
    assert "Kept in SIS 1" in sis_page and "Kept in LMS" not in sis_page, sis_page

    diagnosis = api.client.get("/console/diagnosis?course=c1&activity=a1&person=p1").text
    assert "Kept in SIS" in diagnosis and "Kept in LMS" in diagnosis
