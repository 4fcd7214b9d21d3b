"""A benchmark world: the sandbox LMS and gradesync in their own processes, connected the
way two admins connect them, with courses, learners and activities on both sides.

How learners get linked: ONE real LTI 1.3 launch (OIDC login, signed id_token, AGS endpoint
claim) proves the path and gives the course link's shape; every other learner and course is
then linked by writing the same person/course links through gradesync's repositories, since
launching each of thousands of learners would benchmark the launch, not the sync.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks import procs
from gradesync.adapters.db.database import Database
from gradesync.domain.model import PersonLink
from gradesync.sandbox.testing import SandboxAdmin
from gradesync.services import auth
from gradesync.services.clock import SystemClock
from gradesync.services.tenants import create_tenant

TENANT = "bench"
CLIENT_ID = "gradesync-bench"
DEPLOYMENT = "d1"
MAX_BATCH = 1000  # the API's limit per request


@dataclass
class CourseSpec:
    id: str
    learners: list[str]
    activities: list[tuple[str, float]]  # (activity id, points possible)


@dataclass
class World:
    workdir: Path
    sandbox: procs.Child
    gradesync: procs.Child
    db: Database
    token: str
    destination_id: str
    admin: SandboxAdmin
    api: httpx.Client
    courses: dict[str, CourseSpec] = field(default_factory=dict)
    secret: str = ""  # GRADESYNC_SECRET_KEY, for more processes on the same database

    def close(self) -> None:
        self.api.close()
        self.admin.close()
        self.gradesync.stop()
        self.sandbox.stop()
        self.db.dispose()

    # --- gradesync API ---------------------------------------------------------------------

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.api.request(method, path, **kw)
        if resp.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:500]}")
        return resp.json() if resp.content else None

    def ingest(self, **facts: list[dict[str, Any]]) -> None:
        """Facts in batches of at most MAX_BATCH items, kinds in dependency order."""
        order = ["courses", "activities", "people", "enrollments", "attempts"]
        for kind in order:
            items = facts.get(kind) or []
            for i in range(0, len(items), MAX_BATCH):
                self.ok("POST", "/ingest", json={kind: items[i : i + MAX_BATCH]})

    def run(self, course_id: str, trigger: str, timeout: float = 600.0) -> dict[str, Any]:
        """Start a run and wait (bounded) until it is finished."""
        run = self.ok("POST", f"/courses/{course_id}/sync", json={"trigger": trigger})
        deadline = time.monotonic() + timeout
        while True:
            got = self.ok("GET", f"/runs/{run['id']}")
            if got["stage"] == "finished":
                return got  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run['id']} still {got['stage']} after {timeout:g} s")
            time.sleep(0.05)

    def gc_collections(self) -> dict[str, int]:
        """The garbage collector's collections so far in `gradesync serve`, per generation
        (its /metrics); empty for a server that does not export them."""
        r = httpx.get(self.gradesync.base_url + "/metrics", timeout=30.0)
        r.raise_for_status()
        return {
            s.labels["generation"]: int(s.value)
            for family in text_string_to_metric_families(r.text)
            if family.name == "python_gc_collections"
            for s in family.samples
        }

    # --- sandbox ---------------------------------------------------------------------------

    def arrivals(self) -> list[list[Any]]:
        """[[course, activity, user, scoreGiven, stored_at (epoch s), history], ...]"""
        r = httpx.get(self.sandbox.base_url + "/_bench/arrivals", timeout=60.0)
        r.raise_for_status()
        return r.json()["rows"]  # type: ignore[no-any-return]

    def stored(self, course_prefix: str = "") -> int:
        """How many scores the LMS holds in courses whose id starts with `course_prefix`."""
        r = httpx.get(
            self.sandbox.base_url + "/_bench/stored",
            params={"course_prefix": course_prefix},
            timeout=60.0,
        )
        r.raise_for_status()
        return int(r.json()["scores"])

    def line_items(self) -> dict[str, list[list[Any]]]:
        r = httpx.get(self.sandbox.base_url + "/_bench/line_items", timeout=60.0)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def score_requests(self) -> int:
        return int(self.admin.counters().get("scores", {}).get("requests", 0))


def start_world(
    workdir: Path,
    database_url: str | None = None,
    *,
    concurrency: int,
    faults: dict[str, Any] | None = None,
    gradesync_env: dict[str, str] | None = None,
    secret: str | None = None,
) -> World:
    """Sandbox, then gradesync (migrated), then the registration on both sides. `secret`:
    the one other gradesync processes (workers) of the benchmark use too."""
    import json

    workdir.mkdir(parents=True, exist_ok=True)
    database_url = database_url or f"sqlite:///{workdir / 'gradesync.db'}"
    secret = secret or secrets.token_urlsafe(32)
    sandbox = procs.start_sandbox(workdir, json.dumps(faults) if faults else None)
    db = Database(database_url, secret)
    try:
        db.upgrade()  # as `gradesync db upgrade` does (SQLite would also do it on start)
        gradesync = procs.start_gradesync(workdir, database_url, secret, gradesync_env)
    except BaseException:
        sandbox.stop()  # a server that did not start leaves no sandbox behind
        db.dispose()
        raise
    clock = SystemClock()
    create_tenant(db.uow, clock, TENANT, "Benchmark")
    token = auth.create_key(db.uow, clock, TENANT, "bench", ("admin",)).token
    api = httpx.Client(
        base_url=gradesync.base_url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=120.0,
    )
    admin = SandboxAdmin(sandbox.base_url)
    admin.http.timeout = httpx.Timeout(120.0)
    world = World(workdir, sandbox, gradesync, db, token, "lms", admin, api, secret=secret)
    gs = gradesync.base_url
    admin.register_tool(
        client_id=CLIENT_ID,
        deployment_id=DEPLOYMENT,
        jwks_url=gs + "/lti/jwks.json",
        oidc_login_url=gs + "/lti/login",
        redirect_uris=[gs + "/lti/launch"],
        target_link_uri=gs + "/lti/launch",
    )
    cfg = admin.config()
    world.ok(
        "POST",
        "/platforms",
        json={
            "id": world.destination_id,
            "issuer": cfg["issuer"],
            "client_id": CLIENT_ID,
            "deployment_ids": [DEPLOYMENT],
            "auth_login_url": cfg["authorization_url"],
            "auth_token_url": cfg["token_url"],
            "key_set_url": cfg["jwks_url"],
            "concurrency": concurrency,
        },
    )
    return world


def set_faults(world: World, faults: dict[str, Any], rng_seed: int = 7) -> None:
    world.admin.set_faults(faults, rng_seed=rng_seed)


def add_courses(world: World, courses: Sequence[CourseSpec]) -> None:
    """The same courses in the LMS (with a resource link for the tool) and in gradesync."""
    for c in courses:
        world.admin.add_course(
            id=c.id,
            title=f"Course {c.id}",
            learners=c.learners,
            resource_links=[{"id": f"rl-{c.id}", "title": "gradesync", "client_id": CLIENT_ID}],
        )
        world.courses[c.id] = c
    people = sorted({p for c in courses for p in c.learners})
    world.ingest(
        courses=[{"id": c.id, "title": f"Course {c.id}"} for c in courses],
        activities=[
            {"id": a, "course_id": c.id, "title": f"Activity {a}", "points_possible": pts}
            for c in courses
            for a, pts in c.activities
        ],
        people=[{"id": p, "name": f"Learner {p}"} for p in people],
        enrollments=[{"course_id": c.id, "person_id": p} for c in courses for p in c.learners],
    )


# --- the one real launch -------------------------------------------------------------------

_INPUT = re.compile(r"""<input[^>]*name=["']([^"']+)["'][^>]*value=["']([^"']*)["']""")
_ACTION = re.compile(r"""<form[^>]*action=["']([^"']+)["']""")


def real_launch(world: World, course_id: str, learner: str) -> None:
    """The LMS iframe's walk: login initiation, authorization (form_post), launch."""
    real_launch_at(world.sandbox.base_url, CLIENT_ID, course_id, learner)


