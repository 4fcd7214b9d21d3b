"""gradesync served as `gradesync serve` runs it (API, LTI endpoints, in-process worker) on
loopback over real HTTP, with one tenant and an admin API key, plus the steps that connect
it to the sandbox LMS (`lms`) the way an administrator and an instructor would.

The `served` fixture is shared by every test directory (tests/conftest.py loads this module).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.runtime import Runtime
from gradesync.sandbox.state import LineItem
from gradesync.sandbox.testing import RunningSandbox, bind, serve_in_thread
from gradesync.services import auth
from gradesync.services.tenants import create_tenant
from gradesync.testing import TEST_SECRET, unique, wait_for
from gradesync.web.app import create_app
from tests.support.lti import Browser


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


def serve(db: Database, tmp_path: Path, **settings_kw: Any) -> Iterator[Served]:
    """gradesync on `db` over loopback HTTP, with a tenant and an admin API key; `settings_kw`
    overrides settings (e.g. `worker_mode="distributed"`)."""
    sock = bind()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        database_url=db.url,
        secret_key=TEST_SECRET,
        data_dir=tmp_path / "d",
        base_url=base,
        **settings_kw,
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


def register_tool(
    lms: RunningSandbox,
    gs: Served,
    scopes: list[str] | None = None,
    *,
    platform_id: str = "lms",
    person_id_from: str | None = None,
) -> dict[str, Any]:
    """gradesync registered in the LMS as a tool (granted `scopes`, else the LMS's
    default), and the LMS in gradesync as the platform `platform_id` (identifying people by
    `person_id_from` when given, else gradesync's default)."""
    client_id = unique("client-")
    lms.admin.register_tool(
        client_id=client_id,
        deployment_id="d1",
        jwks_url=gs.base_url + "/lti/jwks.json",
        oidc_login_url=gs.base_url + "/lti/login",
        redirect_uris=[gs.base_url + "/lti/launch"],
        target_link_uri=gs.base_url + "/lti/launch",
        **({"scopes": scopes} if scopes is not None else {}),
    )
    cfg = lms.admin.config()
    platform = gs.ok(
        "POST",
        "/platforms",
        json={
            "id": platform_id,
            "issuer": cfg["issuer"],
            "client_id": client_id,
            "deployment_ids": ["d1"],
            "auth_login_url": cfg["authorization_url"],
            "auth_token_url": cfg["token_url"],
            "key_set_url": cfg["jwks_url"],
            **({"person_id_from": person_id_from} if person_id_from is not None else {}),
        },
    )
    assert platform["tool"]["jwks_url"] == gs.base_url + "/lti/jwks.json"
    return {"client_id": client_id}


def courseware_course(gs: Served, *people: dict[str, Any]) -> None:
    """What the courseware sends first: course c1 with activity a1 (10 points), and these
    people (`{"id": ..., "sis_id": ...}`) enrolled as learners."""
    gs.ok(
        "POST",
        "/ingest",
        json={
            "courses": [{"id": "c1", "title": "Chemistry"}],
            "activities": [
                {"id": "a1", "course_id": "c1", "title": "Lab 1", "points_possible": 10}
            ],
            "people": [{"name": p["id"], **p} for p in people],
            "enrollments": [{"course_id": "c1", "person_id": p["id"]} for p in people],
        },
    )


def launched_learners(
    lms: RunningSandbox, gs: Served, browser: Browser, client_id: str, count: int
) -> tuple[list[str], str]:
    """(learners, LMS course): a new LMS course whose teacher deep links activity a1 of the
    courseware's course c1, and whose `count` learners have each launched it."""
    teacher, ctx = unique("teacher-"), unique("ctx-")
    learners = [unique("learner-") for _ in range(count)]
    lms.admin.add_course(id=ctx, learners=learners, instructors=[teacher])
    courseware_course(gs, *({"id": p} for p in learners))
    link = deep_link(lms, browser, client_id, teacher, ctx)
    for p in learners:
        launched = browser.launch(
            lms, client_id=client_id, user=p, course=ctx, resource_link_id=link
        )
        assert launched.status_code == 200
    return learners, ctx


def launched_learner(
    lms: RunningSandbox, gs: Served, browser: Browser, client_id: str
) -> tuple[str, str]:
    """(learner, LMS course): `launched_learners` with one learner."""
    (learner,), ctx = launched_learners(lms, gs, browser, client_id, 1)
    return learner, ctx


def graded_learners(
    lms: RunningSandbox, gs: Served, browser: Browser, count: int
) -> tuple[list[str], str, LineItem]:
    """(learners, LMS course, its line item): the tool registered, `launched_learners`, and
    each learner's attempt at a1 (6/10) in the LMS gradebook."""
    reg = register_tool(lms, gs)
    learners, ctx = launched_learners(lms, gs, browser, reg["client_id"], count)
    for i, p in enumerate(learners):
        post_attempt(gs, f"e{i}", p, 6)
    (item,) = lms.state.courses[ctx].line_items.values()
    wait_for(lambda: len(item.scores) == count, "the grades in the LMS")
    return learners, ctx, item


def new_activity(gs: Served, activity_id: str, title: str) -> None:
    """A new activity of the courseware's course c1, out of 10 points."""
    gs.ok(
        "POST",
        "/ingest",
        json={
            "activities": [
                {"id": activity_id, "course_id": "c1", "title": title, "points_possible": 10}
            ]
        },
    )


def post_attempt(
    gs: Served, event: str, learner: str, score: float, *, activity_id: str = "a1"
) -> None:
    gs.ok(
        "POST",
        "/attempts",
        json={
            "source_event_id": event,
            "activity_id": activity_id,
            "person_id": learner,
            "score_given": score,
            "score_maximum": 10,
            "completed_at": "2025-03-01T10:00:00Z",
        },
    )


def deep_link(lms: RunningSandbox, browser: Browser, client_id: str, teacher: str, ctx: str) -> str:
    return deep_link_answer(lms, browser, client_id, teacher, ctx)[1]


def deep_link_answer(
    lms: RunningSandbox, browser: Browser, client_id: str, teacher: str, ctx: str
) -> tuple[dict[str, Any], str]:
    """The teacher adds activity a1 of course c1 with Deep Linking: (gradesync's answer, with
    its `content_items`; the resource link id of the link the LMS made)."""
    picker = browser.launch(
        lms, client_id=client_id, user=teacher, course=ctx, message_type="LtiDeepLinkingRequest"
    ).json()
    answer: dict[str, Any] = browser.post(
        picker["respond_url"],
        {"session": picker["session"], "course_id": "c1", "activity_ids": ["a1"]},
    ).json()
    created = browser.http.post(answer["return_url"], data={"JWT": answer["jwt"]}).json()["created"]
    return answer, str(created[0]["resource_link_id"])
