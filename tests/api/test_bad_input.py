"""Bad input: 422 naming the field and the rule, and nothing from the request is stored."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gradesync.adapters.db import schema as t
from tests.support.api import ROSTER, ApiEnv, Caller, attempt

DOC = Path(__file__).parents[2] / "docs" / "api.md"


def _counts(api: ApiEnv) -> dict[str, int]:
    out = {}
    with api.db.engine.connect() as conn:
        for table in (t.courses, t.activities, t.people, t.enrollments, t.attempts, t.dirty_keys):
            out[table.name] = conn.execute(select(func.count()).select_from(table)).scalar_one()
    return out


@pytest.fixture
def c(api: ApiEnv) -> Caller:
    caller = Caller(api.client, api.tenant("t1", "ingest"))
    assert caller.post("/ingest", json=ROSTER).status_code == 202
    return caller


def _problems(r: Any) -> set[tuple[str, str]]:
    assert r.status_code == 422, r.text
    return {(d["field"], d["rule"]) for d in r.json()["detail"]}


CASES: list[tuple[str, dict[str, Any], tuple[str, str]]] = [
    ("negative score", attempt("x", -1), ("attempts[1].score_given", "not_negative")),
    (
        "score without maximum",
        attempt("x", 5, score_maximum=None),
        ("attempts[1].score_maximum", "required_with_score"),
    ),
    ("zero maximum", attempt("x", 0, score_maximum=0), ("attempts[1].score_maximum", "positive")),
    (
        "a maximum too small for the score to be a grade",
        attempt("x", 1e10, score_maximum=1e-300),
        ("attempts[1].score_maximum", "score_ratio"),
    ),
    (
        "unknown activity",
        attempt("x", 5, activity_id="nope"),
        ("attempts[1].activity_id", "unknown_activity"),
    ),
    (
        "unknown person",
        attempt("x", 5, person_id="nobody"),
        ("attempts[1].person_id", "unknown_person"),
    ),
    (
        "malformed date",
        attempt("x", 5, completed_at="yesterday"),
        ("attempts[1].completed_at", "datetime"),
    ),
    (
        "date without zone",
        attempt("x", 5, completed_at="2025-03-01T10:00:00"),
        ("attempts[1].completed_at", "timezone_required"),
    ),
    ("score as a string", attempt("x", "5"), ("attempts[1].score_given", "number")),
    ("unknown field", attempt("x", 5, scoore=1), ("attempts[1].scoore", "unknown_field")),
    (
        "missing event id",
        {k: v for k, v in attempt("x").items() if k != "source_event_id"},
        ("attempts[1].source_event_id", "required"),
    ),
    (
        "started after completed",
        attempt("x", 5, started_at="2025-03-01T11:00:00Z"),
        ("attempts[1].completed_at", "order"),
    ),
]


@pytest.mark.parametrize(("bad", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_attempt_rejects_the_whole_batch(
    api: ApiEnv, c: Caller, bad: dict[str, Any], expected: tuple[str, str]
) -> None:
    before = _counts(api)
    r = c.post("/attempts/batch", json={"attempts": [attempt("ok-1"), bad, attempt("ok-2")]})
    assert expected in _problems(r)
    assert _counts(api) == before  # the good attempts around it were not stored either


def test_nan_and_infinity_are_refused(api: ApiEnv, c: Caller) -> None:
    before = _counts(api)
    for literal in ("NaN", "Infinity", "-Infinity"):
        raw = (
            '{"attempts": [{"source_event_id": "n", "activity_id": "a1", "person_id": "p1", '
            f'"score_given": {literal}, "score_maximum": 10, '
            '"completed_at": "2025-03-01T10:00:00Z"}]}'
        )
        r = c.post("/attempts/batch", content=raw, headers={"Content-Type": "application/json"})
        assert ("attempts[0].score_given", "finite") in _problems(r)
    assert _counts(api) == before


def test_oversized_batch(api: ApiEnv, c: Caller) -> None:
    before = _counts(api)
    r = c.post("/attempts/batch", json={"attempts": [attempt(f"e{i}") for i in range(1001)]})
    assert ("attempts", "batch_too_large") in _problems(r)
    mixed = {**ROSTER, "attempts": [attempt(f"e{i}") for i in range(996)]}
    r = c.post("/ingest", json=mixed)  # 7 + 996 items: over the total of 1000
    # no list over the limit alone, the batch over it in all: the batch is named (not its
    # largest list), with each list's count
    assert ("body", "batch_too_large") in _problems(r)
    people = [{"id": f"p{i}", "name": f"P {i}"} for i in range(400)]
    spread = {
        "people": people,
        "enrollments": [{"course_id": "c1", "person_id": p["id"]} for p in people],
        "attempts": [attempt(f"s{i}") for i in range(400)],
    }
    r = c.post("/ingest", json=spread)
    assert _problems(r) == {("body", "batch_too_large")}
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body"]
    assert "holds 1200 (people 400, enrollments 400, attempts 400)" in problem["msg"]
    assert _counts(api) == before


def test_single_attempt_names_fields_without_a_list_prefix(c: Caller) -> None:
    assert ("score_given", "not_negative") in _problems(c.post("/attempts", json=attempt("x", -2)))
    r = c.post("/attempts", json=attempt("x", 1, activity_id="zzz"))
    assert _problems(r) == {("activity_id", "unknown_activity")}
    detail = r.json()["detail"][0]
    assert "zzz" in detail["msg"] and detail["loc"] == ["body", "activity_id"]


def test_event_id_reused_for_a_different_attempt(api: ApiEnv, c: Caller) -> None:
    assert c.post("/attempts", json=attempt("e1", 7)).status_code == 202
    before = _counts(api)
    r = c.post("/attempts", json=attempt("e1", 9))
    assert _problems(r) == {("source_event_id", "event_id_reused")}
    assert _counts(api) == before


def test_an_event_id_twice_in_one_batch_is_not_said_to_be_recorded(c: Caller) -> None:
    r = c.post("/attempts/batch", json={"attempts": [attempt("e2", 7), attempt("e2", 9)]})
    assert _problems(r) == {("attempts[1].source_event_id", "event_id_reused")}
    assert "an earlier attempt of this batch" in r.json()["detail"][0]["msg"]


def test_a_day_that_does_not_exist_is_named_calendar(c: Caller) -> None:
    r = c.post("/attempts", json={**attempt("x", 1), "completed_at": "2025-02-31T10:00:00Z"})
    assert _problems(r) == {("completed_at", "calendar")}


def test_the_documented_calendar_example_is_named_calendar(c: Caller) -> None:
    """docs/api.md illustrates `calendar` with an example: sent, it gets that rule (not
    another one, such as `timezone_required`, that a client would then look up instead)."""
    row = next(line for line in DOC.read_text().splitlines() if line.startswith("| `calendar` |"))
    example = re.search(r"\(`([^`]+)`\)", row)
    assert example is not None, row
    r = c.post("/attempts", json={**attempt("x", 1), "completed_at": example.group(1)})
    assert _problems(r) == {("completed_at", "calendar")}


def test_rules_say_what_was_wrong(api: ApiEnv) -> None:
    """A least value of 1 is a `minimum`, not `not_negative`; a value of the wrong type is
    refused, not read as true or false; a message holds the value sent, not Python's repr."""
    admin = Caller(api.client, api.tenant("t2", "admin", "sync"))
    r = admin.get("/runs", params={"limit": "0"})
    assert _problems(r) == {("limit", "minimum")}
    # a window that ends before it starts matches nothing: refused as a schedule's history is
    for until in ("2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z"):
        r = admin.get("/runs", params={"since": "2025-02-01T00:00:00Z", "until": until})
        assert _problems(r) == {("until", "after_since")}
    for body in ({"activity_ids": ["q1"], "selected": "no"}, {"activity_ids": ["q1"], "hold": 1}):
        r = admin.put("/sis/connections/sis/selection", json=body)
        assert {rule for _, rule in _problems(r)} == {"boolean"}, body
    r = admin.put("/sis/connections/files", json={"file_based": "yes"})
    assert _problems(r) == {("file_based", "boolean")}
    with api.db.uow() as uow:
        assert uow.destinations.all("t2") == []
    r = admin.post(
        "/schedules",
        json={"kind": "daily", "spec": "01:30", "time_zone": "UTC", "trigger": "manual"},
    )
    assert _problems(r) == {("trigger", "one_of")}
    assert "'schedule' or 'remaster'" in r.json()["detail"][0]["msg"], r.text


