"""Client side of the HTTP gradebook double (`gradesync.testing.http_double`).

Worker processes load it with GRADESYNC_TEST_DESTINATION_MODULE=gradesync.testing.http_adapter:
`runtime.destination_client` then builds every destination's client with `build` below. It
classifies answers by status code like a real adapter: 5xx and transport errors retry later,
429 slows down with Retry-After, other 4xx are rejections with the remote's words.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime

import httpx

from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.domain.diagnosis import ProbeStep
from gradesync.domain.model import Course, CourseLink, Destination, ItemLink
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


class HttpDoubleClient:
    def __init__(self, destination: Destination, context: DestinationContext) -> None:
        self.destination = destination
        self.http = context.http
        self.base = str(destination.config["base_url"]).rstrip("/")

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    async def ensure_course(self, course: Course, link: CourseLink | None) -> CourseLink:
        if link is None:
            raise RemoteFailure(FailureClass.MISCONFIGURED, "no_course_link", "not linked")
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
        return ItemLink(
            course.tenant_id,
            course.destination_id,
            column.activity_id,
            link.remote_id if link else column.activity_id,
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
        payload = {
            "userId": target.person.remote_id,
            "scoreGiven": result.score_given,
            "scoreMaximum": result.score_maximum,
            "timestamp": timestamp.isoformat(),
        }
        try:
            resp = await self.http.post(
                f"{self.base}/items/{target.item.remote_id}/scores",
                json=payload,
                headers={"X-Worker": str(os.getpid())},
                timeout=60,
            )
        except httpx.TransportError as exc:
            raise RemoteFailure(FailureClass.RETRY_LATER, "connection_failed", str(exc)) from exc
        if resp.status_code < 300:
            return Receipt(payload, resp.status_code, None)
        raise _classified(resp)

    async def read_results(
        self, course: CourseLink, item: ItemLink, *, each_request: RequestGate = ungated
    ) -> Sequence[ReadBack]:
        try:
            resp = await self.http.get(f"{self.base}/items/{item.remote_id}/scores", timeout=60)
        except httpx.TransportError as exc:
            raise RemoteFailure(FailureClass.RETRY_LATER, "connection_failed", str(exc)) from exc
        if resp.status_code >= 300:
            raise _classified(resp)
        return [
            ReadBack(
                row["userId"],
                row["scoreGiven"],
                row["scoreMaximum"],
                timestamp=datetime.fromisoformat(row["timestamp"]),
            )
            for row in resp.json()
        ]

    async def check(self) -> Sequence[ProbeStep]:
        return [ProbeStep("http double", True, self.base)]

    async def aclose(self) -> None:
        return None


def _classified(resp: httpx.Response) -> RemoteFailure:
    """An answer that is not a success, classified by its status as a real adapter does."""
    if resp.status_code >= 500:
        return RemoteFailure(
            FailureClass.RETRY_LATER, "server_error", resp.text, status=resp.status_code
        )
    if resp.status_code == 429:
        return RemoteFailure(
            FailureClass.SLOW_DOWN,
            "rate_limited",
            resp.text,
            status=429,
            retry_after=float(resp.headers.get("retry-after", "1")),
        )
    code = "timestamp_older" if resp.status_code == 409 else "invalid_request"
    return RemoteFailure(FailureClass.REJECTED, code, resp.text, status=resp.status_code)


def build(destination: Destination, context: DestinationContext) -> HttpDoubleClient:
    return HttpDoubleClient(destination, context)
