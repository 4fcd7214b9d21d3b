"""Destinations (list/show/pause/resume/delete), run history, learner grades, /metrics."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gradesync.adapters import metrics
from gradesync.config import Settings
from gradesync.domain import remedies
from gradesync.domain.model import (
    DeliveryState,
    LedgerKey,
    LedgerRow,
    RunOutcome,
    RunScope,
    RunStage,
    SyncRun,
    Trigger,
)
from gradesync.domain.pauses import PauseCause
from gradesync.domain.remedies import names_command
from gradesync.runtime import Runtime
from gradesync.testing import TEST_SECRET, unique
from gradesync.web.app import create_app
from tests.support.api import ROSTER, ApiEnv, Caller, attempt

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_destination_management(api: ApiEnv) -> None:
    admin = Caller(api.client, api.tenant("t1", "admin"))
    api.destination("t1", "lms")
    [d] = admin.get("/destinations").json()
    assert d["id"] == "lms" and d["kind"] == "lti13_ags" and d["enabled"] is True
    assert "s3cret-value" not in admin.get("/destinations/lms").text  # secrets never shown

    r = admin.post("/destinations/lms/pause", json={"reason": "LMS upgrade tonight"})
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert admin.get("/destinations/lms").json()["pause_reason"] == "LMS upgrade tonight"
    wakes = api.waker.keys_calls
    r = admin.post("/destinations/lms/resume")
    assert r.json()["enabled"] is True and r.json()["pause_reason"] is None
    assert api.waker.keys_calls == wakes + 1  # waiting results go out now

    until = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    r = admin.post("/destinations/lms/pause", json={"until": until})
    assert r.json()["paused_until"] is not None and r.json()["enabled"] is True
    r = admin.post("/destinations/lms/pause", json={"until": "2001-01-01T00:00:00Z"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "until"

    assert admin.delete("/destinations/lms").status_code == 204
    assert admin.get("/destinations/lms").status_code == 404
    assert admin.delete("/destinations/lms").status_code == 404


def test_a_pause_names_a_past_until_with_the_bodys_other_problems(api: ApiEnv) -> None:
    """The past `until` came only once `reason` was fixed: each 422 names every parameter at
    fault at once (docs/api.md), and nothing changes."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    api.destination("t1", "lms")
    before = admin.get("/destinations/lms").json()
    r = admin.post("/destinations/lms/pause", json={"until": "2020-01-01T00:00:00Z", "reason": 5})
    assert r.status_code == 422, r.text
    assert sorted((d["field"], d["rule"]) for d in r.json()["detail"]) == [
        ("reason", "string"),
        ("until", "future"),
    ]
    assert admin.get("/destinations/lms").json() == before
    # a future `until` with a bad reason names the reason alone
    until = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    r = admin.post("/destinations/lms/pause", json={"until": until, "reason": 5})
    assert [d["field"] for d in r.json()["detail"]] == ["reason"], r.text


