"""Diagnostics scenarios: the sandbox LMS and a served gradesync (API, LTI tool, in-process
worker) on loopback, set up the way an admin, an instructor and learners would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.domain.model import UserRole
from gradesync.lti.claims import AGS_SCOPES
from gradesync.runtime import Runtime
from gradesync.sandbox.config import SandboxConfig
from gradesync.sandbox.state import LineItem
from gradesync.sandbox.testing import RunningSandbox, bind, running_sandbox, serve_in_thread
from gradesync.services import auth
from gradesync.services.accounts import create_user
from gradesync.services.tenants import create_tenant
from gradesync.testing import TEST_SECRET, unique, wait_for
from gradesync.web.app import create_app
from tests.support.console import sign_in
from tests.support.lti import Browser

CONSOLE_PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def lms() -> Iterator[RunningSandbox]:
    with running_sandbox(SandboxConfig()) as sandbox:
        yield sandbox


class World:
    """One tenant of a served gradesync, connected to the sandbox LMS through its API."""

    def __init__(
        self, lms: RunningSandbox, base_url: str, runtime: Runtime, token: str, tenant: str
    ) -> None:
        self.lms, self.base_url, self.runtime, self.tenant = lms, base_url, runtime, tenant
        self.api = httpx.Client(
            base_url=base_url + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=15.0,
        )
        self.browser = Browser()
        self.client_id = ""

    def close(self) -> None:
        self.api.close()
        self.browser.close()

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.api.request(method, path, **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.api.request(method, path, **kw)
        assert resp.status_code < 300, resp.text
        return resp.json()

    # -- admin: connect the LMS --

    def register(
        self,
        *,
        tool_scopes: list[str] | None = None,
        lms_deployment: str = "d1",
        our_deployments: tuple[str, ...] = ("d1",),
        profile: str | None = None,
    ) -> None:
        self.client_id = unique("client-")
        self.lms.admin.register_tool(
            client_id=self.client_id,
            deployment_id=lms_deployment,
            jwks_url=self.base_url + "/lti/jwks.json",
            oidc_login_url=self.base_url + "/lti/login",
            redirect_uris=[self.base_url + "/lti/launch"],
            target_link_uri=self.base_url + "/lti/launch",
            deep_link_url=self.base_url + "/lti/launch",
            scopes=tool_scopes if tool_scopes is not None else list(AGS_SCOPES),
        )
        cfg = self.lms.admin.config()
        self.ok(
            "POST",
            "/platforms",
            json={
                "id": "lms",
                "issuer": cfg["issuer"],
                "client_id": self.client_id,
                "deployment_ids": list(our_deployments),
                "auth_login_url": cfg["authorization_url"],
                "auth_token_url": cfg["token_url"],
                "key_set_url": cfg["jwks_url"],
                **({"profile": profile} if profile else {}),
            },
        )

    # -- the courseware pushes facts --

    def roster(
        self,
        course: str = "c1",
        *,
        activities: list[dict[str, Any]] | None = None,
        people: list[dict[str, Any]] | None = None,
        **course_fields: Any,
    ) -> None:
        acts = activities or [{"id": "a1", "title": "Lab 1", "points_possible": 10}]
        self.ok(
            "POST",
            "/ingest",
            json={
                "courses": [{"id": course, "title": f"Course {course}", **course_fields}],
                "activities": [{"course_id": course, **a} for a in acts],
                "people": people or [],
            },
        )

    def attempt(
        self, learner: str, score: float, *, activity: str = "a1", at: str = "2026-03-01T10:00:00Z"
    ) -> None:
        self.ok(
            "POST",
            "/attempts",
            json={
                "source_event_id": unique("ev-"),
                "activity_id": activity,
                "person_id": learner,
                "score_given": score,
                "score_maximum": 10,
                "completed_at": at,
            },
        )

    # -- the LMS side --

    def lms_course(self, learners: list[str], instructors: list[str]) -> str:
        ctx = unique("ctx-")
        for u in learners + instructors:
            self.lms.admin.add_user(sub=u, name=f"User {u}", email=f"{u}@example.edu")
        self.lms.admin.add_course(
            id=ctx, title=f"LMS {ctx}", learners=learners, instructors=instructors
        )
        return ctx

    def deep_link(
        self, teacher: str, ctx: str, course: str = "c1", activities: tuple[str, ...] = ("a1",)
    ) -> list[str]:
        resp = self.browser.launch(
            self.lms,
            client_id=self.client_id,
            user=teacher,
            course=ctx,
            message_type="LtiDeepLinkingRequest",
        )
        assert resp.status_code == 200, resp.text
        picker = resp.json()
        answer = self.browser.post(
            picker["respond_url"],
            {"session": picker["session"], "course_id": course, "activity_ids": list(activities)},
        ).json()
        created = self.browser.http.post(answer["return_url"], data={"JWT": answer["jwt"]})
        assert created.status_code == 200, created.text
        return [str(x["resource_link_id"]) for x in created.json()["created"]]

    def launch(self, user: str, ctx: str, link: str) -> httpx.Response:
        return self.browser.launch(
            self.lms, client_id=self.client_id, user=user, course=ctx, resource_link_id=link
        )

    def item(self, ctx: str, resource_id: str = "a1") -> LineItem:
        items = [
            i
            for i in self.lms.state.courses[ctx].line_items.values()
            if i.resource_id == resource_id
        ]
        assert len(items) == 1, items
        return items[0]

    # -- gradesync's answers --

    def diagnose(self, learner: str, activity: str = "a1") -> dict[str, Any]:
        return self.ok("GET", f"/activities/{activity}/learners/{learner}/diagnosis")  # type: ignore[no-any-return]

    def triage(self, course: str = "c1") -> dict[str, Any]:
        return self.ok("GET", f"/courses/{course}/diagnosis")  # type: ignore[no-any-return]

    def ledger(self, learner: str, activity: str = "a1") -> dict[str, Any] | None:
        d = self.diagnose(learner, activity)
        row: dict[str, Any] | None = d["details"]["ledger"].get("lms")
        return row

    def wait_state(
        self, learner: str, state: str, activity: str = "a1", reason: str | None = None
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            row = self.ledger(learner, activity)
            if row and row["state"] == state and (reason is None or row["reason_code"] == reason):
                return row
            return None

        return wait_for(check, f"{learner}/{activity} {state} {reason or ''}")  # type: ignore[no-any-return]

    @contextmanager
    def console(self) -> Iterator[httpx.Client]:
        """A browser signed in to the console as an administrator of the tenant."""
        username = unique("ops-")
        create_user(
            self.runtime.db.uow, self.runtime.clock, tenant_id=self.tenant, username=username,
            password=CONSOLE_PASSWORD, role=UserRole.ADMIN,
        )  # fmt: skip
        with httpx.Client(base_url=self.base_url, timeout=15.0, follow_redirects=True) as browser:
            assert sign_in(browser, username, CONSOLE_PASSWORD, tenant=self.tenant).is_success
            yield browser

    def run(self, trigger: str = "manual", course: str = "c1") -> dict[str, Any]:
        run = self.ok("POST", f"/courses/{course}/sync", json={"trigger": trigger})
        return wait_for(  # type: ignore[no-any-return]
            lambda: (r := self.ok("GET", f"/runs/{run['id']}"))["stage"] == "finished" and r,
            f"{trigger} run",
        )


def failed(diagnosis: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The failed checks by code."""
    return {c["code"]: c for c in diagnosis["checks"] if not c["passed"]}


