"""What every destination client reports, whatever its protocol: each call runs with its
tenant and destination in the log context (so the adapter's log lines carry them), and each
HTTP request it makes is counted by destination and status
(`gradesync_outbound_requests_total`). A platform's roster reads (NRPS) too."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gradesync.adapters import metrics
from gradesync.adapters.destinations.http_pool import ObservingTransport
from gradesync.domain.diagnosis import ProbeStep
from gradesync.domain.model import Course, CourseLink, Destination, ItemLink
from gradesync.domain.policy import Capabilities, Column, DesiredResult
from gradesync.services import log_context
from gradesync.services.destination import (
    ColumnFinder,
    ColumnRemover,
    DestinationClient,
    FailureClass,
    OneResultReader,
    ReadBack,
    Receipt,
    RemoteFailure,
    RequestGate,
    ResultTarget,
    ungated,
)
from gradesync.services.roster import Membership, MembershipReader


class ObservedClient:
    """A destination client whose calls run with its destination in the log context; any
    other attribute (e.g. `timestamp_step`) is the wrapped client's."""

    def __init__(self, inner: DestinationClient) -> None:
        self._inner = inner
        self.destination: Destination = inner.destination
        self._context = {"tenant": inner.destination.tenant_id, "destination": inner.destination.id}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def capabilities(self) -> Capabilities:
        return self._inner.capabilities

    async def ensure_course(self, course: Course, link: CourseLink | None) -> CourseLink:
        with log_context.bound(**self._context):
            return await self._inner.ensure_course(course, link)

    async def ensure_column(
        self,
        course: CourseLink,
        column: Column,
        link: ItemLink | None,
        *,
        force: bool = False,
        each_request: RequestGate = ungated,
    ) -> ItemLink:
        with log_context.bound(**self._context):
            return await self._inner.ensure_column(
                course, column, link, force=force, each_request=each_request
            )

    async def put_result(
        self,
        target: ResultTarget,
        result: DesiredResult,
        timestamp: datetime,
        *,
        each_request: RequestGate = ungated,
    ) -> Receipt:
        with log_context.bound(**self._context):
            return await self._inner.put_result(
                target, result, timestamp, each_request=each_request
            )

    async def read_results(
        self, course: CourseLink, item: ItemLink, *, each_request: RequestGate = ungated
    ) -> Sequence[ReadBack]:
        with log_context.bound(**self._context):
            return await self._inner.read_results(course, item, each_request=each_request)

    async def read_one(self, target: ResultTarget) -> ReadBack:
        """One learner's result, where the protocol reads one alone (`OneResultReader`)."""
        if not isinstance(self._inner, OneResultReader):
            raise RemoteFailure(
                FailureClass.REJECTED,
                "unsupported_operation",
                f"{self.destination.kind.value} does not read back one result alone",
            )
        with log_context.bound(**self._context):
            return await self._inner.read_one(target)

    async def find_columns(
        self, container: str, activity_ids: Sequence[str], *, each_request: RequestGate
    ) -> dict[str, str]:
        """The activities' columns in a course's gradebook, where the protocol finds them
        (`ColumnFinder`); none where it does not."""
        if not isinstance(self._inner, ColumnFinder):
            return {}
        with log_context.bound(**self._context):
            return await self._inner.find_columns(
                container, activity_ids, each_request=each_request
            )

    async def delete_column(self, course: CourseLink, item: ItemLink) -> None:
        """Delete a column, where the protocol can (`ColumnRemover`)."""
        if not isinstance(self._inner, ColumnRemover):
            raise RemoteFailure(
                FailureClass.REJECTED,
                "unsupported_operation",
                f"{self.destination.kind.value} cannot delete a column",
            )
        with log_context.bound(**self._context):
            await self._inner.delete_column(course, item)

    async def check(self) -> Sequence[ProbeStep]:
        with log_context.bound(**self._context):
            return await self._inner.check()

    async def aclose(self) -> None:
        await self._inner.aclose()


class ObservedRosterReader:
    """A roster reader whose reads (and the token requests they make) run with its platform
    in the log context: counted by destination, whether a launch or a run asked."""

    def __init__(self, inner: MembershipReader, destination: Destination) -> None:
        self._inner = inner
        self._context = {"tenant": destination.tenant_id, "destination": destination.id}

    async def read_members(self, url: str, *, differences: bool = False) -> Membership:
        with log_context.bound(**self._context):
            return await self._inner.read_members(url, differences=differences)

    async def aclose(self) -> None:
        await self._inner.aclose()


class CountingTransport(ObservingTransport):
    """Counts each request by the destination in the log context and the answer's status
    (`error` when there is none: a timeout, a refused or reset connection), whichever path
    of the shared client sent it."""

    def observe(self, status: int | None) -> None:
        ctx = log_context.current()
        metrics.count_outbound(ctx.get("tenant", ""), ctx.get("destination", ""), status)