def test_destination_check_names_an_unknown_course_and_learner(api: ApiEnv) -> None:
    """Each under the body's field, with the rules of an ingest (docs/api.md), both at once."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    api.destination("t1", "lms")
    body = {"course_id": "ghost", "learner_id": "nobody", "send_test": True}
    r = admin.post("/destinations/lms/check", json=body)
    assert r.status_code == 422, r.text
    assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [
        ("course_id", "unknown_course"),
        ("learner_id", "unknown_person"),
    ]


def _rostered(api: ApiEnv) -> Caller:
    """An admin of t1, whose course c1 (activities a1, a2; learners p1, p2) is ingested."""
    c = Caller(api.client, api.tenant("t1", "admin"))
    c.post("/ingest", json=ROSTER)
    return c


def _refused(key: LedgerKey, hashed: str, score: float, maximum: float, **why: Any) -> LedgerRow:
    """A row the destination refused once; `why` says why, and what the destination said."""
    result = {"score_given": score, "score_maximum": maximum}
    return LedgerRow(
        key, DeliveryState.REJECTED, hashed, result, None, tries=1, updated_at=T0, **why
    )


def _file_based_sis(c: Caller) -> None:
    sis = {"name": "District SIS", "file_based": True}
    assert c.put("/sis/connections/sis", json=sis).status_code == 200


def _save(api: ApiEnv, *rows: LedgerRow) -> None:
    with api.db.uow() as uow:
        uow.ledger.save_many([(r, "c1") for r in rows])
        uow.commit()


def _seed_ledger(api: ApiEnv) -> None:
    api.destination("t1", "lms")
    _save(
        api,
        LedgerRow(
            LedgerKey("t1", "lms", "a1", "p1"),
            DeliveryState.DELIVERED,
            "h1",
            {"score_given": 7.0, "score_maximum": 10.0},
            "h1",
            T0,
            updated_at=T0,
        ),
        _refused(
            LedgerKey("t1", "lms", "a2", "p1"),
            "h2",
            3.0,
            20.0,
            reason_code="unknown_user",
            reason_text="The LMS does not know this learner.",
            remote_status=422,
            remote_message="User not found in course",
        ),
        LedgerRow(
            LedgerKey("t1", "lms", "a2", "p2"),
            DeliveryState.PENDING,
            "h3",
            {"score_given": 1.0, "score_maximum": 20.0},
            None,
            updated_at=T0,
        ),
    )


def test_learner_grades_per_destination(api: ApiEnv) -> None:
    c = _rostered(api)
    _seed_ledger(api)
    g = c.get("/people/p1/grades").json()
    cells = {x["activity_id"]: x for x in g["destinations"]["lms"]}
    assert cells["a1"]["state"] == "delivered" and cells["a1"]["in_sync"] is True
    assert cells["a2"]["state"] == "rejected" and cells["a2"]["in_sync"] is False
    assert cells["a2"]["remote_message"] == "User not found in course"
    # a filter naming no destination of the tenant is refused, not answered with nothing
    other = c.get("/people/p1/grades", params={"destination_id": "other"})
    assert other.status_code == 422 and other.json()["detail"][0]["rule"] == "unknown_destination"
    assert c.get("/people/ghost/grades").status_code == 404


def test_a_grade_held_by_a_paused_destination_says_so(api: ApiEnv) -> None:
    """A pending grade at a paused destination read `pending` with no reason at all, while
    the diagnosis said "Paused: ..."; it now names the pause, and only while it lasts."""
    c = _rostered(api)
    _seed_ledger(api)

    def cells(person: str = "p2") -> dict[str, dict[str, object]]:
        g = c.get(f"/people/{person}/grades", params={"destination_id": "lms"}).json()
        return {x["activity_id"]: x for x in g["destinations"]["lms"]}

    assert cells()["a2"]["reason_code"] is None  # not paused: merely waiting
    assert c.post("/destinations/lms/pause", json={"reason": "term close"}).status_code == 200
    held = cells()["a2"]
    assert held["state"] == "pending" and held["reason_code"] == "destination_paused"
    assert str(held["reason_text"]).startswith("Paused: term close.")
    assert "resume" in str(held["reason_text"])
    rejected = cells("p1")["a2"]  # a refusal keeps its own reason
    assert rejected["reason_code"] == "unknown_user"
    c.post("/destinations/lms/resume")
    assert cells()["a2"]["reason_code"] is None


def test_a_grade_held_by_a_rate_limit_says_so_as_the_diagnosis_does(api: ApiEnv) -> None:
    """A pending grade at a destination whose rate limit alone holds the grades waiting read
    `pending` with no reason, while the diagnosis and the console's grid named the limit and
    what changes it; it now says so in the diagnosis's words, and only while it holds."""
    c = _rostered(api)
    _seed_ledger(api)

    def held() -> dict[str, object]:
        g = c.get("/people/p2/grades", params={"destination_id": "lms"}).json()
        [cell] = [x for x in g["destinations"]["lms"] if x["activity_id"] == "a2"]
        return cell

    limits = "/destinations/lms/limits"
    assert c.patch(limits, json={"rate_per_second": 0.01}).status_code == 200
    cell = held()
    assert cell["state"] == "pending" and cell["reason_code"] == "rate_limit", cell
    [check] = [x for x in c.get("/destinations/lms/diagnosis").json()["checks"] if
               x["code"] == "rate_limit"]  # fmt: skip
    assert cell["reason_text"] == f"{check['evidence']} — {check['remedy']}"
    assert "`PATCH /api/v1/destinations/lms/limits`" in str(cell["reason_text"])
    assert not names_command(str(cell["reason_text"]))
    # a pause is what holds it while it lasts
    assert c.post("/destinations/lms/pause").status_code == 200
    assert held()["reason_code"] == "destination_paused"
    c.post("/destinations/lms/resume")
    # a limit that keeps up holds nothing
    assert c.patch(limits, json={"rate_per_second": 100}).status_code == 200
    assert held()["reason_code"] is None


