"""The strict destination double: an in-memory gradebook behind the `DestinationClient`
protocol that can fail on purpose, for tests of the engine and of anything built on it.

    factory = DoubleFactory()
    engine = Engine(db.uow, clock, factory, settings)
    factory.remote("lms").fail_next(1, server_error())

It is strict where the engine must be careful: score timestamps must strictly increase per
(column, learner) (like Moodle, an equal one is refused), and it records how many sends of
one key overlap, so a test can prove no key is ever sent twice at once. The contract suite
(tests/contract) holds it to the same behaviour as the real adapters against the sandbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gradesync.domain.diagnosis import ProbeStep
from gradesync.domain.model import Course, CourseLink, Destination, ItemLink, ScoreForm
from gradesync.domain.policy import Capabilities, Column, DesiredResult, column_hash
from gradesync.services.destination import (
    FailureClass,
    ReadBack,
    Receipt,
    RemoteFailure,
    RequestGate,
    ResultTarget,
    ungated,
)
from gradesync.testing.waiting import wait_for_async

Key = tuple[str, str]  # (line item id, remote person id)


@dataclass
class Stored:
    score_given: float | None
    score_maximum: float
    timestamp: datetime
    comment: str | None


@dataclass
class Remote:
    """The gradebook on the other side, shared by every client of one destination."""

    results: dict[Key, Stored] = field(default_factory=dict)
    history: dict[Key, list[Stored]] = field(default_factory=dict)
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)  # line item id -> details
    column_writes: int = 0
    sends: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    overlapping: list[Key] = field(default_factory=list)  # a key sent while already in flight
    _keys_in_flight: set[Key] = field(default_factory=set)
    # failure scripts, consulted in order: each returns a RemoteFailure or None
    failures: list[Callable[[Key], RemoteFailure | None]] = field(default_factory=list)
    hold: asyncio.Event | None = None  # when set to an unset event, sends wait for it
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # a send reached the remote
    changed: asyncio.Condition | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)
    readable: bool = True
    course_failure: RemoteFailure | None = None
    course_calls: int = 0
    # when set to an unset event, ensuring a course's link waits for it (a slow LMS)
    course_hold: asyncio.Event | None = None
    # activity id -> what ensure_column raises for it (e.g. a column not synced by design)
    column_failures: dict[str, RemoteFailure] = field(default_factory=dict)
    column_calls: int = 0
    # activity id -> an event its column's creation waits for (a slow line item POST)
    column_hold: dict[str, asyncio.Event] = field(default_factory=dict)
    order: list[Key] = field(default_factory=list)  # every send, in the order it arrived
    # the smallest timestamp step the gradebook tells apart (None: the engine's default)
    timestamp_step: timedelta | None = None
    # the remote person ids the course knows, as an LMS roster does (None: anyone); a score
    # for anyone else is rejected as an unknown user
    enrolled: set[str] | None = None

    def fail_next(self, n: int, failure: RemoteFailure) -> None:
        left = [n]

        def script(_: Key) -> RemoteFailure | None:
            if left[0] > 0:
                left[0] -= 1
                return failure
            return None

        self.failures.append(script)

    def fail_person(self, remote_person: str, failure: RemoteFailure) -> None:
        self.failures.append(lambda key: failure if key[1] == remote_person else None)

    def score_of(self, item: str, person: str) -> float | None:
        s = self.results.get((item, person))
        return s.score_given if s else None

    async def _notify(self) -> None:
        if self.changed is None:
            self.changed = asyncio.Condition()
        async with self.changed:
            self.changed.notify_all()

    async def wait_for(
        self, predicate: Callable[[], bool], what: str = "the gradebook's state"
    ) -> None:
        """Wait until `predicate()` holds, checked again after each send starts and ends."""
        if self.changed is None:
            self.changed = asyncio.Condition()
        await wait_for_async(predicate, what, changed=self.changed)


def server_error() -> RemoteFailure:
    """What a 5xx is classified as."""
    return RemoteFailure(FailureClass.RETRY_LATER, "server_error", "502 Bad Gateway", status=502)


def slow_down(seconds: float) -> RemoteFailure:
    """Canvas's way of saying "slow down": 403 "Rate Limit Exceeded"."""
    return RemoteFailure(
        FailureClass.SLOW_DOWN,
        "rate_limited",
        "Rate Limit Exceeded",
        status=403,
        retry_after=seconds,
    )


def rate_limited(seconds: float) -> RemoteFailure:
    """What a 429 with Retry-After is classified as."""
    return RemoteFailure(
        FailureClass.SLOW_DOWN,
        "rate_limited",
        "Too Many Requests",
        status=429,
        retry_after=seconds,
    )


def unknown_user() -> RemoteFailure:
    return RemoteFailure(
        FailureClass.REJECTED,
        "unknown_user",
        "User not found in course or is not a student",
        status=422,
        remedy="The learner must open the activity from the course's link.",
    )