def passed(diagnosis: dict[str, Any]) -> set[str]:
    return {c["code"] for c in diagnosis["checks"] if c["passed"]}


def causes(triage: dict[str, Any], scope: str) -> dict[str, dict[str, Any]]:
    return {c["code"]: c for c in triage["causes"][scope]}


@pytest.fixture
def world(lms: RunningSandbox, sqlite_db: Database, tmp_path: Path) -> Iterator[World]:
    """A served gradesync on SQLite (these scenarios are about LTI and diagnosis; storage is
    covered on both databases by test_facts.py)."""
    with served_world(lms, sqlite_db, tmp_path) as w:
        yield w


@contextmanager
def served_world(lms: RunningSandbox, db: Database, tmp_path: Path) -> Iterator[World]:
    """gradesync served on `db` (a SQLite file the command line can open too)."""
    sock = bind()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        database_url=db.url, secret_key=TEST_SECRET, data_dir=tmp_path / "d", base_url=base
    )
    runtime = Runtime(settings=settings, db=db)
    tenant = unique("tenant")
    create_tenant(db.uow, runtime.clock, tenant, "Tenant")
    token = auth.create_key(db.uow, runtime.clock, tenant, "diag", ("admin",)).token
    app = create_app(runtime)
    app.state.run_worker = True
    with serve_in_thread(app, sock=sock):
        w = World(lms, base, runtime, token, tenant)
        try:
            yield w
        finally:
            w.close()
