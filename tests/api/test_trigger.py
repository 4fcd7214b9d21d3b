"""Triggering runs through the API: queued, joined, woken; bad scopes refused."""

from __future__ import annotations

import re

from gradesync.domain.remedies import names_command
from tests.diagnostics.test_facts import C, T, seed
from tests.support.api import ROSTER, ApiEnv, Caller
from tests.support.statements import statements

# how the API writes every time: UTC, with `Z`
ZULU = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def test_sync_now_queues_a_run_and_a_second_request_joins_it(api: ApiEnv) -> None:
    c = Caller(api.client, api.tenant("t1", "admin"))
    c.post("/ingest", json=ROSTER)
    api.destination("t1", "lms")
    api.link("t1", "lms", "c1")
    r = c.post("/courses/c1/sync", json={})
    assert r.status_code == 202, r.text
    run = r.json()
    assert run["stage"] == "queued" and run["trigger"] == "manual" and run["joined"] is False
    assert run["course_id"] == "c1" and run["actor"] == "api-key:test-admin"
    assert [rid for rid, _ in api.waker.runs] == [run["id"]]

    again = c.post("/courses/c1/sync", json={"trigger": "resync"}).json()
    assert again["id"] == run["id"] and again["joined"] is True
    # a stronger trigger upgrades the queued run rather than queueing another
    rem = c.post("/runs", json={"course_id": "c1", "trigger": "remaster"}).json()
    assert rem["id"] == run["id"] and rem["trigger"] == "remaster"
    shown = c.get(f"/runs/{run['id']}").json()
    assert shown["trigger"] == "remaster" and [s["stage"] for s in shown["stages"]] == ["queued"]

    # a selection is its own scope
    sel = c.post(
        "/runs", json={"course_id": "c1", "destination_id": "lms", "activity_ids": ["a2"]}
    ).json()
    assert sel["id"] != run["id"] and sel["activity_ids"] == ["a2"]
    assert {r["id"] for r in c.get("/runs").json()} == {run["id"], sel["id"]}


def test_runs_are_answered_and_listed_with_their_stages_in_one_time_format(
    api: ApiEnv,
) -> None:
    """`POST /runs`, `POST /courses/{id}/sync` and `GET /runs` answered `"stages": null`
    (only `GET /runs/{id}` and the CLI had them), and a stage's time ended in `+00:00` where
    every other time of the API ends in `Z`."""
    c = Caller(api.client, api.tenant("t1", "admin"))
    c.post("/ingest", json=ROSTER)
    api.destination("t1", "lms")
    api.link("t1", "lms", "c1")
    asked = [
        c.post("/runs", json={"course_id": "c1"}).json(),
        c.post("/courses/c1/sync", json={"destination_id": "lms"}).json(),
        c.post("/courses/c1/sync", json={"destination_id": "lms"}).json(),  # joined
    ]
    for run in asked:
        assert [s["stage"] for s in run["stages"]] == ["queued"], run
        assert run["stages"][0]["at"] == run["created_at"] and ZULU.fullmatch(run["created_at"])
    listed = c.get("/runs").json()
    assert {r["id"]: r["stages"] for r in listed} == {r["id"]: r["stages"] for r in asked}
    assert c.get(f"/runs/{asked[0]['id']}").json()["stages"] == asked[0]["stages"]
    # a page's stages are read in one statement, however many runs it lists
    for ids in (["a1"], ["a2"], ["a1", "a2"]):
        assert c.post("/runs", json={"course_id": "c1", "activity_ids": ids}).status_code == 202
    with statements(api.db) as seen:
        assert len(c.get("/runs", params={"limit": 1}).json()) == 1
    with statements(api.db) as seen_many:
        assert len(c.get("/runs").json()) > 3
    assert len(seen_many) == len(seen)