def test_a_paused_destinations_remedy_over_the_api_names_the_apis_route(api: ApiEnv) -> None:
    """A paused destination's remedy named the command `gradesync destinations resume` to
    readers of the HTTP API (an admin's tools, a program), who may have no command line: it
    names the API's route instead, in a learner's grades and in the diagnosis alike."""
    c = _rostered(api)
    _seed_ledger(api)
    assert c.post("/destinations/lms/pause", json={"reason": "term close"}).status_code == 200
    remedy = "Fix the cause, then resume it (`POST /api/v1/destinations/lms/resume`)."
    g = c.get("/people/p2/grades", params={"destination_id": "lms"}).json()
    [held] = [x for x in g["destinations"]["lms"] if x["activity_id"] == "a2"]
    assert held["reason_text"] == f"Paused: term close. — {remedy}"
    for path in ("/activities/a2/learners/p2/diagnosis", "/destinations/lms/diagnosis"):
        checks = c.get(path).json()["checks"]
        assert [x["remedy"] for x in checks if x["code"] == "destination_ready"] == [remedy]
        assert not any(names_command(x["remedy"] or "") for x in checks), checks
    # the route named does what it says
    assert c.post("/destinations/lms/resume").json()["enabled"] is True


def test_refused_credentials_name_the_apis_check_route_over_the_api(api: ApiEnv) -> None:
    """An LMS refusing gradesync's credentials read "then run `gradesync destinations check`"
    in the diagnosis, to readers of the HTTP API who may have no command line, though the API
    checks a destination itself: its route is named instead, and does what it says."""
    c = _rostered(api)
    _seed_ledger(api)
    refused = _refused(
        LedgerKey("t1", "lms", "a1", "p2"), "h4", 5.0, 10.0,
        reason_code="bad_credentials", reason_text="The LMS refused the token.", remote_status=401,
    )  # fmt: skip
    _save(api, refused)
    route = "(`POST /api/v1/destinations/lms/check`)"
    for path, code in (
        ("/activities/a1/learners/p2/diagnosis", "delivery"),
        ("/destinations/lms/diagnosis", "deliveries_accepted"),
    ):
        checks = c.get(path).json()["checks"]
        [check] = [x for x in checks if x["code"] == code]
        said = "Check the credentials gradesync uses there: at an LMS the client id"
        assert check["remedy"].startswith(said), check
        assert check["remedy"].endswith(f"Then check the destination {route}."), check
        assert not any(names_command(x["remedy"] or "") for x in checks), checks
    # the route named does what it says
    assert c.post("/destinations/lms/check").status_code == 200


def test_a_student_the_sis_does_not_know_names_the_apis_student_route(api: ApiEnv) -> None:
    """A SIS refusing a grade for a student it does not have read `gradesync sis map-student
    sis p1 SOURCEDID` in the diagnosis, to readers of the HTTP API who may have no command
    line, though the API links a student itself: its route, for this learner, is named
    instead, and does what it says."""
    c = _rostered(api)
    _file_based_sis(c)
    route = "/sis/connections/sis/students/p1"
    assert c.put(route, json={"student_id": "S-1"}).status_code == 200
    refused = _refused(
        LedgerKey("t1", "sis", "a1", "p1"), "h5", 5.0, 10.0,
        reason_code="unknown_student", reason_text="The SIS refused the result.",
        remote_status=404, remote_message="Student S-1 does not exist.",
    )  # fmt: skip
    _save(api, refused)
    remedy = (
        "Link the learner to the student sourcedId the SIS has "
        f"(`PUT /api/v1{route}` with its `student_id`)."
    )
    checks = c.get("/activities/a1/learners/p1/diagnosis").json()["checks"]
    matched = [x for x in checks if x["code"] == "matched_in_sis"]
    assert [x["remedy"] for x in matched] == [remedy], checks
    [delivery] = [x for x in checks if x["code"] == "delivery" and x["destination_id"] == "sis"]
    assert delivery["remedy"] == remedy
    assert not any(names_command(x["remedy"] or "") for x in checks), checks
    # the route named does what it says
    assert c.put(route, json={"student_id": "S-2"}).json()["student_id"] == "S-2"


