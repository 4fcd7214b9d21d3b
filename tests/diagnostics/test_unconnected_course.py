"""A course connected nowhere yet, diagnosed over the API: an LMS course is connected by a
launch (or Deep Linking) from it, a SIS by mapping the course to one of its classes. The
course triage and the learner's diagnosis say which, at each destination, and what to do."""

from __future__ import annotations

from typing import Any

from gradesync.services.console_queries import course_page
from gradesync.testing import unique
from tests.diagnostics.conftest import World, causes, failed


def _unconnected_course(w: World) -> tuple[str, str]:
    """An LMS and a SIS, and course `cd` linked to neither: a learner enrolled, attempts on a
    graded activity and one on an unpublished one (a problem of a single activity)."""
    w.register()
    w.ok(
        "PUT",
        "/sis/connections/sis",
        json={
            "name": "District SIS",
            "base_url": "https://sis.example.org/ims/oneroster/gradebook/v1p2",
            "client_id": "gradesync",
            "client_secret": "s3cret",
        },
    )
    learner = unique("ada-")
    w.ok(
        "POST",
        "/ingest",
        json={
            "courses": [{"id": "cd", "title": "Course D"}],
            "activities": [
                {"id": "cd-a", "course_id": "cd", "title": "A", "points_possible": 10},
                {
                    "id": "cd-b",
                    "course_id": "cd",
                    "title": "B",
                    "points_possible": 10,
                    "published": False,
                },
            ],
            "people": [{"id": learner, "name": "Ada"}],
            "enrollments": [{"course_id": "cd", "person_id": learner}],
            "attempts": [
                {
                    "source_event_id": unique("ev-"),
                    "activity_id": activity,
                    "person_id": learner,
                    "score_given": 7,
                    "score_maximum": 10,
                    "completed_at": "2026-03-01T10:00:00Z",
                }
                for activity in ("cd-a", "cd-b")
            ],
        },
    )
    return "cd", learner


def _course_connected(diagnosis: dict[str, Any], destination: str) -> dict[str, Any]:
    [check] = [
        c
        for c in diagnosis["checks"]
        if c["code"] == "course_connected" and c["destination_id"] == destination
    ]
    return check


def test_a_course_mapped_to_no_sis_class_is_said_not_connected_to_the_sis(world: World) -> None:
    course, learner = _unconnected_course(world)

    triage = world.triage(course)
    # no grade of the course can reach either destination: not "some activities"
    assert triage["symptom"] == "nothing_syncing"
    assert {d: s["symptom"] for d, s in triage["destinations"].items()} == {
        "lms": "nothing_syncing",
        "sis": "nothing_syncing",
    }
    wide = {c["destination_id"]: c for c in triage["causes"]["course"]}
    assert {c["code"] for c in wide.values()} == {"course_not_connected"}
    lms, sis = wide["lms"], wide["sis"]
    assert "no launch from the LMS course" in lms["evidence"]
    assert "Deep Linking" in lms["remedy"]
    assert "class" in sis["title"] and "LMS" not in sis["title"]
    assert "it is not mapped to a SIS class" in sis["evidence"]
    # read over the API, what maps the class is the API's route (the command line's doctor
    # names the command)
    assert "`PUT /api/v1/sis/connections/sis/classes/cd`" in sis["remedy"]
    assert "gradesync sis" not in sis["remedy"]
    assert "launch" not in sis["evidence"] + sis["remedy"]
    assert "Deep Linking" not in sis["remedy"]
    # the unpublished activity is still named, beneath the course-wide cause
    assert causes(triage, "activities")["activity_unpublished"]["activities"] == ["cd-b"]

    diagnosis = world.diagnose(learner, "cd-a")
    assert "course_connected" in failed(diagnosis)
    at_lms = _course_connected(diagnosis, "lms")
    assert not at_lms["passed"] and "no launch from the LMS course" in at_lms["evidence"]
    assert "Deep Linking" in at_lms["remedy"]
    at_sis = _course_connected(diagnosis, "sis")
    assert not at_sis["passed"]
    assert "not connected to District SIS: it is not mapped to a SIS class" in at_sis["evidence"]
    assert "launch" not in at_sis["evidence"] + at_sis["remedy"]
    assert "`PUT /api/v1/sis/connections/sis/classes/cd` with its `class_id`" in at_sis["remedy"]

    # asked about the SIS alone, the same
    one = world.ok(
        "GET", f"/activities/cd-a/learners/{learner}/diagnosis", params={"destination_id": "sis"}
    )
    assert _course_connected(one, "sis") == at_sis
    alone = world.ok("GET", f"/courses/{course}/diagnosis", params={"destination_id": "sis"})
    assert alone["symptom"] == "nothing_syncing"
    assert [c["code"] for c in alone["causes"]["course"]] == ["course_not_connected"]


