"""A column write of an LTI 1.1 activity (its details recorded as in step: the LMS made the
column) while a learner's first launch of it records their result id on the column's link,
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx

from gradesync.adapters.db.database import Database
from gradesync.adapters.destinations.lti11 import Lti11Client
from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.domain.model import CourseLink, ItemLink
from gradesync.domain.policy import Column, column_hash
from gradesync.lti.lti11_launch import read_launch
from gradesync.services.clock import SystemClock
from gradesync.services.delivery.background import BackgroundWrites
from gradesync.services.delivery.governor import Governor
from gradesync.services.delivery.provisioning import Provisioner
from gradesync.services.destination import RequestGate, ungated
from gradesync.services.lti.lti11 import find_consumer, record_launch
from tests.engine.conftest import FAST
from tests.lti11.conftest import register_consumer

KEY, DEST, LINK = "k-col", "lms11", "rl-col"
OUTCOMES = "https://lms.example.edu/outcomes"


def _launch(db: Database, user: str) -> None:
    params = {
        "lti_message_type": "basic-lti-launch-request",
        "lti_version": "LTI-1p0",
        "user_id": user,
        "roles": "Learner",
        "context_id": "c-col",
        "resource_link_id": LINK,
        "lis_result_sourcedid": f"sid-{user}",
        "lis_outcome_service_url": OUTCOMES,
    }
    with db.uow() as uow:
        consumer = find_consumer(uow, KEY)
        assert consumer is not None
        record_launch(uow, consumer, read_launch(params, consumer), datetime.now(UTC))
        uow.commit()


class _Held(Lti11Client):
    """The LTI 1.1 client, its answer held after it read the column's link."""

    reading: asyncio.Event
    hold: asyncio.Event

    async def ensure_column(
        self,
        course: CourseLink,
        column: Column,
        link: ItemLink | None,
        *,
        force: bool = False,
        each_request: RequestGate = ungated,
    ) -> ItemLink:
        written = await super().ensure_column(course, column, link, force=force)
        self.reading.set()
        await self.hold.wait()
        return written


async def test_a_learners_launch_during_a_column_write_keeps_their_result_id(
    db: Database,
) -> None:
    """The second learner's launch keeps the column's details hash (it names the same
    link), so the write is saved as written; it had read the link before the launch added
    the learner's `sourcedids` entry, and saved that entry away with the copy it read: the
    learner's grade then had no result id on the column's link."""
    register_consumer(db, KEY, hosts=("lms.example.edu",))
    _launch(db, "u1")
    with db.uow() as uow:
        d = uow.destinations.get("t1", DEST)
        course = uow.links.course("t1", DEST, "c-col")
        read = uow.links.item("t1", DEST, LINK)
    assert d is not None and course is not None and read is not None
    background = BackgroundWrites()
    provisioner = Provisioner(
        db.uow, FAST, background, Governor(db.uow, SystemClock(), FAST, background)
    )
    async with httpx.AsyncClient() as http:
        client = _Held(d, DestinationContext(http=http))
        client.reading, client.hold = asyncio.Event(), asyncio.Event()
        column = Column("Quiz", 10.0, None, None, LINK)
        write = asyncio.create_task(provisioner.ensure_column(client, d, course, column, read))
        await client.reading.wait()
        _launch(db, "u2")
        client.hold.set()
        _, written = await write
        await background.wait()
    assert written
    with db.uow() as uow:
        stored = uow.links.item("t1", DEST, LINK)
    assert stored is not None
    assert stored.details_hash == column_hash(column)  # saved as written
    assert stored.data["sourcedids"] == {"u1": "sid-u1", "u2": "sid-u2"}
    assert stored.data["outcome_urls"] == {"u1": OUTCOMES, "u2": OUTCOMES}
