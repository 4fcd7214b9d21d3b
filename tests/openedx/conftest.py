"""The Open edX test LMS (tests/openedx/lms) as a subprocess in its own virtual environment,
and gradesync beside it, both over real HTTP on loopback.

The LMS needs `.venv-openedx` (`make openedx-venv`; GRADESYNC_OPENEDX_PYTHON names another
interpreter). Without it these tests are skipped, unless GRADESYNC_REQUIRE_OPENEDX=1 (as in
CI), which turns the skip into a failure.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from gradesync.adapters.db.database import Database
from gradesync.sandbox.testing import bind
from gradesync.testing import wait_for
from tests.support.lti import parse_form
from tests.support.served import Served, serve

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 120.0  # first start creates the database: a few seconds, more on a busy CI
_ids = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_ids)}"


def _python() -> Path:
    named = os.environ.get("GRADESYNC_OPENEDX_PYTHON")
    path = Path(named) if named else ROOT / ".venv-openedx" / "bin" / "python"
    if path.exists():
        return path
    if os.environ.get("GRADESYNC_REQUIRE_OPENEDX") == "1":
        pytest.fail(f"GRADESYNC_REQUIRE_OPENEDX=1 but {path} does not exist (make openedx-venv)")
    pytest.skip(f"the Open edX test LMS needs {path} (make openedx-venv)")


_DATA_TARGET = re.compile(r'id="lti-iframe-container"\s+data-target="([^"]+)"')
_CHAR_REF = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")


def attribute_value(raw: str) -> str:
    """An HTML attribute value as a browser reads it: only terminated character references
    are decoded (the block writes its URL unescaped, and "&lti_..." is not "<i_...")."""
    return _CHAR_REF.sub(lambda m: unescape(m.group(0)), raw)


class OpenEdx:
    """The test LMS: its JSON admin API (Studio and the LMS admin), and per-user sessions."""

    def __init__(self, base_url: str, log: Path) -> None:
        self.base_url = base_url
        self.log = log
        self.admin = httpx.Client(base_url=base_url, timeout=30.0)

    def tail(self) -> str:
        """The end of the LMS's log, for failure messages."""
        return self.log.read_text(errors="replace")[-6000:]

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.admin.request(method, path, **kw)
        assert resp.status_code < 300, f"{method} {path}: {resp.status_code}\n{self.tail()}"
        return resp.json()

    def course(self, run: str, title: str) -> str:
        return str(
            self.ok("POST", "/harness/courses", json={"key": run, "display_name": title})["key"]
        )

    def user(self, username: str, *, staff: bool = False) -> str:
        email = f"{username}@example.edu"
        self.ok(
            "POST",
            "/harness/users",
            json={"username": username, "email": email, "first_name": username, "is_staff": staff},
        )
        return email

    def enroll(self, username: str, course: str, role: str = "student") -> None:
        self.ok(
            "POST",
            "/harness/enrollments",
            json={"username": username, "course": course, "role": role},
        )

    def retire(self, username: str) -> None:
        self.ok("DELETE", f"/harness/users/{username}")

    def add_block(self, course: str, block_id: str, **fields: Any) -> str:
        body = {"course": course, "id": block_id, "fields": fields}
        return str(self.ok("POST", "/harness/blocks", json=body)["usage_key"])

    def rotate_keys(self, usage_key: str) -> None:
        self.ok("POST", f"/harness/blocks/{usage_key}/rotate-keys")

    def edit_block(self, usage_key: str, **fields: Any) -> None:
        self.ok("PATCH", f"/harness/blocks/{usage_key}", json={"fields": fields})

    def session(self, username: str) -> httpx.Client:
        """A browser signed in to the LMS as `username` (it also carries the tool's cookies)."""
        client = httpx.Client(timeout=30.0, follow_redirects=False)
        resp = client.post(self.base_url + "/harness/login", json={"username": username})
        assert resp.status_code == 200, resp.text
        return client

    def lti_info(self, staff: str, usage_key: str) -> dict[str, Any]:
        browser = self.session(staff)
        try:
            resp = browser.get(f"{self.base_url}/harness/blocks/{usage_key}/lti-info")
        finally:
            browser.close()
        assert resp.status_code == 200, self.tail()
        return dict(resp.json())

    def launch(self, username: str, course: str, usage_key: str) -> httpx.Response:
        """The learner opens the unit: the block's iframe starts the OIDC login at the tool,
        the tool sends the browser to Open edX's launch gate, whose form posts the id_token
        back to the tool. Returns the tool's answer to that post."""
        browser = self.session(username)
        try:
            page = browser.get(f"{self.base_url}/courses/{course}/xblock/{usage_key}/")
            assert page.status_code == 200, self.tail()
            found = _DATA_TARGET.search(page.text)
            assert found is not None, page.text[:2000]
            login = browser.get(attribute_value(found.group(1)))
            assert login.status_code in (302, 303), login.text[:500]
            gate = browser.get(login.headers["location"])
            assert gate.status_code == 200, gate.text[:1000] + self.tail()
            action, fields = parse_form(gate.text)
            return browser.post(action, data=fields, headers={"Accept": "application/json"})
        finally:
            browser.close()

    def gradebook(self, course: str) -> dict[str, Any]:
        return dict(self.ok("GET", f"/harness/courses/{course}/gradebook"))

    def grade(self, course: str, username: str) -> tuple[float | None, float | None] | None:
        for g in self.gradebook(course)["grades"]:
            if g["username"] == username:
                return (g["earned"], g["possible"])
        return None

    def line_items(self, course: str) -> list[dict[str, Any]]:
        return list(self.ok("GET", f"/harness/courses/{course}/ags")["line_items"])