def test_a_learners_grades_say_not_sent_where_the_course_is_not_connected(world: World) -> None:
    """GET /people/{id}/grades answered no rows for a graded learner of a course connected
    nowhere; it says, per destination, what the console grid and the diagnosis say."""
    course, learner = _unconnected_course(world)
    grades = world.ok("GET", f"/people/{learner}/grades", params={"course_id": course})
    assert grades["note"] is None
    assert sorted(grades["destinations"]) == ["lms", "sis"]
    diagnosis = world.diagnose(learner, "cd-a")
    for dest, cells in grades["destinations"].items():
        assert [c["activity_id"] for c in cells] == ["cd-a", "cd-b"]
        assert {(c["state"], c["reason_code"], c["in_sync"]) for c in cells} == {
            ("not_sent", "course_not_connected", False)
        }
        assert not _course_connected(diagnosis, dest)["passed"]
    [lms] = {c["reason_text"] for c in grades["destinations"]["lms"]}
    assert lms.startswith("Course D is not connected to ")
    assert "no launch from the LMS course has been received yet" in lms
    [sis] = {c["reason_text"] for c in grades["destinations"]["sis"]}
    assert "Course D is not connected to District SIS: it is not mapped to a SIS class" in sis
    # one destination asked for: only its rows
    one = world.ok(
        "GET", f"/people/{learner}/grades", params={"course_id": course, "destination_id": "sis"}
    )
    assert list(one["destinations"]) == ["sis"]


def test_the_grid_the_grades_and_the_diagnosis_say_the_same_of_an_unconnected_course(
    world: World,
) -> None:
    """The console's grid, GET /people/{id}/grades and the diagnosis (the learner's
    `course_connected` check and the course's `course_not_connected` cause) each said it in
    their own words; they say one thing: what is missing, then what connects the course (the
    grid in the console's words for it, the others in the API's)."""
    course, learner = _unconnected_course(world)
    grades = world.ok("GET", f"/people/{learner}/grades", params={"course_id": course})
    diagnosis = world.diagnose(learner, "cd-a")
    course_causes = {c["destination_id"]: c for c in world.triage(course)["causes"]["course"]}
    for dest, missing, remedy in (
        ("lms", "no launch from the LMS course has been received yet", "Deep Linking"),
        ("sis", "it is not mapped to a SIS class", "`PUT /api/v1/sis/connections/sis/classes/cd`"),
    ):
        check = _course_connected(diagnosis, dest)
        said = f"{check['evidence']} {check['remedy']}"
        assert check["evidence"].startswith("Course D is not connected to ")
        assert check["evidence"].endswith(f": {missing}, so no grade of it is sent there.")
        assert remedy in check["remedy"]
        grid = course_page(
            world.runtime.uow,
            world.tenant,
            course,
            capabilities=world.runtime.capabilities,
            destination_id=dest,
        )
        assert grid.not_connected is not None
        if dest == "lms":
            assert grid.not_connected == said
        else:
            assert grid.not_connected == (
                f"{check['evidence']} Map the course to its SIS class on the course's SIS "
                "passback page (/console/sis/sis/courses/cd, Class and students), then tick "
                "'Sync to SIS' there for the activities whose grades belong in the SIS."
            )
        assert {c["reason_text"] for c in grades["destinations"][dest]} == {said}
        cause = course_causes[dest]
        assert (cause["evidence"], cause["remedy"]) == (check["evidence"], check["remedy"])
