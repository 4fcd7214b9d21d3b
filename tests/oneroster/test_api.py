"""The SIS admin API: admin scope, tenant isolation, clear 422s, and a live SIS behind it."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path
from typing import Any

from gradesync.adapters.db.database import Database
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services import sis as sis_service
from tests.support.api import ApiEnv, Caller, attempt

from .conftest import CLIENT_ID, CLIENT_SECRET
from .facts import ADA, ALGEBRA, QUIZ_1

ROSTER: dict[str, Any] = {
    "courses": [ALGEBRA],
    "activities": [
        QUIZ_1,
        {
            "id": "e1",
            "course_id": "c1",
            "title": "Essay",
            "points_possible": 20,
            "category": "Labs",
        },
    ],
    "people": [ADA],
    "enrollments": [{"course_id": "c1", "person_id": "p1"}],
}


def _held(db: Database) -> dict[str, bool]:
    """Which ticked activities of course c1 wait for Post grades, as the console shows them."""
    view = sis_service.course_overview(db.uow, tenant_id="t1", destination_id="sis", course_id="c1")
    return {s.activity.id: s.held for s in view.activities if s.selected}


def test_sis_admin_api(db: Database, tmp_path: Path, sis: RunningSandbox) -> None:
    env = ApiEnv(db, tmp_path)
    with env.client:
        admin = Caller(env.client, env.tenant("t1", "admin"))
        syncer = Caller(env.client, env.tenant("t1", "sync"))
        other = Caller(env.client, env.tenant("t2", "admin"))
        assert admin.post("/ingest", json=ROSTER).status_code == 202
        body = {
            "name": "SIS",
            "base_url": sis.base_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "profile": {"category_match": "name"},
        }
        assert syncer.put("/sis/connections/sis", json=body).status_code == 403
        r = admin.put("/sis/connections/sis", json={**body, "profile": {"category_match": "title"}})
        assert r.status_code == 422
        assert r.json()["detail"][0]["field"] == "profile.category_match"
        r = admin.put("/sis/connections/sis", json=body)
        assert (
            r.status_code == 200 and "client_secret" not in r.text and CLIENT_SECRET not in r.text
        )
        steps = admin.post("/sis/connections/sis/check").json()
        assert [s["passed"] for s in steps] == [True, True, True]
        # a class the SIS cannot locate is refused before it is saved
        r = admin.put(
            "/sis/connections/sis/classes/c1", json={"class_id": "cls-typo", "school_id": "sch-1"}
        )
        assert r.status_code == 422, r.text
        assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [
            ("class_id", "class_unknown")
        ]
        assert "'cls-typo'" in r.json()["detail"][0]["msg"]
        with db.uow() as uow:
            assert uow.links.course("t1", "sis", "c1") is None
        r = admin.put(
            "/sis/connections/sis/classes/c1",
            json={
                "class_id": "cls-1",
                "school_id": "sch-1",
                "term_start": "2025-01-06",
                "term_end": "2025-06-20",
            },
        )
        assert r.status_code == 200
        assert admin.post("/sis/connections/sis/courses/c1/students").json() == {
            "mapped": ["p1"],
            "unmapped": [],
        }
        # a category the SIS does not have is refused, nothing saved
        r = admin.put(
            "/sis/connections/sis/alignments/Labs",
            json={"category_id": "cat-zzz", "course_id": "c1"},
        )
        assert r.status_code == 422, r.text
        assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [
            ("category_id", "category_unknown")
        ]
        assert "'cat-zzz'" in r.json()["detail"][0]["msg"]
        with db.uow() as uow:
            klass = uow.links.course("t1", "sis", "c1")
        assert klass is not None and "category_map" not in klass.data
        r = admin.put("/sis/connections/sis/selection", json={"activity_ids": ["q1", "e1"]})
        assert r.status_code == 422
        # every problem at once, the SIS asked too: it has no category for e1's group
        assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [
            ("activities[e1].due_at", "due_date_required"),
            ("activities[e1].category", "category_missing"),
        ]
        # ticked with a hold: the choice is recorded, the grades wait for Post grades
        r = admin.put("/sis/connections/sis/selection", json={"activity_ids": ["q1"], "hold": True})
        assert r.status_code == 200
        assert _held(db) == {"q1": True}
        assert (
            admin.put("/sis/connections/sis/selection", json={"activity_ids": ["q1"]}).status_code
            == 200
        )
        assert _held(db) == {"q1": False}  # ticked again without a hold: it sends at once
        cats = admin.get("/sis/connections/sis/categories", params={"course_id": "c1"}).json()
        assert {c["title"] for c in cats["categories"]} == {"Homework", "Quizzes"}
        assert cats["alignment"] == [
            {"group": "Quizzes", "activities": ["q1"], "category_id": "cat-quiz", "problem": None}
        ]
        r = admin.get("/sis/connections/sis/validation", params={"course_id": "nope"})
        assert r.status_code == 422, r.text  # not an empty list
        assert [(p["loc"], p["rule"]) for p in r.json()["detail"]] == [
            (["query", "course_id"], "unknown_course")
        ]
        checks = admin.get("/sis/connections/sis/validation", params={"course_id": "c1"}).json()
        assert {c["activity_id"]: c["ok"] for c in checks} == {"q1": True, "e1": False}
        # Post grades: when nothing can go, a refusal that says why, and no run
        r = admin.post("/sis/connections/sis/courses/c1/post", json={"activity_ids": ["e1"]})
        assert r.status_code == 422, r.text
        # every reason, whose and which: not ticked, its validation (the SIS asked for
        # its group's category, as ticking asks)
        assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [
            ("activity_ids", "nothing_to_post"),
            ("activities[e1].sync_to_sis", "not_selected_for_sis"),
            ("activities[e1].due_at", "due_date_required"),
            ("activities[e1].category", "category_missing"),
        ]
        assert "PUT /api/v1/sis/connections/sis/selection" in r.json()["detail"][1]["msg"]
        assert admin.get("/runs").json() == []
        r = admin.post("/sis/connections/sis/courses/c1/post", json={"activity_ids": ["q1"]})
        assert r.status_code == 202, r.text
        assert (r.json()["posted"], r.json()["held"]) == (["q1"], [])
        # the run as GET /runs/{id} shows it, stages included
        shown = admin.get(f"/runs/{r.json()['run']['id']}").json()
        assert r.json()["run"]["stages"] == shown["stages"] and shown["stages"]
        # CSV files come from a file-based connection; this one passes back over REST
        r = admin.post("/sis/connections/sis/exports", json={"mode": "bulk"})
        assert r.status_code == 422
        assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [
            ("destination_id", "file_based")
        ]
        files = {"name": "SIS files", "file_based": True}
        assert admin.put("/sis/connections/files", json=files).status_code == 200
        r = admin.put(
            "/sis/connections/files/classes/c1", json={"class_id": "cls-1", "school_id": "sch-1"}
        )
        assert r.status_code == 200
        assert admin.post("/sis/connections/files/courses/c1/students").status_code == 200
        r = admin.put("/sis/connections/files/alignments/Quizzes", json={"category_id": "cat-quiz"})
        assert r.status_code == 200
        assert (
            admin.put("/sis/connections/files/selection", json={"activity_ids": ["q1"]}).status_code
            == 200
        )
        # a file-based SIS has no connection to test, and says so
        r = admin.post("/destinations/files/check")
        assert r.status_code == 200
        assert r.json()["ok"] is True and r.json()["steps"][0]["name"] == "file-based SIS"
        r = admin.post("/sis/connections/files/exports", json={"mode": "bulk"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
            assert "lineItems.csv" in archive.namelist()
            assert "Quiz 1" in archive.read("lineItems.csv").decode()
            assert "cat-quiz" in archive.read("lineItems.csv").decode()
        # another tenant sees nothing of it: its course c1 is as unknown as any other
        assert other.get("/sis/connections/sis/validation").status_code == 404
        r = other.get("/sis/connections/sis/validation", params={"course_id": "c1"})
        assert r.status_code == 422 and r.json()["detail"][0]["rule"] == "unknown_course"


def test_mapping_and_ticking_send_the_grades_already_there(
    db: Database, tmp_path: Path, sis: RunningSandbox
) -> None:
    """Grades computed before the course was mapped have no row at the SIS: mapping the class
    and ticking the activity have them computed and sent, the worker woken, no sync needed."""
    env = ApiEnv(db, tmp_path)
    engine = env.runtime.build_engine()
    with env.client:
        admin = Caller(env.client, env.tenant("t1", "admin"))
        assert admin.post("/ingest", json=ROSTER).status_code == 202
        graded = attempt("ev1", 8, activity_id="q1")
        assert admin.post("/attempts", json=graded).status_code == 202
        asyncio.run(engine.process_dirty())  # the worker computed them (no SIS yet)
        body = {"name": "SIS", "base_url": sis.base_url, "client_id": CLIENT_ID}
        body |= {"client_secret": CLIENT_SECRET, "profile": {"category_match": "name"}}
        assert admin.put("/sis/connections/sis", json=body).status_code == 200
        klass = {"class_id": "cls-1", "school_id": "sch-1", "term_start": "2025-01-06"}
        assert admin.put("/sis/connections/sis/classes/c1", json=klass).status_code == 200
        assert admin.post("/sis/connections/sis/courses/c1/students").status_code == 200
        wakes = env.waker.keys_calls
        r = admin.put("/sis/connections/sis/selection", json={"activity_ids": ["q1"]})
        assert r.status_code == 200, r.text
        assert env.waker.keys_calls == wakes + 1 and env.waker.dirty_seen_at_wake[-1] == 1

        async def work() -> None:
            await engine.process_dirty()
            await engine.deliver_due()

        asyncio.run(work())
    [result] = sis.admin.inspect()["sis"]["results"]
    assert (result["student"]["sourcedId"], result["score"]) == ("stu-1", 8.0)


def test_updating_a_connection_keeps_its_kind_unless_told(
    db: Database, tmp_path: Path, sis: RunningSandbox
) -> None:
    env = ApiEnv(db, tmp_path)
    with env.client:
        admin = Caller(env.client, env.tenant("t1", "admin"))
        r = admin.put("/sis/connections/files", json={"name": "SIS files", "file_based": True})
        assert r.status_code == 200 and r.json()["kind"] == "oneroster_csv", r.text
        # an update that does not repeat `file_based` leaves a file-based SIS file-based
        for body in ({"profile": {"name_max_length": 40}}, {"file_based": None}):
            r = admin.put("/sis/connections/files", json={"name": "SIS files", **body})
            assert r.status_code == 200, r.text
            assert r.json()["kind"] == "oneroster_csv"
        assert r.json()["config"]["name_max_length"] == 40
        # said outright, the kind changes, and then stays
        rest = {"base_url": sis.base_url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        r = admin.put("/sis/connections/files", json={"name": "SIS", **rest, "file_based": False})
        assert r.status_code == 200 and r.json()["kind"] == "oneroster_rest", r.text
        r = admin.put("/sis/connections/files", json={"name": "SIS"})
        assert r.status_code == 200 and r.json()["kind"] == "oneroster_rest", r.text
        # a new connection uses REST unless told otherwise: it needs a client id and secret
        r = admin.put("/sis/connections/new", json={"name": "New", "base_url": sis.base_url})
        assert r.status_code == 422
        assert {d["field"] for d in r.json()["detail"]} == {"client_id", "client_secret"}


def test_updating_a_connection_keeps_its_name_when_left_out(db: Database, tmp_path: Path) -> None:
    env = ApiEnv(db, tmp_path)
    with env.client:
        admin = Caller(env.client, env.tenant("t1", "admin"))
        # a new connection without a name is named after its id
        r = admin.put("/sis/connections/files", json={"file_based": True})
        assert r.status_code == 200, r.text
        assert (r.json()["name"], r.json()["kind"]) == ("files", "oneroster_csv")
        r = admin.put("/sis/connections/files", json={"name": "SIS files"})
        assert r.status_code == 200 and r.json()["name"] == "SIS files", r.text
        for body in ({"profile": {"name_max_length": 40}}, {"name": None}):
            r = admin.put("/sis/connections/files", json=body)
            assert r.status_code == 200, r.text
            assert (r.json()["name"], r.json()["kind"]) == ("SIS files", "oneroster_csv")


def test_a_new_connection_s_id_and_name_are_checked(db: Database, tmp_path: Path) -> None:
    """The id is in the console's URLs and in commands: an id with spaces or marks (or a name
    of thousands of characters) was saved, and broke the pages that link to it."""
    env = ApiEnv(db, tmp_path)
    with env.client:
        admin = Caller(env.client, env.tenant("t1", "admin"))
        r = admin.put("/sis/connections/my%20sis!", json={"file_based": True})
        assert r.status_code == 422, r.text
        assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [
            ("destination_id", "pattern")
        ]
        r = admin.put("/sis/connections/files", json={"file_based": True, "name": "x" * 3000})
        assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [("name", "too_long")]
        with db.uow() as uow:
            assert uow.destinations.all("t1") == []


def test_mapping_a_class_another_course_uses_says_so(db: Database, tmp_path: Path) -> None:
    """Two courses mapped to one SIS class is allowed (each gets its own line items), and
    the answer names the other course in `warnings`, as `sis map-class` does."""
    env = ApiEnv(db, tmp_path)
    with env.client:
        admin = Caller(env.client, env.tenant("t1", "admin"))
        roster = {**ROSTER, "courses": [*ROSTER["courses"], {"id": "c2", "title": "Geometry"}]}
        assert admin.post("/ingest", json=roster).status_code == 202
        files = {"name": "SIS files", "file_based": True}
        assert admin.put("/sis/connections/files", json=files).status_code == 200
        klass = {"class_id": "cls-1", "school_id": "sch-1"}
        first = admin.put("/sis/connections/files/classes/c1", json=klass)
        assert first.status_code == 200 and first.json()["warnings"] == []
        second = admin.put("/sis/connections/files/classes/c2", json=klass)
        assert second.status_code == 200, second.text
        [warning] = second.json()["warnings"]
        assert "'cls-1'" in warning and "'c1'" in warning
