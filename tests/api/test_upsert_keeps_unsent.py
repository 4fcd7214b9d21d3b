"""A PUT or an ingest item updates only the fields it sends: a field left out keeps its stored
value (an instructor's sync switch and policy survive courseware re-sending its activities),
a field sent (`null` included, where allowed) sets it, a new object gets the defaults."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import Course, Enrollment, EnrollmentStatus, Role
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


def _enrollment(api: ApiEnv, person_id: str = "nc-p1") -> tuple[str, str, str | None]:
    with api.db.uow() as uow:
        e = uow.enrollments.get("t1", "nc-course", person_id)
    assert e is not None
    return e.role.value, e.status.value, e.section_id


def _in_a_section(api: ApiEnv) -> Caller:
    """The set-up, then nc-p1 an inactive instructor in section sec-1."""
    c = _setup(api)
    r = c.put(
        "/courses/nc-course/enrollments/nc-p1",
        json={"role": "instructor", "status": "inactive", "section_id": "sec-1"},
    )
    assert r.status_code == 200, r.text
    assert _enrollment(api) == ("instructor", "inactive", "sec-1")
    return c


def test_put_enrollment_with_only_its_role_keeps_its_status_and_section(api: ApiEnv) -> None:
    # the wrong_role remedy: `{"role": "learner"}` alone, and the learner stays in the section
    c = _in_a_section(api)
    r = c.put("/courses/nc-course/enrollments/nc-p1", json={"role": "learner"})
    assert r.status_code == 200, r.text
    assert r.json()["changed"] == {"enrollments": 1}
    assert _enrollment(api) == ("learner", "inactive", "sec-1")

    # nothing sent, nothing changed: no grade recomputed
    r = c.put("/courses/nc-course/enrollments/nc-p1", json={})
    assert r.status_code == 200, r.text
    assert r.json()["unchanged"] == {"enrollments": 1} and r.json()["dirty_keys"] == 0
    assert _enrollment(api) == ("learner", "inactive", "sec-1")

    # sent, it sets: the status back to its default; `null` takes them out of the section
    r = c.put("/courses/nc-course/enrollments/nc-p1", json={"status": "active"})
    assert r.status_code == 200, r.text
    assert _enrollment(api) == ("learner", "active", "sec-1")
    r = c.put("/courses/nc-course/enrollments/nc-p1", json={"section_id": None})
    assert r.status_code == 200, r.text
    assert _enrollment(api) == ("learner", "active", None)


def test_a_new_enrollment_gets_the_defaults(api: ApiEnv) -> None:
    c = _setup(api)
    assert _enrollment(api) == ("learner", "active", None)  # the set-up's, from `{}`
    r = c.put("/people/nc-p2", json={"name": "Grace Hopper"})
    assert r.status_code == 200, r.text
    r = c.put("/courses/nc-course/enrollments/nc-p2", json={"section_id": "sec-2"})
    assert r.status_code == 200, r.text
    assert r.json()["changed"] == {"enrollments": 1}
    assert _enrollment(api, "nc-p2") == ("learner", "active", "sec-2")


def test_ingest_an_enrollment_keeps_what_its_item_leaves_out(api: ApiEnv) -> None:
    c = _in_a_section(api)
    r = c.post(
        "/ingest",
        json={
            "people": [{"id": "nc-p2"}],
            "enrollments": [
                {"course_id": "nc-course", "person_id": "nc-p1", "role": "learner"},
                {"course_id": "nc-course", "person_id": "nc-p2", "status": "completed"},
            ],
        },
    )
    assert r.status_code == 202, r.text
    assert r.json()["changed"] == {"people": 1, "enrollments": 2}
    assert _enrollment(api) == ("learner", "inactive", "sec-1")
    assert _enrollment(api, "nc-p2") == ("learner", "completed", None)  # new: the defaults

    r = c.post(
        "/ingest",
        json={
            "enrollments": [
                {"course_id": "nc-course", "person_id": "nc-p1", "section_id": None},
                {"course_id": "nc-course", "person_id": "nc-p2"},
            ]
        },
    )
    assert r.status_code == 202, r.text
    assert r.json()["changed"] == {"enrollments": 1}
    assert r.json()["unchanged"] == {"enrollments": 1}
    assert _enrollment(api) == ("learner", "inactive", None)
    assert _enrollment(api, "nc-p2") == ("learner", "completed", None)


def test_an_enrollment_sent_without_sent_fields_is_written_whole(api: ApiEnv) -> None:
    # launches and roster reads send whole enrollments: what they leave out is the default
    _in_a_section(api)
    batch = IngestBatch(enrollments=[Enrollment("t1", "nc-course", "nc-p1", Role.LEARNER)])
    ingest(api.db.uow, api.runtime.clock, None, "t1", batch)
    assert _enrollment(api) == ("learner", EnrollmentStatus.ACTIVE.value, None)