def test_bad_scopes_and_triggers(api: ApiEnv) -> None:
    c = Caller(api.client, api.tenant("t1", "sync"))
    other = Caller(api.client, api.tenant("t2", "admin"))
    other.post(
        "/ingest",
        json={
            **ROSTER,
            "courses": [{"id": "c9", "title": "X"}],
            "activities": [],
            "enrollments": [],
        },
    )
    Caller(api.client, api.tenant("t1", "ingest")).post("/ingest", json=ROSTER)

    def problems(r: object) -> set[tuple[str, str]]:
        assert r.status_code == 422, r.text  # type: ignore[attr-defined]
        return {(d["field"], d["rule"]) for d in r.json()["detail"]}  # type: ignore[attr-defined]

    assert problems(c.post("/courses/c9/sync", json={})) == {("course_id", "unknown_course")}
    assert problems(c.post("/runs", json={"course_id": "c1", "destination_id": "nope"})) == {
        ("destination_id", "unknown_destination")
    }
    assert problems(c.post("/runs", json={"course_id": "c1", "activity_ids": ["a1", "zz"]})) == {
        ("activity_ids[1]", "unknown_activity")
    }
    assert ("trigger", "one_of") in problems(c.post("/runs", json={"trigger": "auto"}))
    assert ("trigger", "one_of") in problems(c.post("/runs", json={"trigger": "sometime"}))
    assert api.waker.runs == []
    assert c.get("/runs").json() == []


def test_a_run_is_asked_for_as_manual_resync_or_remaster_with_one_message(api: ApiEnv) -> None:
    """The model said six triggers could be asked for, the service then refused two of
    them in other words, and the OpenAPI schema held both lists."""
    c = Caller(api.client, api.tenant("t1", "admin"))
    c.post("/ingest", json=ROSTER)
    said = "Input should be 'manual', 'resync' or 'remaster'"
    for trigger in ("bogus", "auto", "schedule", "repair"):
        for path in ("/runs", "/courses/c1/sync"):
            r = c.post(
                path,
                json={"course_id": "c1", "trigger": trigger}
                if path == "/runs"
                else {"trigger": trigger},
            )
            assert r.status_code == 422, (path, trigger)
            assert [(d["field"], d["rule"], d["msg"]) for d in r.json()["detail"]] == [
                ("trigger", "one_of", said)
            ]
    assert api.waker.runs == []
    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("SyncIn", "CourseSyncIn"):
        trigger = schemas[name]["properties"]["trigger"]
        assert "$ref" not in str(trigger) and trigger["enum"] == ["manual", "resync", "remaster"]


def test_a_typo_in_the_runs_query_is_refused_not_ignored(api: ApiEnv) -> None:
    """`?course=c1` (for `course_id`) listed every run, as if unfiltered."""
    c = Caller(api.client, api.tenant("t1", "admin"))
    c.post("/ingest", json=ROSTER)
    c.post("/runs", json={})
    r = c.get("/runs", params={"course": "c1", "trigger": "manual"})
    assert r.status_code == 422
    assert [(d["loc"], d["field"], d["rule"]) for d in r.json()["detail"]] == [
        (["query", "course"], "course", "unknown_field")
    ]
    bad = c.get("/runs", params={"trigger": "bogus", "limit": "0"}).json()["detail"]
    assert {(d["field"], d["rule"]) for d in bad} == {("trigger", "one_of"), ("limit", "minimum")}
    assert len(c.get("/runs", params={"course_id": "c1"}).json()) == 0
    assert len(c.get("/runs", params={"trigger": "manual", "limit": 5}).json()) == 1


def test_a_repair_answers_its_run_as_get_runs_shows_it(api: ApiEnv) -> None:
    """A whole-activity repair's run came with `"stages": null`."""
    seed(api.db)  # a course connected to an LMS, with grades to resend
    c = Caller(api.client, api.tenant(T, "admin"))
    r = c.post(f"/courses/{C}/repair", json={"activity_ids": ["a1"]})
    assert r.status_code == 202, r.text
    run = r.json()["run"]
    assert [s["stage"] for s in run["stages"]] == ["queued"], run
    assert run["stages"] == c.get(f"/runs/{run['id']}").json()["stages"]


