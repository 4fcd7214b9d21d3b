"""What an instructor reads about a grade and a run is what they can act on: never a gradesync
command (they have no command line) but who does it, while an admin still reads the command;
and a grade waiting to be sent says what holds it and when it goes, not generic words."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest

from gradesync.domain.model import (
    DeliveryState,
    LedgerKey,
    LedgerRow,
    RunScope,
    RunStage,
    SyncRun,
    Trigger,
    UserRole,
)
from gradesync.domain.remedies import names_command
from gradesync.services import sis
from gradesync.services.accounts import create_user
from tests.support.api import ROSTER, ApiEnv, Caller
from tests.support.console import sign_in
from tests.support.sis import file_based_sis

ASK = "Ask a gradesync administrator to"
PASSWORD = "a-long-password-1"


def _school(api: ApiEnv) -> Caller:
    """Biology 101 (Ada, Quiz 1) at an LTI 1.3 LMS, an admin `ops` and an instructor `ines`
    of the course."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    assert admin.post("/ingest", json=ROSTER).status_code == 202
    api.destination("t1", "lms")
    api.link("t1", "lms", "c1")
    for username, role, courses in (
        ("ops", UserRole.ADMIN, None),
        ("ines", UserRole.INSTRUCTOR, ["c1"]),
    ):
        create_user(
            api.db.uow, api.runtime.clock, tenant_id="t1", username=username,
            password=PASSWORD, role=role, course_ids=courses,
        )  # fmt: skip
    return admin


def _pending(api: ApiEnv, **row: Any) -> None:
    """Ada's 7 of 10 on Quiz 1 waits to be sent to the LMS."""
    with api.db.uow() as uow:
        uow.ledger.save(
            LedgerRow(
                LedgerKey("t1", "lms", "a1", "p1"),
                DeliveryState.PENDING,
                desired_hash="h1",
                desired={"score_given": 7.0, "score_maximum": 10.0},
                **row,
            ),
            "c1",
        )
        uow.commit()


def _delivery(api: ApiEnv, who: str) -> str:
    """The diagnosis page's words on whether the grade is delivered, as `who` reads them."""
    api.client.cookies.clear()
    assert sign_in(api.client, who, PASSWORD).status_code == 200
    page = api.client.get(
        "/console/diagnosis", params={"course": "c1", "activity": "a1", "person": "p1"}
    )
    assert page.status_code == 200, page.text
    text = unescape(re.sub(r"<[^>]+>", " ", page.text))
    text = " ".join(text.split())
    start = text.index("The grade is delivered")
    return text[start : start + 600]


def _api_delivery(admin: Caller) -> dict[str, Any]:
    diagnosis = admin.get("/activities/a1/learners/p1/diagnosis").json()
    [check] = [c for c in diagnosis["checks"] if c["code"] == "delivery"]
    return check


def test_a_grade_waiting_far_too_long_says_so_and_who_can_help(api: ApiEnv) -> None:
    admin = _school(api)
    _pending(api, updated_at=datetime.now(UTC) - timedelta(hours=2))
    instructor = _delivery(api, "ines")
    assert "has waited to be sent since" in instructor
    assert "gradesync is not sending it" in instructor
    assert f"{ASK} check that gradesync is sending grades" in instructor
    assert "gradesync doctor" not in instructor and "worker" not in instructor
    # the generic words are gone
    assert "Nothing to do if this is recent" not in instructor
    # an admin reads what to check, but not to run the diagnosis they read (`gradesync doctor`
    # shows these words too), nor a command they may have no command line to run: over the
    # API what the API shows of the workers, in the console its Dashboard
    check = _api_delivery(admin)
    assert check["remedy"].startswith(
        "Ask whoever runs gradesync to check that its workers are running and what their logs "
        "say: `GET /readyz` answers 503"
    )
    assert "`GET /metrics`" in check["remedy"]
    assert not names_command(check["remedy"]), check["remedy"]
    ops = _delivery(api, "ops")
    assert "check that its workers are running" in ops and "the Dashboard shows" in ops
    assert not names_command(ops), ops