def test_a_sis_course_not_mapped_names_the_apis_mapping_route_over_the_api(api: ApiEnv) -> None:
    """A course not mapped to a class of a SIS read `gradesync sis map-class ...` in a learner's
    grades and in the diagnosis, to readers of the HTTP API who may have no command line,
    though the API maps a class itself: its route is named instead, and does what it says."""
    c = _rostered(api)
    _file_based_sis(c)
    remedy = (
        "Map the course to its SIS class (`PUT /api/v1/sis/connections/sis/classes/c1` with its "
        "`class_id` and `school_id`). Then tick 'Sync to SIS' for the activities whose grades "
        "belong in the SIS (`PUT /api/v1/sis/connections/sis/selection`)."
    )
    g = c.get("/people/p1/grades", params={"destination_id": "sis"}).json()
    cells = g["destinations"]["sis"]
    assert [x["reason_code"] for x in cells] == ["course_not_connected"] * 2
    for x in cells:
        assert x["reason_text"].endswith(f"it is not mapped to a SIS class, so no grade of it "
                                         f"is sent there. {remedy}")  # fmt: skip
    for path in ("/activities/a1/learners/p1/diagnosis", "/activities/a1/diagnosis"):
        checks = c.get(path, params={"destination_id": "sis"}).json()["checks"]
        assert not any(names_command(x["remedy"] or "") for x in checks), checks
        if "learners" in path:
            [check] = [x for x in checks if x["code"] == "course_connected"]
            assert check["remedy"] == remedy
    triage = c.get("/courses/c1/diagnosis", params={"destination_id": "sis"}).json()
    causes = [x for x in triage["causes"]["course"] if x["code"] == "course_not_connected"]
    assert [x["remedy"] for x in causes] == [remedy]
    # the route named does what it says
    mapped = {"class_id": "cls-1", "school_id": "sch-1"}
    assert c.put("/sis/connections/sis/classes/c1", json=mapped).status_code == 200
    checks = c.get("/activities/a1/learners/p1/diagnosis").json()["checks"]
    [check] = [x for x in checks if x["code"] == "course_connected"]
    assert check["passed"] is True, check


def test_a_sis_activity_left_out_names_the_apis_routes_over_the_api(api: ApiEnv) -> None:
    """An activity not ticked for the SIS, or ticked and waiting for Post grades, read
    `gradesync sis select` / `gradesync sis post` in a learner's grades and the course's
    triage over the API: each names the API's route that does it."""
    c = _rostered(api)
    assert c.put("/sis/connections/sis", json={"file_based": True}).status_code == 200
    mapped = {"class_id": "cls-1", "school_id": "sch-1"}
    assert c.put("/sis/connections/sis/classes/c1", json=mapped).status_code == 200
    rows = [
        ("a1", "not_selected_for_sis", "Tick 'Sync to SIS' for it (gradesync sis select)."),
        ("a2", "waiting_for_post", "Post its grades (gradesync sis post sis c1 --activity a2)."),
    ]
    with api.db.uow() as uow:
        for activity, code, remedy in rows:
            row = LedgerRow(
                LedgerKey("t1", "sis", activity, "p1"),
                DeliveryState.SKIPPED,
                reason_code=code,
                reason_text=f"Left out. — {remedy}",
                updated_at=T0,
            )
            uow.ledger.save(row, "c1")
        uow.commit()
    g = c.get("/people/p1/grades", params={"destination_id": "sis"}).json()
    said = {x["activity_id"]: x["reason_text"] for x in g["destinations"]["sis"]}
    assert said == {
        "a1": "Left out. — Tick 'Sync to SIS' for it (`PUT /api/v1/sis/connections/sis/selection` "
        "with its id in `activity_ids`).",
        "a2": "Left out. — Post its grades (`POST /api/v1/sis/connections/sis/courses/c1/post` "
        "with its id in `activity_ids`).",
    }
    triage = c.get("/courses/c1/diagnosis", params={"destination_id": "sis"}).json()
    causes = triage["excluded"] + [x for xs in triage["causes"].values() for x in xs]
    assert causes and not any(names_command(x["remedy"]) for x in causes), causes


_CAT = "category_missing"


def test_a_group_without_a_sis_category_names_the_apis_alignment_route(api: ApiEnv) -> None:
    """A grade a SIS refused for an activity group it has no category for read `gradesync sis
    categories sis --align GROUP=CATEGORY_ID` in a learner's grades over the API: it names
    the API's alignment route for that group, and the route does what it says."""
    c = Caller(api.client, api.tenant("t1", "admin"))
    c.post("/ingest", json=ROSTER)
    lab = {"course_id": "c1", "title": "Lab 1", "points_possible": 10, "category": "Lab work"}
    assert c.put("/activities/a1", json=lab).status_code == 200
    assert c.put("/sis/connections/sis", json={"file_based": True}).status_code == 200
    mapped = {"class_id": "cls-1", "school_id": "sch-1"}
    assert c.put("/sis/connections/sis/classes/c1", json=mapped).status_code == 200
    refused = LedgerRow(
        LedgerKey("t1", "sis", "a1", "p1"),
        DeliveryState.REJECTED,
        reason_code=_CAT,
        reason_text="Activity group 'Lab work': not aligned to a category. — Align the group "
        "to the SIS's category under Category alignment on the course's SIS page in the "
        "console, or: gradesync sis categories sis --align GROUP=CATEGORY_SOURCEDID",
        updated_at=T0,
    )
    with api.db.uow() as uow:
        uow.ledger.save(refused, "c1")
        uow.commit()
    g = c.get("/people/p1/grades", params={"destination_id": "sis"}).json()
    [said] = [x["reason_text"] for x in g["destinations"]["sis"] if x["activity_id"] == "a1"]
    route = "/sis/connections/sis/alignments/Lab%20work"
    assert said == (
        "Activity group 'Lab work': not aligned to a category. — Align the group to one of the "
        f"SIS's categories (`PUT /api/v1{route}` with its `category_id`, and `course_id` for "
        "one course only; `GET /api/v1/sis/connections/sis/categories` lists them)."
    )
    # the route named does what it says
    r = c.put(route, json={"category_id": "cat-lab", "course_id": "c1"})
    assert r.json() == {"Lab work": "cat-lab"}, r.text