@pytest.fixture(scope="session")
def openedx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenEdx]:
    python = _python()
    data = tmp_path_factory.mktemp("openedx")
    log = data / "lms.log"
    sock = bind()
    sock.listen(64)
    host, port = sock.getsockname()[:2]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(python),
                "-m",
                "tests.openedx.lms.serve",
                "--fd",
                str(sock.fileno()),
                "--data",
                str(data),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),),
        )
    # Only the LMS holds the socket now: if it dies, connecting fails at once instead of
    # waiting for a server that will never answer.
    sock.close()
    lms = OpenEdx(f"http://{host}:{port}", log)
    try:
        try:
            # Waits in the listen backlog until the LMS has its database and serves.
            health = lms.admin.get("/health", timeout=STARTUP_TIMEOUT)
        except httpx.HTTPError as exc:
            pytest.fail(f"the Open edX test LMS did not start ({exc}):\n{log.read_text()[-4000:]}")
        assert health.status_code == 200, log.read_text()[-4000:]
        yield lms
    finally:
        lms.admin.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def served(sqlite_db: Database, tmp_path: Path) -> Iterator[Served]:
    """gradesync with its in-process worker, on SQLite: these tests are about Open edX."""
    yield from serve(sqlite_db, tmp_path)


@dataclass
class Placement:
    """An LTI component in an Open edX course, registered in gradesync as its platform."""

    course: str
    usage_key: str
    platform_id: str
    info: dict[str, Any]


def custom_parameters(course: str, activity: str | None) -> list[str]:
    """The component's custom parameters: which gradesync course and activity it is."""
    named = [f"gradesync_course_id={course}"]
    return named + ([f"gradesync_activity_id={activity}"] if activity else [])


def place_gradesync(
    lms: OpenEdx,
    gs: Served,
    *,
    course: str,
    staff: str,
    block_id: str,
    gradesync_course: str,
    activity_id: str | None,
    weight: float,
    profile: str = "openedx",
) -> Placement:
    """What a course author does (docs/lti13.md, Open edX): add an LTI consumer component set
    to LTI 1.3 with programmatic AGS and gradesync's URLs, then register the values Studio
    shows for it in gradesync."""
    usage_key = lms.add_block(
        course,
        block_id,
        display_name=f"gradesync: {activity_id}",
        lti_version="lti_1p3",
        config_type="new",
        lti_1p3_launch_url=gs.base_url + "/lti/launch",
        lti_1p3_oidc_url=gs.base_url + "/lti/login",
        lti_1p3_tool_key_mode="keyset_url",
        lti_1p3_tool_keyset_url=gs.base_url + "/lti/jwks.json",
        lti_advantage_ags_mode="programmatic",
        has_score=True,
        weight=weight,
        ask_to_send_email=True,
        custom_parameters=custom_parameters(gradesync_course, activity_id),
    )
    info = lms.lti_info(staff, usage_key)
    platform_id = unique("openedx-")
    register_platform(lms, gs, platform_id, info, profile)
    return Placement(course, usage_key, platform_id, info)