def test_a_grade_just_computed_says_it_goes_within_seconds(api: ApiEnv) -> None:
    _school(api)
    _pending(api, updated_at=datetime.now(UTC) - timedelta(seconds=5))
    said = _delivery(api, "ines")
    assert "is waiting to be sent since" in said
    assert "normally in the gradebook within seconds" in said
    # said without a medium: `gradesync doctor` and the API show it too, with no page to reload
    assert "Check again in a minute" in said and "Reload" not in said


@pytest.mark.parametrize("admin_pause", [True, False])
def test_a_grade_held_by_a_pause_says_when_it_goes(api: ApiEnv, admin_pause: bool) -> None:
    admin = _school(api)
    _pending(api, updated_at=datetime.now(UTC) - timedelta(hours=2))
    until = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    body: dict[str, Any] = {"reason": "exam week"}
    if not admin_pause:
        body["until"] = until.isoformat().replace("+00:00", "Z")
    assert admin.post("/destinations/lms/pause", json=body).status_code == 200
    said = _delivery(api, "ines")
    if admin_pause:
        assert "'LMS lms' is paused (exam week)" in said
        assert "It is sent as soon as an administrator resumes 'LMS lms'" in said
    else:
        assert f"'LMS lms' is paused until {until:%Y-%m-%d %H:%M} UTC (exam week)" in said
        assert f"sent by itself once the pause ends, at {until:%Y-%m-%d %H:%M} UTC" in said
    # not "gradesync is not sending it": the pause is why, and it is said
    assert "not sending it" not in said and "Check that" not in said


def test_a_grade_whose_send_is_due_later_says_when(api: ApiEnv) -> None:
    _school(api)
    due = (datetime.now(UTC) + timedelta(minutes=30)).replace(second=0, microsecond=0)
    _pending(api, updated_at=datetime.now(UTC) - timedelta(hours=1), next_attempt_at=due)
    said = _delivery(api, "ines")
    assert f"its send is due at {due:%Y-%m-%d %H:%M} UTC" in said
    assert f"it is sent by itself at {due:%Y-%m-%d %H:%M} UTC" in said


def test_a_sis_runs_results_tell_an_instructor_who_ticks_not_a_command(api: ApiEnv) -> None:
    """The Grade Sync page of a Post grades run lists each result's reason: an instructor
    of the course opens it from the course page, and read the admin's command there; an
    admin reads where the console ticks it (the command is for the command line)."""
    _school(api)
    file_based_sis(api.db.uow, api.runtime.clock)
    said = (
        "The activity 'Quiz 1' is not selected for SIS passback. — Tick 'Sync to SIS' for it "
        "(gradesync sis select)."
    )
    with api.db.uow() as uow:
        row = LedgerRow(
            LedgerKey("t1", "sis", "a1", "p1"),
            DeliveryState.SKIPPED,
            reason_code="not_selected_for_sis",
            reason_text=said,
            updated_at=datetime.now(UTC),
        )
        uow.ledger.save(row, "c1")
        uow.ledger.save(replace(row, key=replace(row.key, activity_id="a2")), "c1")
        run = SyncRun("run-1", RunScope("t1", "sis", "c1"), Trigger.MANUAL, "ines")
        uow.runs.add(replace(run, created_at=datetime.now(UTC)))
        uow.commit()
    url = "/console/sis/sis/courses/c1/runs/run-1"
    for who, reads, never in (
        ("ines", f"{ASK} tick &#39;Sync to SIS&#39; for this activity.", "gradesync sis"),
        ("ops", "on the course&#39;s SIS passback page (/console/sis/sis/courses/c1,", ASK),
        ("ops", "Sync to SIS and validation)", "gradesync sis"),
    ):
        api.client.cookies.clear()
        assert sign_in(api.client, who, PASSWORD).status_code == 200
        for page in (url, f"{url}/results"):
            got = api.client.get(page)
            assert got.status_code == 200, (who, page, got.text)
            assert reads in got.text, (who, page)
            assert never not in got.text, (who, page)