def test_sis_validation_names_the_apis_routes_and_a_group_with_a_slash_is_aligned(
    api: ApiEnv,
) -> None:
    """`GET .../validation` read `gradesync sis categories sis --align ...` over the API; the
    alignment route 404ed for a group holding a `/`; an activity with no group was told to
    align `GROUP`. Each problem now names the API's route: the alignment route for the group,
    as printed (percent-encoded) a route that aligns it, and the connection's
    `default_category` for an activity with no group."""
    c = Caller(api.client, api.tenant("t1", "admin"))
    c.post("/ingest", json=ROSTER)
    quiz = {"course_id": "c1", "title": "Quiz", "points_possible": 10, "category": "Quizzes/Tests"}
    assert c.put("/activities/a1", json=quiz).status_code == 200
    bare = {"course_id": "c1", "title": "Bare", "points_possible": 10}
    assert c.put("/activities/a2", json=bare).status_code == 200
    # groups match by name, which a file-based SIS cannot answer: each must be aligned
    by_name = {"file_based": True, "profile": {"category_match": "name"}}
    assert c.put("/sis/connections/sis", json=by_name).status_code == 200

    def problems() -> dict[str, list[dict[str, str]]]:
        r = c.get("/sis/connections/sis/validation", params={"course_id": "c1"})
        assert r.status_code == 200, r.text
        # the activities' category problems (no due date is another rule's)
        return {
            x["activity_id"]: [p for p in x["problems"] if p["rule"] == _CAT]
            for x in r.json()
            if x["activity_id"] in {"a1", "a2"}
        }

    mapped = {"class_id": "cls-1", "school_id": "sch-1"}
    assert c.put("/sis/connections/sis/classes/c1", json=mapped).status_code == 200
    found = problems()
    [grouped], [ungrouped] = found["a1"], found["a2"]
    for p in (grouped, ungrouped):
        assert not names_command(p["msg"]), p
    route = "/sis/connections/sis/alignments/Quizzes%2FTests"
    assert grouped["rule"] == _CAT and f"(`PUT /api/v1{route}` with its" in grouped["msg"]
    assert ungrouped["rule"] == _CAT and ungrouped["msg"].startswith("Activity group (none)")
    assert "`PUT /api/v1/sis/connections/sis` with `profile.default_category`" in (ungrouped["msg"])
    # the route as printed aligns the group, `/` and all; so does it with the `/` as it is
    r = c.put(route, json={"category_id": "cat-q"})
    assert r.status_code == 200 and r.json() == {"Quizzes/Tests": "cat-q"}, r.text
    r = c.put("/sis/connections/sis/alignments/Labs/2", json={"category_id": "cat-l"})
    assert r.json() == {"Quizzes/Tests": "cat-q", "Labs/2": "cat-l"}, r.text
    assert c.delete("/sis/connections/sis/alignments/Labs%2F2").json() == {"Quizzes/Tests": "cat-q"}
    # the setting named gives an activity with no group the aligned group's category
    r = c.put("/sis/connections/sis", json={"profile": {"default_category": "Quizzes/Tests"}})
    assert r.status_code == 200, r.text
    assert problems() == {"a1": [], "a2": []}


def test_every_route_a_remedy_names_is_one_the_app_serves(api: ApiEnv) -> None:
    """A remedy read over the API or in the console names a route or a page: each exists, so
    following it is never a 404 (`remedies.FOR_READERS`)."""
    from starlette.routing import Match

    named = re.compile(r"(?:`(GET|PUT|POST|DELETE|PATCH) |\()(/[^\s`,)]+)")
    seen = 0
    for reader, texts in remedies.FOR_READERS.items():
        for code, template in texts.items():
            ids = {"destination": "sis", "course": "c1", "activity": "a1", "person": "p1"}
            text = template.format(**ids, group="Quizzes")
            for method, path in named.findall(text):
                method = method or "GET"
                scope = {"type": "http", "path": path, "method": method}
                found = [r for r in api.client.app.routes if r.matches(scope)[0] is Match.FULL]
                assert found, (reader, code, method, path)
                seen += 1
    assert seen >= 18


