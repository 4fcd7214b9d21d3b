"""A sync switch in the console is worked out before its page comes back: the grid the person
lands on already says what the switch did. It waited for the worker's next batch before, so
on a busy machine the page showed a grade just switched off as still *Sent* (and kept saying
it, the page being static, until a reload)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.model import DeliveryState, LedgerKey, UserRole
from gradesync.services import ingest
from gradesync.services.accounts import create_user
from gradesync.services.compute import compute_now
from tests.support.api import ROSTER, ApiEnv, attempt
from tests.support.console import form_token, sign_in
from tests.support.races import start_second
from tests.support.school import ada_attempts_at_lms, grid_cell, school, work_out

PASSWORD = "a-long-password-1"
KEY = LedgerKey("t1", "lms", "a1", "p1")


def _school_with_a_sent_grade(api: ApiEnv) -> None:
    """Biology 101 at an LMS, Ada's 7 on Quiz 1 delivered there, no worker running (the
    test works out the grade as the worker would), an instructor `ines`."""
    roster = {**ROSTER, "activities": [{**a, "sync_enabled": True} for a in ROSTER["activities"]]}
    ada_attempts_at_lms(school(api, roster=roster), api, attempt("e1", 7))
    work_out(api)
    rt = api.runtime
    with rt.uow() as uow:
        row = uow.ledger.get(KEY)
        assert row is not None and row.state is DeliveryState.PENDING, row.reason_text
        delivered = replace(
            row,
            state=DeliveryState.DELIVERED,
            delivered_hash=row.desired_hash,
            delivered_at=rt.clock.now(),
        )
        uow.ledger.save(delivered, "c1")
        uow.commit()
    create_user(
        rt.uow, rt.clock, tenant_id="t1", username="ines", password=PASSWORD,
        role=UserRole.INSTRUCTOR, course_ids=["c1"],
    )  # fmt: skip
    api.client.cookies.clear()
    assert sign_in(api.client, "ines", PASSWORD).status_code == 200


def _course_off_no_one_working_it_out(api: ApiEnv) -> None:
    """Biology 101's sync turned off through ingest alone: Ada's and Grace's grades on both
    quizzes stay marked for recomputing."""
    rt = api.runtime
    with rt.uow() as uow:
        course = uow.courses.get("t1", "c1")
    assert course is not None
    ingest.upsert_courses(rt.uow, rt.clock, None, "t1", [replace(course, sync_enabled=False)])


@pytest.mark.parametrize(
    "switch",
    ["/console/courses/c1/activities/a1/switch", "/console/courses/c1/switch"],
    ids=["activity", "course"],
)
def test_the_page_after_a_switch_shows_its_effect(api: ApiEnv, switch: str) -> None:
    _school_with_a_sent_grade(api)
    page = api.client.get("/console/courses/c1")
    assert grid_cell(page.text, "p1", "a1").startswith("Sent")

    off = api.client.post(switch, data={"sync": "off", "csrf": form_token(page.text)})
    assert off.status_code == 200 and off.url.path == "/console/courses/c1"
    assert grid_cell(off.text, "p1", "a1").startswith("Kept in LMS")
    with api.runtime.uow() as uow:
        assert uow.dirty.waiting("t1")[0] == 0  # nothing left to the worker
        row = uow.ledger.get(KEY)
    assert row is not None and row.state is DeliveryState.SKIPPED

    on = api.client.post(switch, data={"sync": "on", "csrf": form_token(off.text)})
    # the LMS holds this very grade: nothing to send again
    assert grid_cell(on.text, "p1", "a1").startswith("Sent")


def test_marks_past_the_limit_are_left_to_the_worker(api: ApiEnv) -> None:
    _school_with_a_sent_grade(api)
    rt = api.runtime
    _course_off_no_one_working_it_out(api)  # one of its marks is worked out now
    with rt.uow() as uow:
        marked = uow.dirty.waiting("t1")[0]
    assert marked > 1
    stats = compute_now(rt.uow, rt.clock, rt.capabilities, tenant_id="t1",
                        activity_ids=["a1", "a2"], limit=1)  # fmt: skip
    with rt.uow() as uow:
        assert stats.dirty == 1 and uow.dirty.waiting("t1")[0] == marked - 1


def test_marks_a_worker_is_taking_are_waited_for(postgres_db: Database, tmp_path: Path) -> None:
    """On PostgreSQL a worker may have claimed the switch's marks a moment before: the page
    is answered once the worker's transaction ends (its rows in the ledger), not at once
    from a ledger that still says what it said before the switch."""
    api = ApiEnv(postgres_db, tmp_path)
    with api.client:
        _school_with_a_sent_grade(api)
        rt = api.runtime
        _course_off_no_one_working_it_out(api)
        with rt.uow() as worker:
            assert worker.dirty.claim(500)
            second = start_second(
                postgres_db,
                lambda: compute_now(
                    rt.uow, rt.clock, rt.capabilities, tenant_id="t1", activity_ids=["a1", "a2"]
                ),
            )
            assert second.blocked
            worker.commit()
        assert second.finish().dirty == 0  # the worker's, all of them


def test_a_switch_whose_grades_cannot_be_worked_out_now_leaves_them_to_the_worker(
    api: ApiEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The switch is saved and its page comes back; every mark stays for the worker, which
    sets a grade it cannot work out aside (`compute_dirty`)."""
    from gradesync.services import compute

    _school_with_a_sent_grade(api)

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a policy that cannot be worked out")

    monkeypatch.setattr(compute, "_compute_claimed", broken)
    page = api.client.get("/console/courses/c1")
    off = api.client.post(
        "/console/courses/c1/activities/a1/switch",
        data={"sync": "off", "csrf": form_token(page.text)},
    )
    assert off.status_code == 200 and "Sync is off for Quiz 1" in off.text
    with api.runtime.uow() as uow:
        assert uow.activities.get("t1", "a1").sync_enabled is False  # type: ignore[union-attr]
        assert uow.dirty.waiting("t1")[0] == 2  # Ada's and Grace's Quiz 1
