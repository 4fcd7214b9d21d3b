"""Ingest through the API: upserts, attempts one by one and in batches, idempotency, dirty
keys marked in the same transaction and the worker woken after the commit."""

from __future__ import annotations

from sqlalchemy import select

from gradesync.adapters.db import schema as t
from tests.support.api import ROSTER, ApiEnv, Caller, attempt


def _dirty(api: ApiEnv) -> set[tuple[str, str, str]]:
    with api.db.engine.connect() as conn:
        rows = conn.execute(
            select(t.dirty_keys.c.tenant_id, t.dirty_keys.c.activity_id, t.dirty_keys.c.person_id)
        )
        return {(a, b, c) for a, b, c in rows}


def _clear_dirty(api: ApiEnv) -> None:
    with api.db.engine.begin() as conn:
        conn.execute(t.dirty_keys.delete())


def test_roster_then_attempt_marks_the_key_and_wakes_after_commit(api: ApiEnv) -> None:
    c = Caller(api.client, api.tenant("t1", "ingest"))
    r = c.post("/ingest", json=ROSTER)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["changed"] == {"courses": 1, "activities": 2, "people": 2, "enrollments": 2}
    assert _dirty(api) == {("t1", a, p) for a in ("a1", "a2") for p in ("p1", "p2")}
    _clear_dirty(api)
    wakes = api.waker.keys_calls

    r = c.post("/attempts", json=attempt("e1", 7))
    assert r.status_code == 202, r.text
    assert r.json()["recorded"] == 1 and r.json()["duplicates"] == 0
    assert _dirty(api) == {("t1", "a1", "p1")}
    assert api.waker.keys_calls == wakes + 1
    assert api.waker.dirty_seen_at_wake[-1] == 1  # the mark was committed before the wake-up
    with api.db.uow() as uow:
        [stored] = uow.attempts.for_key("t1", "a1", "p1")
    assert stored.score_given == 7 and stored.score_maximum == 10
    assert stored.completed_at.isoformat() == "2025-03-01T10:00:00+00:00"


def test_repeated_event_is_idempotent(api: ApiEnv) -> None:
    c = Caller(api.client, api.tenant("t1", "ingest"))
    c.post("/ingest", json=ROSTER)
    first = c.post("/attempts", json=attempt("e1", 7)).json()
    _clear_dirty(api)
    wakes = api.waker.keys_calls
    again = c.post("/attempts", json=attempt("e1", 7))
    assert again.status_code == 202
    assert again.json()["duplicates"] == 1 and again.json()["recorded"] == 0
    assert again.json()["attempts"][0]["attempt_id"] == first["attempts"][0]["attempt_id"]
    assert _dirty(api) == set() and api.waker.keys_calls == wakes  # nothing new: no wake-up
    with api.db.uow() as uow:
        assert len(uow.attempts.for_key("t1", "a1", "p1")) == 1


def test_batch_of_attempts_and_a_repeat_inside_it(api: ApiEnv) -> None:
    c = Caller(api.client, api.tenant("t1", "ingest"))
    c.post("/ingest", json=ROSTER)
    batch = [attempt(f"e{i}", i % 10, person_id=f"p{1 + i % 2}") for i in range(50)]
    batch.append(attempt("e3", 3, person_id="p2"))  # a retried event inside the batch
    r = c.post("/attempts/batch", json={"attempts": batch})
    assert r.status_code == 202, r.text
    assert r.json()["recorded"] == 50 and r.json()["duplicates"] == 1
    with api.db.uow() as uow:
        assert len(uow.attempts.for_key("t1", "a1", "p1")) == 25
        assert len(uow.attempts.for_key("t1", "a1", "p2")) == 25


def test_upserts_one_at_a_time_and_what_they_mark(api: ApiEnv) -> None:
    c = Caller(api.client, api.tenant("t1", "ingest"))
    assert c.put("/courses/c1", json={"title": "Bio"}).status_code == 200
    assert c.put("/people/p1", json={"name": "Ada"}).status_code == 200
    assert (
        c.put(
            "/activities/a1", json={"course_id": "c1", "title": "Q1", "points_possible": 10}
        ).status_code
        == 200
    )
    assert _dirty(api) == set()  # nobody enrolled yet
    r = c.put("/courses/c1/enrollments/p1", json={"role": "learner"})
    assert r.status_code == 200 and r.json()["dirty_keys"] == 1
    _clear_dirty(api)

    # the same body again changes nothing and marks nothing
    r = c.put("/activities/a1", json={"course_id": "c1", "title": "Q1", "points_possible": 10})
    assert r.json()["unchanged"] == {"activities": 1} and _dirty(api) == set()
    # a change to the activity marks its learners
    r = c.put("/activities/a1", json={"course_id": "c1", "title": "Q1", "points_possible": 20})
    assert r.json()["changed"] == {"activities": 1}
    assert _dirty(api) == {("t1", "a1", "p1")}
    _clear_dirty(api)
    # a name change does not change grades
    c.put("/people/p1", json={"name": "Ada L."})
    assert _dirty(api) == set()
    # a due-date extension marks that learner's key
    r = c.put("/activities/a1/overrides/p1", json={"due_at": "2025-04-01T12:00:00+02:00"})
    assert r.status_code == 200 and _dirty(api) == {("t1", "a1", "p1")}
    _clear_dirty(api)
    # a course policy change recomputes the course
    r = c.put("/courses/c1", json={"title": "Bio", "policy": {"past_due_zeros": "on"}})
    assert r.status_code == 200 and _dirty(api) == {("t1", "a1", "p1")}
    _clear_dirty(api)
    # dropping the learner recomputes their keys
    c.put("/courses/c1/enrollments/p1", json={"status": "dropped"})
    assert _dirty(api) == {("t1", "a1", "p1")}

    got = c.get("/courses/c1").json()
    assert got["policy"] == {"past_due_zeros": "on"} and got["time_zone"] == "UTC"
    acts = c.get("/courses/c1/activities").json()
    assert [(a["id"], a["points_possible"]) for a in acts] == [("a1", 20.0)]
    with api.db.uow() as uow:
        due = uow.overrides.get("t1", "a1", "p1")
    assert due is not None and due.isoformat() == "2025-04-01T10:00:00+00:00"