def test_learner_grades_say_why_nothing_is_sent_without_a_destination(api: ApiEnv) -> None:
    """A graded learner of a tenant with no destination was answered `destinations: {}` and
    nothing else; `note` says no grade is sent anywhere. With a destination the course is not
    connected to, each activity is listed there as not sent."""
    c = _rostered(api)
    assert c.post("/ingest", json={"attempts": [attempt("e1")]}).status_code == 202
    g = c.get("/people/p1/grades", params={"course_id": "c1"}).json()
    assert g["destinations"] == {}
    assert "has no destination" in g["note"] and "sent anywhere" in g["note"]
    api.destination("t1", "lms")
    g = c.get("/people/p1/grades", params={"course_id": "c1"}).json()
    assert g["note"] is None
    assert [(x["activity_id"], x["state"]) for x in g["destinations"]["lms"]] == [
        ("a1", "not_sent"),
        ("a2", "not_sent"),
    ]
    assert "Biology 101 is not connected to LMS lms" in g["destinations"]["lms"][0]["reason_text"]


def test_run_history_with_stages(api: ApiEnv) -> None:
    c = Caller(api.client, api.tenant("t1", "sync"))
    other = Caller(api.client, api.tenant("t2", "sync"))
    ingest = Caller(api.client, api.tenant("t1", "ingest"))
    for course in ("c1", "c2"):  # a filter names a course the tenant has
        assert ingest.put(f"/courses/{course}", json={"title": course}).status_code == 200
    run = SyncRun("r1", RunScope("t1", None, "c1"), Trigger.MANUAL, "cli:ops", created_at=T0)
    with api.db.uow() as uow:
        uow.runs.add(run)
        uow.runs.add(
            SyncRun(
                "r0",
                RunScope("t1", None, "c2"),
                Trigger.REMASTER,
                "x",
                created_at=T0 - timedelta(days=1),
            )
        )
        uow.runs.update(
            SyncRun(
                "r1",
                run.scope,
                Trigger.MANUAL,
                "cli:ops",
                RunStage.SENDING,
                counts={"sent": 3},
                created_at=T0,
                started_at=T0,
            ),
            heartbeat_at=T0 + timedelta(seconds=1),
        )
        uow.runs.update(
            SyncRun(
                "r1",
                run.scope,
                Trigger.MANUAL,
                "cli:ops",
                RunStage.FINISHED,
                RunOutcome.SUCCEEDED,
                {"sent": 5, "delivered": 5},
                created_at=T0,
                started_at=T0,
                finished_at=T0 + timedelta(seconds=2),
            )
        )
        uow.commit()
    runs = c.get("/runs").json()
    assert [r["id"] for r in runs] == ["r1", "r0"]
    assert [r["id"] for r in c.get("/runs", params={"course_id": "c2"}).json()] == ["r0"]
    assert [r["id"] for r in c.get("/runs", params={"trigger": "remaster"}).json()] == ["r0"]
    detail = c.get("/runs/r1").json()
    assert detail["outcome"] == "succeeded" and detail["counts"] == {"sent": 5, "delivered": 5}
    assert [s["stage"] for s in detail["stages"]] == ["queued", "sending", "finished"]
    assert other.get("/runs").json() == []
    assert other.get("/runs/r1").status_code == 404
    r = c.get("/runs", params={"trigger": "sometimes"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "trigger"


def test_a_run_s_answer_names_its_destination_after_it_is_deleted_and_made_again(
    api: ApiEnv,
) -> None:
    """A run's answer named its destination by id alone, which says nothing once the
    destination is deleted; made again under the same id, another one took its runs' name."""
    c = _rostered(api)
    api.destination("t1", "lms")
    api.link("t1", "lms", "c1")
    old = c.post("/runs", json={"destination_id": "lms"}).json()
    every = c.post("/runs", json={"course_id": "c1"}).json()
    assert (old["destination_name"], every["destination_name"]) == ("LMS lms", None)
    assert c.delete("/destinations/lms").status_code == 204
    assert c.get(f"/runs/{old['id']}").json()["destination_name"] == "LMS lms"
    made_again = replace(api.destination("t1", "lms"), name="Canvas")
    with api.db.uow() as uow:
        uow.destinations.upsert(made_again, api.runtime.clock.now())
        uow.commit()
    api.link("t1", "lms", "c1")
    new = c.post("/runs", json={"destination_id": "lms", "course_id": "c1"}).json()
    named = {r["id"]: r["destination_name"] for r in c.get("/runs").json()}
    assert named == {new["id"]: "Canvas", every["id"]: None, old["id"]: "LMS lms"}
    assert c.get(f"/runs/{old['id']}").json()["destination_name"] == "LMS lms"


def test_metrics_exposes_counters_and_pending_from_the_ledger(api: ApiEnv) -> None:
    _rostered(api)
    _seed_ledger(api)
    metrics.PrometheusMeter().result_delivered("t1", "lms", 0.2)
    r = api.client.get("/metrics")
    assert r.status_code == 200
    text = r.text
    assert 'gradesync_results_pending{destination="lms",tenant="t1"} 1.0' in text
    assert "gradesync_results_delivered_total{" in text
    assert "# TYPE gradesync_results_rejected_total counter" in text
    assert "# TYPE gradesync_results_retried_total counter" in text
    assert (
        'gradesync_delivery_latency_seconds_bucket{destination="lms",le="0.25",tenant="t1"}' in text
    )


def test_backlog_gauges_read_zero_for_a_destination_with_nothing(api: ApiEnv) -> None:
    """They had no series until something was pending or paused: a dashboard showed "no
    data" in the normal case. A known destination (and tenant) with nothing reads 0."""
    api.tenant("t1", "admin")
    api.destination("t1", "lms")
    text = api.client.get("/metrics").text
    mine = 'destination="lms",tenant="t1"'
    for line in (
        f"gradesync_results_pending{{{mine}}} 0.0",
        f"gradesync_results_oldest_pending_age_seconds{{{mine}}} 0.0",
        f"gradesync_grades_not_computed{{{mine}}} 0.0",
        'gradesync_destination_paused{destination="lms",kind="",reason="",tenant="t1"} 0.0',
        'gradesync_grades_uncomputed{tenant="t1"} 0.0',
        'gradesync_grades_oldest_uncomputed_age_seconds{tenant="t1"} 0.0',
    ):
        assert line in text, line


def test_a_pause_is_labelled_by_its_cause_not_its_words(api: ApiEnv) -> None:
    """The label was the pause's text cut at 120 characters: a OneRoster throttle put a
    learner's result id in it, and every new fault's words restarted the alert grouped by it.
    The label is the cause; the words stay on the destination."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    api.destination("t1", "lms")
    api.destination("t1", "sis")
    words = (
        "The destination asked gradesync to slow down (PUT result gs-r-73861aba: too many "
        "requests); sending resumes by itself."
    )
    with api.db.uow() as uow:
        until = datetime.now(UTC) + timedelta(hours=1)
        uow.destinations.set_pause("t1", "sis", until, words, PauseCause.SLOW_DOWN)
        uow.commit()
    admin.post("/destinations/lms/pause", json={"reason": "LMS upgrade for Ada Lovelace"})
    text = api.client.get("/metrics").text
    paused = {
        s.labels["destination"]: (s.labels["kind"], s.labels["reason"])
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "gradesync_destination_paused" and s.labels["tenant"] == "t1" and s.value
    }
    assert paused == {"sis": ("timed", "slow_down"), "lms": ("manual", "admin")}
    assert "gs-r-73861aba" not in text and "Ada" not in text
    assert admin.get("/destinations/sis").json()["pause_reason"] == words


@pytest.mark.parametrize("timed", [True, False], ids=["until", "indefinite"])
def test_an_admins_pause_is_labelled_admin_whatever_its_words(api: ApiEnv, timed: bool) -> None:
    """The cause was read back from the pause's words: an admin who wrote a reason opening
    like one of gradesync's own pauses had it labelled as that cause (an alert on
    `misconfigured` fired for a planned pause). A person's pause is `admin`, in their words."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    api.destination("t1", "lms")
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat() if timed else None
    for words in (
        "Misconfigured: the LMS moves to its new address tonight",
        "Circuit breaker open on the district's side; we wait for their call",
        "The destination asked gradesync to slow down during exams, so we hold",
    ):
        got = admin.post("/destinations/lms/pause", json={"reason": words, "until": until})
        assert got.status_code == 200, got.text
        assert got.json()["pause_reason"] == words  # the words people read, as written
        paused = [
            (s.labels["kind"], s.labels["reason"])
            for family in text_string_to_metric_families(api.client.get("/metrics").text)
            for s in family.samples
            if s.name == "gradesync_destination_paused" and s.labels["tenant"] == "t1" and s.value
        ]
        assert paused == [("timed" if timed else "manual", "admin")], words
    with api.db.uow() as uow:
        stored = uow.destinations.get("t1", "lms")
    assert stored is not None and stored.pause_cause is PauseCause.ADMIN
    assert admin.post("/destinations/lms/resume").status_code == 200
    with api.db.uow() as uow:
        stored = uow.destinations.get("t1", "lms")
    assert stored is not None and stored.pause_reason is None and stored.pause_cause is None
    assert 'gradesync_destination_paused{destination="lms",kind="",reason="",tenant="t1"} 0.0' in (
        api.client.get("/metrics").text
    )


def test_a_timed_pause_of_a_destination_turned_off_pauses_it_until_then(api: ApiEnv) -> None:
    """Pausing a destination turned off, with an end time and words, answered those but
    stored neither: it stayed off past the time given, with the old words."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    api.destination("t1", "lms")
    off = admin.post("/destinations/lms/pause", json={"reason": "LMS retired"})
    assert off.status_code == 200, off.text
    until = datetime.now(UTC) + timedelta(hours=1)
    got = admin.post(
        "/destinations/lms/pause", json={"reason": "exams", "until": until.isoformat()}
    )
    assert got.status_code == 200, got.text
    stored = admin.get("/destinations/lms").json()
    for answer in (got.json(), stored):
        assert answer["pause_reason"] == "exams" and answer["enabled"] is True
        assert datetime.fromisoformat(answer["paused_until"]) == until
    with api.db.uow() as uow:
        dest = uow.destinations.get("t1", "lms")
    assert dest is not None and dest.pause_cause is PauseCause.ADMIN


@pytest.mark.parametrize("where", ["environment", "config file"])
def test_metrics_token(
    api: ApiEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # an operator puts it in the environment or in the file GRADESYNC_CONFIG_FILE names
    # (every setting may be either); a token set in the file once left /metrics open
    if where == "environment":
        monkeypatch.setenv("GRADESYNC_METRICS_TOKEN", "scrape-me")
        settings = Settings(database_url=api.db.url, secret_key=TEST_SECRET)
    else:
        monkeypatch.delenv("GRADESYNC_METRICS_TOKEN", raising=False)
        (tmp_path / "gradesync.env").write_text("GRADESYNC_METRICS_TOKEN=scrape-me\n")
        settings = Settings(  # type: ignore[call-arg]  # pydantic-settings' own argument
            _env_file=tmp_path / "gradesync.env", database_url=api.db.url, secret_key=TEST_SECRET
        )
    client = TestClient(create_app(Runtime(settings=settings, db=api.db, waker=api.waker)))
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer scrape-you"})
    assert wrong.status_code == 401
    r = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert r.status_code == 200 and "gradesync_results_pending" in r.text


def test_openapi_is_served(api: ApiEnv) -> None:
    spec = api.client.get("/openapi.json").json()
    assert "/api/v1/attempts/batch" in spec["paths"]
    assert api.client.get("/docs").status_code == 200


def test_a_deleted_destinations_series_go_and_a_live_ones_counters_keep_counting(
    api: ApiEnv,
) -> None:
    """The series labelled by a destination stayed in every scrape (and in memory) until the
    process stopped, the destination long deleted. They go at the next scrape; a live
    destination's counters are untouched and keep counting."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    kept, gone = unique("lms-kept-"), unique("lms-gone-")
    for dest in (kept, gone):
        api.destination("t1", dest)
        metrics.PrometheusMeter().result_delivered("t1", dest, 0.2)
        metrics.PrometheusMeter().result_retried("t1", dest, "retry_later", "server_error")
        metrics.PrometheusMeter().result_rejected("t1", dest, "not_enrolled")
        metrics.count_outbound("t1", dest, 200)

    def series(text: str, dest: str) -> dict[str, float]:
        return {
            s.name: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.labels.get("destination") == dest and s.name.endswith(("_total", "_count"))
        }

    counted = {
        "gradesync_results_delivered_total": 1.0,
        "gradesync_results_retried_total": 1.0,
        "gradesync_results_rejected_total": 1.0,
        "gradesync_outbound_requests_total": 1.0,
        "gradesync_delivery_latency_seconds_count": 1.0,
    }
    before = api.client.get("/metrics").text
    assert series(before, kept) == counted and series(before, gone) == counted
    assert admin.delete(f"/destinations/{gone}").status_code == 204
    after = api.client.get("/metrics").text
    assert series(after, gone) == {}  # the first scrape after the deletion
    assert series(after, kept) == counted
    metrics.PrometheusMeter().result_delivered("t1", kept, 0.1)
    again = series(api.client.get("/metrics").text, kept)
    assert again["gradesync_results_delivered_total"] == 2.0  # still counting from 1
    assert again["gradesync_delivery_latency_seconds_count"] == 2.0