def register_platform(
    lms: OpenEdx, gs: Served, platform_id: str, info: dict[str, Any], profile: str = "openedx"
) -> None:
    """The values Studio shows for a component (`info`), registered in gradesync as the
    platform `platform_id`."""
    gs.ok(
        "POST",
        "/platforms",
        json={
            "id": platform_id,
            "issuer": lms.base_url,
            "client_id": info["client_id"],
            "deployment_ids": [info["deployment_id"]],
            "auth_login_url": info["oidc_callback"],
            "auth_token_url": info["token_url"],
            "key_set_url": info["keyset_url"],
            "profile": profile,
            "person_id_from": "email",
        },
    )


@dataclass
class Course:
    """One course on both sides: in Open edX (staff, enrolled learners) and in gradesync
    (the same course, activities and learners, as a courseware vendor pushes them)."""

    lms: OpenEdx
    gs: Served
    key: str
    staff: str
    emails: dict[str, str]  # Open edX username -> email (gradesync's person id)

    def place(self, activity_id: str | None, weight: float, profile: str = "openedx") -> Placement:
        return place_gradesync(
            self.lms,
            self.gs,
            course=self.key,
            staff=self.staff,
            block_id=unique("b"),
            gradesync_course=self.gs_course,
            activity_id=activity_id,
            weight=weight,
            profile=profile,
        )

    @property
    def gs_course(self) -> str:
        return self.key.replace(":", "-").replace("+", "-")

    def activities(self, *activities: tuple[str, str, float]) -> None:
        self.gs.ok(
            "POST",
            "/ingest",
            json={
                "activities": [
                    {"id": a, "course_id": self.gs_course, "title": t, "points_possible": p}
                    for a, t, p in activities
                ]
            },
        )

    def attempt(
        self, event: str, activity: str, username: str, score: float, of: float, minute: int
    ) -> None:
        self.gs.ok(
            "POST",
            "/attempts",
            json={
                "source_event_id": event,
                "activity_id": activity,
                "person_id": self.emails[username],
                "score_given": score,
                "score_maximum": of,
                "completed_at": f"2026-03-01T10:{minute:02d}:00Z",
            },
        )

    def wait(self, check: Callable[[], T], what: str) -> T:
        """Poll `check` until it holds; on a timeout the LMS's log says what it saw."""
        return wait_for(check, what, explain=self.lms.tail)

    def grade(self, username: str, usage_key: str) -> tuple[float | None, float | None] | None:
        """The learner's grade for the component in Open edX's gradebook."""
        for g in self.lms.gradebook(self.key)["grades"]:
            if g["username"] == username and g["block"] == usage_key:
                return (g["earned"], g["possible"])
        return None

    def publishes(self, username: str) -> int:
        return sum(1 for g in self.lms.gradebook(self.key)["history"] if g["username"] == username)

    def delivered(self, username: str, platform_id: str, activity: str) -> dict[str, Any]:
        """gradesync's view of the learner's grade once it is written as delivered: the LMS
        stores a score before gradesync has its answer, and the outcome is written after."""
        return self.wait(
            lambda: (
                (s := self.state(username, platform_id, activity))["state"] == "delivered" and s
            ),
            f"{username}'s grade for {activity} written as delivered",
        )

    def state(self, username: str, platform_id: str, activity: str) -> dict[str, Any]:
        """gradesync's view of the learner's grade at that platform."""
        rows = self.gs.ok("GET", f"/people/{self.emails[username]}/grades")["destinations"]
        return next(r for r in rows.get(platform_id, []) if r["activity_id"] == activity)

    def line_items(self, placement: Placement) -> list[dict[str, Any]]:
        return [
            i for i in self.lms.line_items(self.key) if i["config_location"] == placement.usage_key
        ]


def open_course(
    lms: OpenEdx, gs: Served, learners: tuple[str, ...], *activities: tuple[str, str, float]
) -> Course:
    key = lms.course(f"course-v1:GradeSync+{unique('C')}+2026", "Chemistry")
    staff = unique("staff")
    lms.user(staff)
    lms.enroll(staff, key, role="staff")
    emails = {}
    for name in learners:
        username = unique(name)
        emails[username] = lms.user(username)
        lms.enroll(username, key)
    course = Course(lms, gs, key, staff, emails)
    gs.ok(
        "POST",
        "/ingest",
        json={
            "courses": [{"id": course.gs_course, "title": "Chemistry"}],
            "people": [{"id": e, "name": u} for u, e in emails.items()],
            "enrollments": [
                {"course_id": course.gs_course, "person_id": e} for e in emails.values()
            ],
        },
    )
    course.activities(*activities)
    return course
