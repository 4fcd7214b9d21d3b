"""A PUT or an ingest item updates only the fields it sends: a field left out keeps its stored
value (an instructor's sync switch and policy survive courseware re-sending its activities),
a field sent (`null` included, where allowed) sets it, a new object gets the defaults."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import Course
from gradesync.services.ingest import IngestBatch, check, ingest
from tests.support.api import ApiEnv, Caller

COURSE = {"title": "North Campus", "time_zone": "America/Chicago"}


def _setup(api: ApiEnv) -> Caller:
    c = Caller(api.client, api.tenant("t1", "ingest"))
    r = c.put("/courses/nc-course", json=COURSE)
    assert r.status_code == 200, r.text
    r = c.put(
        "/activities/nc-a1",
        json={"course_id": "nc-course", "title": "A1", "points_possible": 3},
    )
    assert r.status_code == 200, r.text
    r = c.put("/people/nc-p1", json={"name": "Ada Lovelace", "email": "ada@example.edu"})
    assert r.status_code == 200, r.text
    r = c.put("/courses/nc-course/enrollments/nc-p1", json={})
    assert r.status_code == 200, r.text
    return c


def _activity(c: Caller, activity_id: str = "nc-a1") -> dict[str, Any]:
    r = c.get(f"/activities/{activity_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _instructor_settings(api: ApiEnv) -> Caller:
    """The set-up, then an instructor's policy for nc-a1 and its sync switched off, the latter
    by a PUT that leaves the policy out."""
    c = _setup(api)
    r = c.patch("/activities/nc-a1/policy", json={"attempt_selection": "latest"})
    assert r.status_code == 200, r.text
    r = c.put(
        "/activities/nc-a1",
        json={
            "course_id": "nc-course",
            "title": "A1",
            "points_possible": 3,
            "sync_enabled": False,
        },
    )
    assert r.status_code == 200, r.text
    return c


def test_put_activity_keeps_the_policy_and_sync_switch_it_leaves_out(api: ApiEnv) -> None:
    c = _instructor_settings(api)
    a = _activity(c)
    assert a["sync_enabled"] is False
    assert a["policy"] == {"attempt_selection": "latest"}

    r = c.put(
        "/activities/nc-a1",
        json={"course_id": "nc-course", "title": "A1 renamed", "points_possible": 3},
    )
    assert r.status_code == 200, r.text
    a = _activity(c)
    assert a["title"] == "A1 renamed"
    assert a["sync_enabled"] is False
    assert a["policy"] == {"attempt_selection": "latest"}
    assert a["points_possible"] == 3

    # sent, it sets: the switch back on, `policy: null` clears the layer, a due date and then
    # `due_at: null` clears it again
    r = c.put(
        "/activities/nc-a1",
        json={
            "course_id": "nc-course",
            "title": "A1 renamed",
            "points_possible": 3,
            "sync_enabled": True,
            "policy": None,
            "due_at": "2025-03-01T10:00:00Z",
        },
    )
    assert r.status_code == 200, r.text
    a = _activity(c)
    assert a["sync_enabled"] is True and a["policy"] == {}
    assert a["due_at"] is not None
    r = c.put(
        "/activities/nc-a1",
        json={"course_id": "nc-course", "title": "A1", "points_possible": 3, "due_at": None},
    )
    assert r.status_code == 200, r.text
    assert _activity(c)["due_at"] is None


def test_a_new_activity_gets_the_defaults(api: ApiEnv) -> None:
    c = _setup(api)
    r = c.put(
        "/activities/nc-a2",
        json={"course_id": "nc-course", "title": "A2", "points_possible": 5},
    )
    assert r.status_code == 200, r.text
    a = _activity(c, "nc-a2")
    assert a["sync_enabled"] is True and a["published"] is True and a["assigned"] is True
    assert a["kind"] == "graded" and a["policy"] == {} and a["due_at"] is None


def test_put_course_with_a_title_only_keeps_its_zone_and_recomputes_nothing(
    api: ApiEnv,
) -> None:
    c = _setup(api)
    r = c.patch("/courses/nc-course/policy", json={"past_due_zeros": "on"})
    assert r.status_code == 200, r.text
    r = c.put("/courses/nc-course", json={**COURSE, "sync_enabled": False})
    assert r.status_code == 200, r.text

    r = c.put("/courses/nc-course", json={"title": "NC"})
    assert r.status_code == 200, r.text
    assert r.json()["dirty_keys"] == 0  # the title alone changes no grade
    course = c.get("/courses/nc-course").json()
    assert course["title"] == "NC"
    assert course["time_zone"] == "America/Chicago"
    assert course["sync_enabled"] is False
    assert course["policy"] == {"past_due_zeros": "on"}

    # sent, it sets (null clears the policy)
    r = c.put("/courses/nc-course", json={"title": "NC", "time_zone": "UTC", "policy": None})
    assert r.status_code == 200, r.text
    course = c.get("/courses/nc-course").json()
    assert course["time_zone"] == "UTC" and course["policy"] == {}
    assert course["sync_enabled"] is False


def test_put_course_end_before_its_stored_start_is_refused(api: ApiEnv) -> None:
    c = _setup(api)
    r = c.put("/courses/nc-course", json={"title": "NC", "starts_at": "2025-09-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    r = c.put("/courses/nc-course", json={"title": "NC", "ends_at": "2025-06-01T00:00:00Z"})
    assert r.status_code == 422, r.text
    assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [("ends_at", "order")]
    course = c.get("/courses/nc-course").json()
    assert course["ends_at"] is None and course["starts_at"] is not None


def test_check_refuses_an_end_before_the_stored_start_as_ingest_does(api: ApiEnv) -> None:
    # the dry run an import makes: it must not pass what the ingest then refuses
    c = _setup(api)
    r = c.put("/courses/nc-course", json={"title": "NC", "starts_at": "2025-09-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    batch = IngestBatch(
        courses=[Course("t1", "nc-course", "NC", ends_at=datetime(2025, 6, 1, tzinfo=UTC))],
        sent={("courses", "nc-course"): frozenset({"title", "ends_at"})},
    )
    with pytest.raises(InvalidInput) as err:
        check(api.db.uow, "t1", batch)
    assert [(p.field, p.rule) for p in err.value.problems] == [("courses[0].ends_at", "order")]
    with pytest.raises(InvalidInput):  # the real ingest, for the same batch
        ingest(api.db.uow, api.runtime.clock, None, "t1", batch)
    assert c.get("/courses/nc-course").json()["ends_at"] is None


def test_put_person_with_an_empty_body_keeps_the_name(api: ApiEnv) -> None:
    c = _setup(api)
    r = c.put("/people/nc-p1", json={})
    assert r.status_code == 200, r.text
    assert r.json()["unchanged"] == {"people": 1}
    with api.db.uow() as uow:
        person = uow.people.get("t1", "nc-p1")
    assert person is not None
    assert person.name == "Ada Lovelace" and person.email == "ada@example.edu"

    r = c.put("/people/nc-p1", json={"email": None, "sis_id": "S-1"})
    assert r.status_code == 200, r.text
    with api.db.uow() as uow:
        person = uow.people.get("t1", "nc-p1")
    assert person is not None
    assert (person.name, person.email, person.sis_id) == ("Ada Lovelace", None, "S-1")


def test_ingest_resending_an_activity_keeps_the_instructors_switch_and_policy(
    api: ApiEnv,
) -> None:
    c = _instructor_settings(api)

    # the courseware re-sends its course, activities and people, as it always does
    r = c.post(
        "/ingest",
        json={
            "courses": [{"id": "nc-course", "title": "North Campus"}],
            "activities": [
                {"id": "nc-a1", "course_id": "nc-course", "title": "A1", "points_possible": 3},
                {"id": "nc-a2", "course_id": "nc-course", "title": "A2", "points_possible": 4},
            ],
            "people": [{"id": "nc-p1"}],
        },
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["unchanged"] == {"courses": 1, "activities": 1, "people": 1}
    assert body["changed"] == {"activities": 1}
    a1 = _activity(c)
    assert a1["sync_enabled"] is False
    assert a1["policy"] == {"attempt_selection": "latest"}
    a2 = _activity(c, "nc-a2")
    assert a2["sync_enabled"] is True and a2["policy"] == {}
    assert c.get("/courses/nc-course").json()["time_zone"] == "America/Chicago"
    with api.db.uow() as uow:
        person = uow.people.get("t1", "nc-p1")
    assert person is not None and person.name == "Ada Lovelace"

    # a field sent in the batch sets it
    r = c.post(
        "/ingest",
        json={
            "activities": [
                {
                    "id": "nc-a1",
                    "course_id": "nc-course",
                    "title": "A1",
                    "points_possible": 3,
                    "sync_enabled": True,
                }
            ]
        },
    )
    assert r.status_code == 202, r.text
    a1 = _activity(c)
    assert a1["sync_enabled"] is True and a1["policy"] == {"attempt_selection": "latest"}