def test_a_sis_course_pages_checks_tell_an_instructor_who_maps_the_class(api: ApiEnv) -> None:
    """A course not mapped to a class of a SIS over REST: its activities' checks say so, with
    the course page's Class and students form to an admin (not the command: the console's
    checks are worded for it) and who does it to an instructor."""
    _school(api)
    rt = api.runtime
    sis.add_connection(
        rt.db.uow, rt.clock, tenant_id="t1", destination_id="sis", name="District SIS",
        base_url="https://sis.example.org/ims/oneroster/gradebook/v1p2",
        client_id="gradesync", client_secret="s3cret",
    )  # fmt: skip
    url = "/console/sis/sis/courses/c1"
    for who, reads, never in (
        ("ines", f"{ASK} map this course to its SIS class.", "gradesync sis"),
        ("ops", "(/console/sis/sis/courses/c1, Class and students)", "gradesync sis map-class"),
    ):
        api.client.cookies.clear()
        assert sign_in(api.client, who, PASSWORD).status_code == 200
        got = api.client.get(url)
        assert got.status_code == 200, (who, got.text)
        assert reads in got.text, who
        assert never not in got.text, who


def test_a_sis_course_pages_category_checks_name_the_consoles_forms(api: ApiEnv) -> None:
    """A file-based SIS whose groups must be aligned: an admin read `gradesync sis categories
    sis --align ...` on the course's SIS page, for an activity without a group too. They read
    the Category alignment form for a group, the connection's settings page (its default
    category) for an activity with none; an instructor reads what to ask for, and is not
    told to pick a category where there is no picker."""
    admin = _school(api)
    by_name = {"file_based": True, "profile": {"category_match": "name"}}
    assert admin.put("/sis/connections/sis", json=by_name).status_code == 200
    mapped = {"class_id": "cls-1", "school_id": "sch-1"}
    assert admin.put("/sis/connections/sis/classes/c1", json=mapped).status_code == 200
    bare = {"course_id": "c1", "title": "Bare", "points_possible": 10}
    assert admin.put("/activities/a9", json=bare).status_code == 200
    grouped = {"course_id": "c1", "title": "Lab", "points_possible": 10, "category": "Labs"}
    assert admin.put("/activities/a8", json=grouped).status_code == 200
    url = "/console/sis/sis/courses/c1"
    for who, reads, never in (
        (
            "ines",
            [
                f"{ASK} align this activity",
                f"{ASK} set the default category",
                "a gradesync administrator can align it to another",
            ],
            "--align",
        ),
        (
            "ops",
            [
                "under Category alignment on the course",
                "settings page (/console/sis/sis/edit)",
                "pick one to override it",
            ],
            "gradesync sis categories",
        ),
    ):
        api.client.cookies.clear()
        assert sign_in(api.client, who, PASSWORD).status_code == 200
        got = api.client.get(url)
        assert got.status_code == 200, (who, got.text)
        text = unescape(got.text)
        for said in reads:
            assert said in text, (who, said)
        assert never not in text, who
        # an instructor has no picker, so is not told to pick one
        assert ("pick one" in text) == (who == "ops"), who


def _cell_why(api: ApiEnv, who: str) -> str:
    """What the course grid's cell of Ada's Quiz 1 says, as `who` reads it."""
    api.client.cookies.clear()
    assert sign_in(api.client, who, PASSWORD).status_code == 200
    page = api.client.get("/console/courses/c1", params={"destination": "lms"}).text
    cell = page.split('data-person="p1" data-activity="a1"', 1)[1].split("</td>", 1)[0]
    found = re.search(r'<div class="why">\s*<p>(.*?)</p>', cell, re.S)
    assert found, cell
    return unescape(found.group(1))