def test_bad_roster_items(api: ApiEnv, c: Caller) -> None:
    before = _counts(api)
    r = c.post(
        "/ingest",
        json={
            "courses": [
                {"id": "c2", "title": "X", "time_zone": "Mars/Olympus"},
                {
                    "id": "c3",
                    "title": "Y",
                    "starts_at": "2025-05-01T00:00:00Z",
                    "ends_at": "2025-01-01T00:00:00Z",
                },
            ],
            "activities": [{"id": "a9", "course_id": "c1", "title": "Q", "points_possible": 5}],
            "people": [{"id": "p9"}],
        },
    )
    assert _problems(r) == {("courses[0].time_zone", "time_zone"), ("courses[1].ends_at", "order")}
    r = c.post(
        "/ingest",
        json={
            "activities": [
                {"id": "a9", "course_id": "nope", "title": "Q", "points_possible": 5},
                {"id": "a8", "course_id": "c1", "title": "Q", "points_possible": -5},
            ]
        },
    )
    assert ("activities[1].points_possible", "not_negative") in _problems(r)
    r = c.post(
        "/ingest",
        json={
            "activities": [{"id": "a9", "course_id": "nope", "title": "Q", "points_possible": 5}]
        },
    )
    assert _problems(r) == {("activities[0].course_id", "unknown_course")}
    r = c.post("/ingest", json={"enrollments": [{"course_id": "c1", "person_id": "ghost"}]})
    assert _problems(r) == {("enrollments[0].person_id", "unknown_person")}
    r = c.post("/ingest", json={"people": [{"id": "p8"}, {"id": "p8"}]})
    assert _problems(r) == {("people[1]", "duplicate")}
    r = c.put("/activities/a1", json={"course_id": "c9", "title": "Q", "points_possible": 1})
    assert ("course_id", "unknown_course") in _problems(r)
    r = c.put("/courses/c1", json={"title": "Bio", "policy": {"grace_period_minutes": -5}})
    assert _problems(r) == {("policy.grace_period_minutes", "not_negative")}
    r = c.put("/courses/c1", json={"title": "Bio", "policy": {"grace_period_minutes": 10**20}})
    assert _problems(r) == {("policy.grace_period_minutes", "maximum")}
    r = c.put("/courses/c1", json={"title": ""})
    assert _problems(r) == {("title", "required")}
    # a tenant-wide setting given to a course or activity had no effect: it is refused
    match = {"roster_match": "email"}
    r = c.put("/courses/c1", json={"title": "Bio", "policy": match})
    assert _problems(r) == {("policy.roster_match", "tenant_only")}
    body = {"course_id": "c1", "title": "Q", "points_possible": 1, "policy": match}
    r = c.put("/activities/a1", json=body)
    assert _problems(r) == {("policy.roster_match", "tenant_only")}
    r = c.post("/ingest", json={"courses": [{"id": "c5", "title": "Geo", "policy": match}]})
    assert _problems(r) == {("courses[0].policy.roster_match", "tenant_only")}
    r = c.put("/activities/a1/overrides/p1", json={"due_at": "2025-04-01"})
    assert _problems(r) == {("due_at", "timezone_required")}
    assert _counts(api) == before