def not_synced() -> RemoteFailure:
    return RemoteFailure(
        FailureClass.NOT_SYNCED,
        "not_selected_for_sis",
        "The activity is not selected for SIS passback.",
        remedy="Tick 'Sync to SIS' for it.",
    )


class DoubleClient:
    def __init__(self, destination: Destination, remote: Remote) -> None:
        self.destination = destination
        self.remote = remote

    @property
    def capabilities(self) -> Capabilities:
        return self.remote.capabilities

    @property
    def timestamp_step(self) -> timedelta | None:
        return self.remote.timestamp_step

    async def ensure_course(self, course: Course, link: CourseLink | None) -> CourseLink:
        self.remote.course_calls += 1
        if self.remote.course_hold is not None:
            await self.remote.course_hold.wait()
        if self.remote.course_failure is not None:
            raise self.remote.course_failure
        if link is None:
            raise RemoteFailure(
                FailureClass.MISCONFIGURED, "no_course_link", "no launch from this course yet"
            )
        return link

    async def ensure_column(
        self,
        course: CourseLink,
        column: Column,
        link: ItemLink | None,
        *,
        force: bool = False,
        each_request: RequestGate = ungated,
    ) -> ItemLink:
        self.remote.column_calls += 1
        hold = self.remote.column_hold.get(column.activity_id)
        if hold is not None:
            await hold.wait()
        failure = self.remote.column_failures.get(column.activity_id)
        if failure is not None:
            raise failure
        item = link.remote_id if link else f"{course.remote_id}/items/{column.activity_id}"
        self.remote.columns[item] = {
            "title": column.title,
            "score_maximum": column.score_maximum,
            "category": column.category,
        }
        self.remote.column_writes += 1
        return ItemLink(
            course.tenant_id,
            course.destination_id,
            column.activity_id,
            item,
            details_hash=column_hash(column),
        )

    async def put_result(
        self,
        target: ResultTarget,
        result: DesiredResult,
        timestamp: datetime,
        *,
        each_request: RequestGate = ungated,
    ) -> Receipt:
        r = self.remote
        key = (target.item.remote_id, target.person.remote_id)
        if key in r._keys_in_flight:
            r.overlapping.append(key)
        r._keys_in_flight.add(key)
        r.in_flight += 1
        r.max_in_flight = max(r.max_in_flight, r.in_flight)
        r.sends += 1
        r.order.append(key)
        try:
            r.arrived.set()
            await r._notify()
            if r.hold is not None:
                await r.hold.wait()
            for script in r.failures:
                failure = script(key)
                if failure is not None:
                    raise failure
            if r.enrolled is not None and target.person.remote_id not in r.enrolled:
                raise unknown_user()
            last = r.results.get(key)
            step = r.timestamp_step or timedelta(0)
            if last is not None and timestamp < last.timestamp + step:
                raise RemoteFailure(
                    FailureClass.REJECTED,
                    "timestamp_older",
                    "Score timestamp is not at least one step newer than the stored one",
                    status=409,
                )
            if last is not None and timestamp <= last.timestamp:
                raise RemoteFailure(
                    FailureClass.REJECTED,
                    "timestamp_older",
                    "Score timestamp is not newer than the stored one",
                    status=409,
                )
            stored = Stored(result.score_given, result.score_maximum, timestamp, result.comment)
            r.results[key] = stored
            r.history.setdefault(key, []).append(stored)
            payload = {
                "userId": target.person.remote_id,
                "scoreGiven": result.score_given,
                "scoreMaximum": result.score_maximum,
                "timestamp": timestamp.isoformat(),
            }
            return Receipt(payload, 200, None)
        finally:
            r.in_flight -= 1
            r._keys_in_flight.discard(key)
            await r._notify()

    async def read_results(
        self, course: CourseLink, item: ItemLink, *, each_request: RequestGate = ungated
    ) -> Sequence[ReadBack]:
        if not self.remote.readable:
            return []
        return [
            ReadBack(person, s.score_given, s.score_maximum, s.comment, s.timestamp)
            for (it, person), s in self.remote.results.items()
            if it == item.remote_id
        ]

    async def check(self) -> Sequence[ProbeStep]:
        return [ProbeStep("double", True, "in memory")]

    async def aclose(self) -> None:
        return None


class DoubleFactory:
    """`DestinationFactory` serving one `Remote` per destination id."""

    def __init__(self) -> None:
        self.remotes: dict[str, Remote] = {}
        self.built = 0

    def remote(self, destination_id: str) -> Remote:
        return self.remotes.setdefault(destination_id, Remote())

    def __call__(self, destination: Destination) -> DoubleClient:
        self.built += 1
        return DoubleClient(destination, self.remote(destination.id))


PERCENT = Capabilities(score_form=ScoreForm.PERCENT)