def real_launch_at(sandbox_url: str, client_id: str, course_id: str, learner: str) -> None:
    """`real_launch` on any sandbox, as the tool registered with `client_id`."""
    admin = SandboxAdmin(sandbox_url)
    try:
        started = admin.start_launch(
            client_id=client_id, user=learner, course=course_id, resource_link_id=f"rl-{course_id}"
        )
    finally:
        admin.close()
    with httpx.Client(timeout=30.0, follow_redirects=False) as browser:
        login = browser.get(started["url"])
        if login.status_code != 302:
            raise RuntimeError(f"login initiation: {login.status_code} {login.text[:300]}")
        page = browser.get(login.headers["location"])
        action = _ACTION.search(page.text)
        if page.status_code != 200 or action is None:
            raise RuntimeError(f"authorization: {page.status_code} {page.text[:300]}")
        fields = {unescape(k): unescape(v) for k, v in _INPUT.findall(page.text)}
        done = browser.post(
            unescape(action.group(1)), data=fields, headers={"Accept": "application/json"}
        )
        if done.status_code != 200:
            raise RuntimeError(f"launch: {done.status_code} {done.text[:300]}")


def link_everyone(world: World, courses: Iterable[CourseSpec]) -> dict[str, Any]:
    """One real launch in each course (its first learner) links the course, as a course's
    first launch does (and gradesync creates the course's line items then); every other
    learner's link is written as a launch would write it."""
    courses = list(courses)
    first = courses[0]
    for c in courses:
        real_launch(world, c.id, c.learners[0])
    dest = world.destination_id
    with world.db.uow() as uow:
        template = uow.links.course(TENANT, dest, first.id)
        person = uow.links.person(TENANT, dest, first.learners[0])
        linked = [c.id for c in courses if uow.links.course(TENANT, dest, c.id) is not None]
    if template is None or not template.remote_id or len(linked) != len(courses):
        raise RuntimeError("the real launches did not bind every course's AGS endpoint")
    proof = {
        "course_link": template.remote_id,
        "endpoint_scopes": (template.data.get("endpoint") or {}).get("scope"),
        "person_link": getattr(person, "remote_id", None),
        "courses_launched": len(linked),
    }
    with world.db.uow() as uow:
        for c in courses:
            for p in c.learners:
                uow.links.save_person(PersonLink(TENANT, dest, p, p, data={"name": f"Learner {p}"}))
        uow.commit()
    return proof


def line_items_of(world: World, courses: Iterable[CourseSpec]) -> int:
    """How many of these courses' activities have a line item in the LMS."""
    wanted = {(c.id, a) for c in courses for a, _ in c.activities}
    have = {(course, row[0]) for course, rows in world.line_items().items() for row in rows}
    return len(wanted & have)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def attempt(event: str, activity: str, person: str, score: float, points: float) -> dict[str, Any]:
    return {
        "source_event_id": event,
        "activity_id": activity,
        "person_id": person,
        "score_given": score,
        "score_maximum": points,
        "completed_at": datetime.now(UTC).isoformat(),
    }


def make_courses(
    prefix: str, n_courses: int, n_learners: int, n_activities: int
) -> list[CourseSpec]:
    """Learners are shared across courses (like real ones): ids `{prefix}u{i}`."""
    learners = [f"{prefix}u{i}" for i in range(n_learners)]
    return [
        CourseSpec(
            f"{prefix}c{k}",
            learners,
            [(f"{prefix}c{k}a{j}", 10.0) for j in range(n_activities)],
        )
        for k in range(n_courses)
    ]