def test_one_scope_mistake_gets_one_answer_wherever_a_run_is_asked_for(api: ApiEnv) -> None:
    """A run, a schedule and a repair name their scope the same way; the same mistake in it
    is refused with the same field and rule by each, and nothing is queued."""
    c = Caller(api.client, api.tenant("t1", "admin"))
    c.post("/ingest", json=ROSTER)
    api.destination("t1", "lms")

    def problems(r: object) -> list[tuple[str, str]]:
        assert r.status_code == 422, r.text  # type: ignore[attr-defined]
        return [(d["field"], d["rule"]) for d in r.json()["detail"]]  # type: ignore[attr-defined]

    schedule = {"kind": "interval", "spec": "15m"}
    for scope, expected in [
        ({"course_id": "ghost"}, [("course_id", "unknown_course")]),
        (
            {"course_id": "c1", "destination_id": "nope"},
            [("destination_id", "unknown_destination")],
        ),
        ({"course_id": "c1", "activity_ids": ["zz"]}, [("activity_ids[0]", "unknown_activity")]),
    ]:
        course = str(scope["course_id"])
        rest = {k: v for k, v in scope.items() if k != "course_id"}
        assert problems(c.post("/runs", json=scope)) == expected
        assert problems(c.post(f"/courses/{course}/sync", json=rest)) == expected
        assert problems(c.post("/schedules", json={**schedule, **scope})) == expected
        assert problems(c.post(f"/courses/{course}/repair", json=rest)) == expected
    assert api.waker.runs == []
    assert c.get("/runs").json() == [] and c.get("/schedules").json() == []


def test_a_run_into_a_destination_the_course_is_not_linked_to_is_refused(api: ApiEnv) -> None:
    """It was queued (202) and ended `succeeded` with every count 0, a green run that did
    nothing; now 422 `destination_id` `not_linked` says what connects the course, and nothing
    is queued."""
    c = Caller(api.client, api.tenant("t1", "admin"))
    c.post("/ingest", json=ROSTER)
    api.destination("t1", "lms")
    api.destination("t1", "other")
    api.link("t1", "lms", "c1")
    for asked in (
        c.post("/runs", json={"course_id": "c1", "destination_id": "other", "trigger": "remaster"}),
        c.post("/courses/c1/sync", json={"destination_id": "other"}),
    ):
        assert asked.status_code == 422, asked.text
        [problem] = asked.json()["detail"]
        assert (problem["field"], problem["rule"]) == ("destination_id", "not_linked")
        assert "not connected to LMS other" in problem["msg"] and "launch" in problem["msg"]
    assert c.get("/runs").json() == [] and api.waker.runs == []
    # the destination it is linked to, and the whole course, are still asked for
    assert c.post("/runs", json={"course_id": "c1", "destination_id": "lms"}).status_code == 202
    assert c.post("/runs", json={"course_id": "c1"}).status_code == 202


def test_a_run_into_a_sis_the_course_is_not_mapped_in_names_the_apis_route(api: ApiEnv) -> None:
    """Refused for a SIS the course is not mapped to a class of, the request read `gradesync
    sis map-class ...` to a reader of the HTTP API, which maps a class itself: its route is
    named instead, as the diagnosis names it (the command line keeps the command)."""
    c = Caller(api.client, api.tenant("t1", "admin"))
    c.post("/ingest", json=ROSTER)
    sis = {"name": "District SIS", "file_based": True}
    assert c.put("/sis/connections/sis", json=sis).status_code == 200
    for asked in (
        c.post("/runs", json={"course_id": "c1", "destination_id": "sis"}),
        c.post("/courses/c1/sync", json={"destination_id": "sis"}),
    ):
        assert asked.status_code == 422, asked.text
        [problem] = asked.json()["detail"]
        assert (problem["field"], problem["rule"]) == ("destination_id", "not_linked")
        assert "(`PUT /api/v1/sis/connections/sis/classes/c1` with its `class_id`" in problem["msg"]
        assert not names_command(problem["msg"]), problem["msg"]
    assert c.get("/runs").json() == [] and api.waker.runs == []