def test_a_duplicate_is_listed_with_the_unknown_ids_of_the_same_batch(
    api: ApiEnv, c: Caller
) -> None:
    """A duplicate in the batch is of the second pass, with unknown ids (docs/api.md): one
    answer lists both, not the duplicate alone and the unknown course once it is fixed."""
    before = _counts(api)
    r = c.post(
        "/ingest",
        json={
            "people": [{"id": "p1", "name": "A"}, {"id": "p1", "name": "B"}],
            "enrollments": [{"course_id": "nope", "person_id": "p1"}],
        },
    )
    assert _problems(r) == {
        ("people[1]", "duplicate"),
        ("enrollments[0].course_id", "unknown_course"),
    }
    r = c.post(
        "/ingest",
        json={
            "enrollments": [{"course_id": "c1", "person_id": "p1"}] * 2,
            "attempts": [attempt("d1", 5, activity_id="nope", person_id="ghost")],
        },
    )
    assert _problems(r) == {
        ("enrollments[1]", "duplicate"),
        ("attempts[0].activity_id", "unknown_activity"),
        ("attempts[0].person_id", "unknown_person"),
    }
    assert _counts(api) == before


def test_every_problem_of_the_stored_facts_is_listed_for_attempts(api: ApiEnv, c: Caller) -> None:
    """`POST /attempts` and `/attempts/batch` list every unknown id and reused event id at
    once (a body's shape is checked first, docs/api.md)."""
    assert c.post("/attempts", json=attempt("e1", 7)).status_code == 202
    before = _counts(api)
    r = c.post("/attempts", json=attempt("x", 1, activity_id="nope", person_id="ghost"))
    assert _problems(r) == {("activity_id", "unknown_activity"), ("person_id", "unknown_person")}
    bad = [
        attempt("ok"),
        attempt("x1", 1, activity_id="nope"),
        attempt("x2", 1, person_id="ghost"),
        attempt("e1", 9),
    ]
    r = c.post("/attempts/batch", json={"attempts": bad})
    assert _problems(r) == {
        ("attempts[1].activity_id", "unknown_activity"),
        ("attempts[2].person_id", "unknown_person"),
        ("attempts[3].source_event_id", "event_id_reused"),
    }
    assert _counts(api) == before


def test_activity_cannot_move_between_courses(api: ApiEnv, c: Caller) -> None:
    c.put("/courses/c2", json={"title": "Chem"})
    before = _counts(api)
    r = c.put("/activities/a1", json={"course_id": "c2", "title": "Q", "points_possible": 1})
    assert _problems(r) == {("course_id", "immutable")}
    assert _counts(api) == before


def test_malformed_json(c: Caller) -> None:
    """400, as docs/security.md and the OpenAPI document say, with the shape of a 422."""
    r = c.post("/attempts", content="{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    [problem] = r.json()["detail"]
    # the body is named, not the character offset FastAPI puts in the location ("[1]")
    assert (problem["field"], problem["rule"], problem["loc"]) == ("body", "json", ["body"])
    assert problem["msg"].startswith("The body is not valid JSON at character 2: "), problem
    # not UTF-8 either
    r = c.post("/attempts", content=b'{"x": "\xff"}', headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    [problem] = r.json()["detail"]
    assert (problem["field"], problem["rule"]) == ("body", "json"), problem
