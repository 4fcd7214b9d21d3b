"""A small school for the browser tests: the sandbox LMS with gradesync registered as an LTI 1.3
tool, a course with two learners who launched it once, their attempts, and console accounts.

Everything is set up the way the real actors do it: the LMS admin registers the tool in the
LMS (sandbox admin API) and the LMS in gradesync (registration service); learners launch over
real HTTP (OIDC login, signed id_token); the courseware posts attempts through ingest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import unescape

import httpx

from gradesync.domain.model import (
    Activity,
    Attempt,
    Course,
    Enrollment,
    Person,
    Tenant,
    UserRole,
)
from gradesync.lti import registration as reg
from gradesync.lti.claims import AGS_SCOPES
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services import ingest
from gradesync.services.accounts import create_user
from gradesync.services.lti import platforms
from tests.e2e.conftest import LiveConsole

TENANT = "school"
ADMIN = ("ada", "correct horse battery")
INSTRUCTOR = ("grace", "another long password")

_INPUT = re.compile(r"""<input[^>]*name=["']([^"']+)["'][^>]*value=["']([^"']*)["']""")
_ACTION = re.compile(r"""<form[^>]*action=["']([^"']+)["']""")


@dataclass
class School:
    course_id: str  # the same id in the LMS and in gradesync: the launch binds them
    platform_id: str
    client_id: str
    learners: dict[str, str]  # id -> name
    dropped: str  # launched, then removed from the LMS course: its grades are rejected


def lti_launch(lms: RunningSandbox, client_id: str, user: str, course: str, link: str) -> None:
    """A learner opens the link: the OIDC dance an LMS iframe does, over real HTTP."""
    started = lms.admin.start_launch(
        client_id=client_id, user=user, course=course, resource_link_id=link
    )
    with httpx.Client(timeout=10.0, follow_redirects=False) as http:
        login = http.get(started["url"])
        assert login.status_code == 302, login.text
        auth = http.get(login.headers["location"])
        assert auth.status_code == 200, auth.text
        action = _ACTION.search(auth.text)
        assert action is not None, auth.text[:300]
        fields = {unescape(k): unescape(v) for k, v in _INPUT.findall(auth.text)}
        done = http.post(unescape(action.group(1)), data=fields)
        assert done.status_code == 200, done.text


def build_school(lms: RunningSandbox, console: LiveConsole) -> School:
    rt = console.runtime
    now = datetime.now(UTC)
    course_id, client_id, deployment = "bio-101", "gradesync-client", "dep-1"
    learners = {"u-ada": "Ada Byron", "u-alan": "Alan Turing"}
    dropped = "u-alan"

    # The LMS: a course with two learners and an instructor, and gradesync registered in it.
    lms.admin.register_tool(
        client_id=client_id,
        deployment_id=deployment,
        jwks_url=console.url("/lti/jwks.json"),
        oidc_login_url=console.url("/lti/login"),
        redirect_uris=[console.url("/lti/launch")],
        target_link_uri=console.url("/lti/launch"),
        deep_link_url=console.url("/lti/launch"),
        scopes=list(AGS_SCOPES),
    )
    lms.admin.add_course(
        id=course_id, title="Biology 101", learners=list(learners), instructors=["t-grace"]
    )
    lms.admin.add_resource_link(course_id, id="link-1", title="Biology homework")

    # gradesync: the school, the LMS registration, the course and what the courseware sent.
    with rt.db.uow() as uow:
        uow.tenants.upsert(Tenant(TENANT, "Springfield High"), now)
        cfg = lms.admin.config()
        dest = platforms.save_platform(
            uow,
            reg.platform_of(
                TENANT,
                {
                    "id": "lms",
                    "name": "Sandbox LMS",
                    "issuer": cfg["issuer"],
                    "client_id": client_id,
                    "deployment_ids": [deployment],
                    "auth_login_url": cfg["authorization_url"],
                    "auth_token_url": cfg["token_url"],
                    "key_set_url": cfg["jwks_url"],
                },
            ),
            now,
        )
        uow.commit()
    batch = ingest.IngestBatch(
        courses=[Course(TENANT, course_id, "Biology 101", time_zone="America/Chicago")],
        activities=[
            Activity(
                TENANT,
                "cells",
                course_id,
                "Cells quiz",
                10.0,
                category="Quizzes",
                due_at=now + timedelta(days=7),
                sync_enabled=False,
            ),
            Activity(
                TENANT,
                "genes",
                course_id,
                "Genetics lab",
                20.0,
                category="Labs",
                due_at=now + timedelta(days=14),
            ),
        ],
        people=[Person(TENANT, pid, name) for pid, name in learners.items()],
        enrollments=[Enrollment(TENANT, course_id, pid) for pid in learners],
        attempts=[
            Attempt(TENANT, "ev-1", "cells", "u-ada", 8.0, 10.0, now - timedelta(hours=2)),
            Attempt(TENANT, "ev-2", "cells", "u-alan", 6.0, 10.0, now - timedelta(hours=1)),
            Attempt(TENANT, "ev-3", "genes", "u-ada", 17.0, 20.0, now - timedelta(hours=1)),
        ],
    )
    ingest.ingest(rt.db.uow, rt.clock, rt.waker, TENANT, batch)

    # Each learner opens the course's link once (that is how the LMS introduces them), and
    # later one of them leaves the LMS course.
    for pid in learners:
        lti_launch(lms, client_id, pid, course_id, "link-1")
    lms.admin.unenroll(course_id, dropped)
    # The courseware's roster names them (the LMS launch carried no name).
    people = [Person(TENANT, pid, name) for pid, name in learners.items()]
    ingest.upsert_people(rt.db.uow, rt.clock, rt.waker, TENANT, people)

    create_user(
        rt.db.uow,
        rt.clock,
        tenant_id=TENANT,
        username=ADMIN[0],
        password=ADMIN[1],
        role=UserRole.ADMIN,
        display_name="Ada Admin",
    )
    create_user(
        rt.db.uow,
        rt.clock,
        tenant_id=TENANT,
        username=INSTRUCTOR[0],
        password=INSTRUCTOR[1],
        role=UserRole.INSTRUCTOR,
        display_name="Grace Hopper",
        course_ids=[course_id],
    )
    return School(course_id, dest.id, client_id, learners, dropped)
