"""End to end through LTI 1.3: register through the API, deep link, launch, post an attempt,
and the grade arrives in the sandbox gradebook by itself; resync sends nothing new; remaster
resends. Also: a grade that waited for the learner's first launch goes out after it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.runtime import Runtime
from gradesync.sandbox.testing import RunningSandbox, bind, serve_in_thread
from gradesync.services import auth
from gradesync.services.tenants import create_tenant
from gradesync.testing import wait_for
from gradesync.web.app import create_app
from tests.conftest import TEST_SECRET
from tests.lti.conftest import Browser, unique


class Served:
    def __init__(self, base_url: str, runtime: Runtime, token: str, tenant: str) -> None:
        self.base_url, self.runtime, self.tenant = base_url, runtime, tenant
        self.api = httpx.Client(
            base_url=base_url + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10.0,
        )

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.api.request(method, path, **kw)
        assert resp.status_code < 300, resp.text
        return resp.json()

    def run(self, trigger: str, course: str) -> dict[str, Any]:
        run = self.ok("POST", f"/courses/{course}/sync", json={"trigger": trigger})
        return wait_for(
            lambda: (r := self.ok("GET", f"/runs/{run['id']}"))["stage"] == "finished" and r,
            f"{trigger} run",
        )


@pytest.fixture
def served(db: Database, tmp_path: Path) -> Iterator[Served]:
    yield from serve(db, tmp_path)


def serve(db: Database, tmp_path: Path) -> Iterator[Served]:
    """gradesync on `db` over loopback HTTP, with a tenant and an admin API key."""
    sock = bind()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        database_url=db.url, secret_key=TEST_SECRET, data_dir=tmp_path / "d", base_url=base
    )
    runtime = Runtime(settings=settings, db=db)
    tenant = unique("tenant")
    create_tenant(db.uow, runtime.clock, tenant, "Tenant")
    token = auth.create_key(db.uow, runtime.clock, tenant, "e2e", ("admin",)).token
    app = create_app(runtime)
    app.state.run_worker = True  # as `gradesync serve` does: the in-process worker
    with serve_in_thread(app, sock=sock):
        s = Served(base, runtime, token, tenant)
        yield s
        s.api.close()


def _register(lms: RunningSandbox, gs: Served) -> dict[str, Any]:
    client_id = unique("client-")
    lms.admin.register_tool(
        client_id=client_id,
        deployment_id="d1",
        jwks_url=gs.base_url + "/lti/jwks.json",
        oidc_login_url=gs.base_url + "/lti/login",
        redirect_uris=[gs.base_url + "/lti/launch"],
        target_link_uri=gs.base_url + "/lti/launch",
    )
    cfg = lms.admin.config()
    platform = gs.ok(
        "POST",
        "/platforms",
        json={
            "id": "lms",
            "issuer": cfg["issuer"],
            "client_id": client_id,
            "deployment_ids": ["d1"],
            "auth_login_url": cfg["authorization_url"],
            "auth_token_url": cfg["token_url"],
            "key_set_url": cfg["jwks_url"],
        },
    )
    assert platform["tool"]["jwks_url"] == gs.base_url + "/lti/jwks.json"
    return {"client_id": client_id}


def _roster(gs: Served, learner: str) -> None:
    gs.ok(
        "POST",
        "/ingest",
        json={
            "courses": [{"id": "c1", "title": "Chemistry"}],
            "activities": [
                {"id": "a1", "course_id": "c1", "title": "Lab 1", "points_possible": 10}
            ],
            "people": [{"id": learner, "name": "Learner"}],
            "enrollments": [{"course_id": "c1", "person_id": learner}],
        },
    )


def _attempt(gs: Served, event: str, learner: str, score: float) -> None:
    gs.ok(
        "POST",
        "/attempts",
        json={
            "source_event_id": event,
            "activity_id": "a1",
            "person_id": learner,
            "score_given": score,
            "score_maximum": 10,
            "completed_at": "2025-03-01T10:00:00Z",
        },
    )


def _deep_link(
    lms: RunningSandbox, browser: Browser, client_id: str, teacher: str, ctx: str
) -> str:
    picker = browser.launch(
        lms, client_id=client_id, user=teacher, course=ctx, message_type="LtiDeepLinkingRequest"
    ).json()
    answer = browser.post(
        picker["respond_url"],
        {"session": picker["session"], "course_id": "c1", "activity_ids": ["a1"]},
    ).json()
    created = browser.http.post(answer["return_url"], data={"JWT": answer["jwt"]}).json()["created"]
    return str(created[0]["resource_link_id"])


def test_grade_arrives_by_itself_then_resync_and_remaster(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    reg = _register(lms, served)
    teacher, learner = unique("teacher-"), unique("learner-")
    ctx = unique("ctx-")
    lms.admin.add_course(id=ctx, learners=[learner], instructors=[teacher])
    _roster(served, learner)
    link = _deep_link(lms, browser, reg["client_id"], teacher, ctx)
    assert (
        browser.launch(
            lms, client_id=reg["client_id"], user=learner, course=ctx, resource_link_id=link
        ).status_code
        == 200
    )
    course = lms.state.courses[ctx]
    (item,) = course.line_items.values()

    _attempt(served, "e1", learner, 7)
    record = wait_for(lambda: item.scores.get(learner), "the grade in the LMS")
    assert (record.score_given, record.score_maximum) == (7.0, 10.0)

    _attempt(served, "e2", learner, 9)  # the highest attempt counts
    wait_for(lambda: item.scores[learner].score_given == 9.0, "the better grade")
    sends = item.scores[learner].history

    resync = served.run("resync", "c1")
    assert resync["outcome"] == "succeeded", resync
    assert item.scores[learner].history == sends  # nothing differed: nothing sent

    remaster = served.run("remaster", "c1")
    assert remaster["outcome"] == "succeeded", remaster
    assert item.scores[learner].history == sends + 1  # resent
    assert item.scores[learner].score_given == 9.0
    assert len(course.line_items) == 1  # never a duplicate column


def test_grade_waiting_for_the_first_launch_goes_out_after_it(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    reg = _register(lms, served)
    teacher, learner = unique("teacher-"), unique("learner-")
    ctx = unique("ctx-")
    lms.admin.add_course(id=ctx, learners=[learner], instructors=[teacher])
    _roster(served, learner)
    link = _deep_link(lms, browser, reg["client_id"], teacher, ctx)
    _attempt(served, "e1", learner, 6)
    grades = wait_for(
        lambda: [
            g
            for g in served.ok("GET", f"/people/{learner}/grades")["destinations"].get("lms", [])
            if g["reason_code"] == "no_person_link"
        ],
        "the 'never launched' reason",
    )
    assert "never launched" in grades[0]["reason_text"]
    (item,) = lms.state.courses[ctx].line_items.values()
    assert learner not in item.scores
    assert (
        browser.launch(
            lms, client_id=reg["client_id"], user=learner, course=ctx, resource_link_id=link
        ).status_code
        == 200
    )
    record = wait_for(lambda: item.scores.get(learner), "the grade after the launch")
    assert record.score_given == 6.0