def test_the_course_grid_says_what_holds_a_pending_grade(api: ApiEnv) -> None:
    """A grade waiting to be sent said nothing in its cell but "Pending"."""
    admin = _school(api)
    _pending(api, updated_at=datetime.now(UTC) - timedelta(hours=2))
    said = _cell_why(api, "ines")
    assert said.startswith("This grade has waited to be sent since")
    assert "gradesync is not sending it" in said
    assert said.endswith(f"— {ASK} check that gradesync is sending grades: this one should "
                         "have reached the gradebook within seconds. Tell them the learner, "
                         "the activity and this message.")  # fmt: skip
    ops = _cell_why(api, "ops")
    assert "check that its workers are running" in ops and not names_command(ops), ops
    until = (datetime.now(UTC) + timedelta(hours=3)).replace(second=0, microsecond=0)
    body = {"reason": "term close", "until": until.isoformat().replace("+00:00", "Z")}
    assert admin.post("/destinations/lms/pause", json=body).status_code == 200
    assert _cell_why(api, "ines").endswith(
        f"is paused until {until:%Y-%m-%d %H:%M} UTC (term close). — Nothing to do: it is "
        f"sent by itself once the pause ends, at {until:%Y-%m-%d %H:%M} UTC."
    )


def _backlog(api: ApiEnv, rows: int, *, sent_ago: timedelta | None, run: bool) -> None:
    """`rows` more grades of Quiz 1 wait for the LMS behind Ada's (an hour old); the LMS
    took its last send `sent_ago` (never, for None), and a run of the course is under way
    (`run`: its worker beat a moment ago) or not."""
    now = datetime.now(UTC)
    _pending(api, updated_at=now - timedelta(hours=1))
    with api.db.uow() as uow:
        uow.ledger.save_many(
            [
                (
                    LedgerRow(
                        LedgerKey("t1", "lms", "a1", f"other-{i}"),
                        DeliveryState.PENDING,
                        desired_hash="h",
                        desired={"score_given": 1.0, "score_maximum": 10.0},
                        updated_at=now - timedelta(hours=1),
                    ),
                    "c1",
                )
                for i in range(rows)
            ],
            bulk=True,
        )
        if sent_ago is not None:
            uow.deliveries.add(
                key=LedgerKey("t1", "lms", "a1", "other-x"), run_id=None,
                sent_at=now - sent_ago, sent_hash="h", payload=None, outcome="delivered",
                remote_status=200, remote_message=None, latency_ms=40.0,
            )  # fmt: skip
        if run:
            started = SyncRun(
                "run-big", RunScope("t1", None, None), Trigger.MANUAL, "ops",
                created_at=now - timedelta(hours=1),
            )  # fmt: skip
            uow.runs.add(started)
            uow.runs.update(
                replace(started, stage=RunStage.SENDING, started_at=now - timedelta(hours=1)),
                worker_id="w1",
                heartbeat_at=now - timedelta(seconds=3),
            )
        uow.commit()


@pytest.mark.parametrize(
    ("sent_ago", "run"),
    [(timedelta(seconds=20), False), (None, True)],
    ids=["sent-lately", "run-under-way"],
)
def test_a_grade_behind_a_backlog_being_sent_goes_in_turn(
    api: ApiEnv, sent_ago: timedelta | None, run: bool
) -> None:
    """A big run (or an LMS that takes grades slowly) leaves grades pending for minutes while
    gradesync sends them: that is a queue, not gradesync failing to send."""
    admin = _school(api)
    _backlog(api, 1000, sent_ago=sent_ago, run=run)
    check = _api_delivery(admin)
    said = f"{check['evidence']} {check['remedy']}"
    page, cell = _delivery(api, "ines"), _cell_why(api, "ines")
    for text in (said, page, cell):
        assert "not sending" not in text and "Check that" not in text, text
        assert "1000 other grades waiting to be sent to 'LMS lms'" in text, text
        assert "it goes in its turn" in text, text
        assert ASK not in text, text
    reason = "a sync run is under way" if run else "it last sent one at"
    assert reason in check["evidence"]
    assert check["remedy"].startswith("Nothing to do: a backlog")


def test_a_backlog_nothing_sends_is_said_not_to_be_sent(api: ApiEnv) -> None:
    """The same backlog with no send for a quarter of an hour and no run: nothing moves."""
    admin = _school(api)
    _backlog(api, 1000, sent_ago=timedelta(minutes=15), run=False)
    check = _api_delivery(admin)
    assert "1000 other grades waiting to be sent to 'LMS lms'" in check["evidence"]
    assert "no sync run is under way: gradesync is not sending it" in check["evidence"]
    assert "check that its workers are running" in check["remedy"]
    assert "gradesync is not sending it" in _cell_why(api, "ines")
