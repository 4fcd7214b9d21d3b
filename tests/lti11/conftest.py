"""LTI 1.1 fixtures: the sandbox LMS (an LTI 1.1 consumer) and gradesync's own app, each on
loopback over real HTTP, plus helpers that register a consumer and launch through the LMS."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.config import Settings
from gradesync.lti.lti11_launch import LAUNCH_PATH
from gradesync.runtime import Runtime
from gradesync.sandbox.testing import RunningSandbox, running_sandbox, serve_in_thread
from gradesync.services.lti11_consumers import ConsumerSpec, add_consumer
from gradesync.testing import TEST_SECRET, add_tenant
from gradesync.web.app import create_app

SECRET = "a-long-shared-secret-0123456789"
_ids = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_ids)}"


@pytest.fixture(scope="module")
def lms() -> Iterator[RunningSandbox]:
    """One sandbox per module; tests use unique course, user and consumer ids."""
    with running_sandbox() as sandbox:
        yield sandbox


class CountingWaker:
    """Counts wake-ups (the worker is not under test here)."""

    def __init__(self) -> None:
        self.keys = 0

    def wake_keys(self) -> None:
        self.keys += 1

    def wake_run(self, run_id: str, scope: Any) -> None:
        raise AssertionError("a launch never queues a run")

    def wake_delivery(self) -> None:
        self.keys += 1


@dataclass
class Gradesync:
    base_url: str
    db: Database
    runtime: Runtime
    waker: CountingWaker

    @property
    def launch_url(self) -> str:
        return self.base_url + LAUNCH_PATH


@pytest.fixture
def gradesync(db: Database, tmp_path: Path) -> Iterator[Gradesync]:
    """gradesync's web app (with the LTI 1.1 launch endpoint) on loopback, on `db`."""
    settings = Settings(database_url=db.url, secret_key=TEST_SECRET, data_dir=tmp_path / "data")
    waker = CountingWaker()
    runtime = Runtime(settings=settings, db=db, waker=waker)
    with serve_in_thread(create_app(runtime)) as handle:
        yield Gradesync(handle.base_url, db, runtime, waker)


@pytest.fixture
async def context() -> AsyncIterator[DestinationContext]:
    async with httpx.AsyncClient() as http:
        yield DestinationContext(http=http)


def register_consumer(
    db: Database,
    key: str,
    *,
    secret: str = SECRET,
    tenant_id: str = "t1",
    destination_id: str = "lms11",
    hosts: tuple[str, ...] = ("127.0.0.1",),
    comments: bool = False,
) -> None:
    add_tenant(db.uow, tenant_id)
    with db.uow() as uow:
        add_consumer(
            uow,
            ConsumerSpec(
                tenant_id=tenant_id,
                destination_id=destination_id,
                name="Sandbox LMS",
                consumer_key=key,
                consumer_secret=secret,
                allowed_hosts=hosts,
                comments=comments,
            ),
            datetime.now(UTC),
        )
        uow.commit()


@dataclass
class LmsCourse:
    consumer_key: str
    course: str
    learners: list[str]
    instructor: str


def lms_course(lms: RunningSandbox, *, learners: int = 1, secret: str = SECRET) -> LmsCourse:
    """A consumer, a course with learners and an instructor, in the sandbox LMS."""
    key = unique("consumer-")
    lms.admin.add_lti11_consumer(key, secret)
    people = [unique("learner-") for _ in range(learners)]
    teacher = unique("teacher-")
    for sub in [*people, teacher]:
        lms.admin.add_user(sub=sub, name=sub.title(), email=f"{sub}@example.edu")
    course = unique("course-")
    lms.admin.add_course(
        id=course, title=f"Biology {course}", learners=people, instructors=[teacher]
    )
    return LmsCourse(key, course, people, teacher)


def signed_launch(
    lms: RunningSandbox, c: LmsCourse, user: str, link: str, launch_url: str, **extra: Any
) -> dict[str, Any]:
    """The signed form the LMS would post when `user` opens link `link`."""
    return lms.admin.lti11_launch(
        consumer_key=c.consumer_key,
        launch_url=launch_url,
        course=c.course,
        user=user,
        resource_link_id=link,
        title=extra.pop("title", f"Quiz {link}"),
        score_maximum=extra.pop("score_maximum", 10),
        **extra,
    )


def post_launch(form: dict[str, Any]) -> httpx.Response:
    """Post a launch form the way a browser does (auto-submitted HTML form)."""
    return httpx.post(form["url"], data=form["params"], timeout=10.0)


def lms_scores(lms: RunningSandbox, course: str, link: str) -> dict[str, dict[str, Any]]:
    """{user: score record} of the column made for resource link `link`, as the LMS holds it."""
    snapshot = lms.admin.inspect(course)
    for item in snapshot["lms"]["courses"][0]["line_items"]:
        if item["resourceLinkId"] == link:
            return dict(item["scores"])
    raise AssertionError(f"no column for resource link {link!r} in {course!r}")


def lti11_requests(lms: RunningSandbox) -> int:
    return int(lms.admin.counters().get("lti11", {}).get("requests", 0))
