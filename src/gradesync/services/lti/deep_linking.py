"""Deep Linking 2.0, the stored half: checking the instructor's choice (one course, activities
of that course that can have a gradebook column at this platform) and connecting the LMS
context to that course. The response JWT is built by `gradesync.lti.deep_linking`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from gradesync.domain.capabilities import Capabilities
from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import Activity, Course, Destination
from gradesync.domain.policy import Column, column_for, resolve_settings
from gradesync.services.delivery.failures import outcome_of_failure
from gradesync.services.delivery.governor import DestinationPaused, Governor, OwnRequests
from gradesync.services.destination import (
    ColumnFinder,
    DestinationClient,
    FailureClass,
    RemoteFailure,
)
from gradesync.services.lti.errors import LaunchRefused
from gradesync.services.lti.launch import bind_context
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Choice:
    course: Course
    activity: Activity
    column: Column
    # the platform's column for this activity that gradesync already knows or found there
    # (its resourceId and tag are the activity's): the new link reuses it instead of making
    # a second one
    existing_column: str | None = None


@dataclass(frozen=True, slots=True)
class DeepLinkRequest:
    """What the instructor chose, with what the deep linking launch said."""

    tenant_id: str
    destination_id: str
    course_id: str | None  # chosen in the picker
    activity_ids: Sequence[str]
    bound_course_id: str | None  # the course the LMS context is already connected to
    context: dict[str, Any]
    endpoint: dict[str, Any] | None
    deployment_id: str


def choose(
    u: UnitOfWork,
    tenant: str,
    course_id: str | None,
    bound_course_id: str | None,
    activity_ids: Sequence[str],
    capabilities: Capabilities,
    destination_id: str | None = None,
) -> tuple[Course, list[Choice]]:
    """Validate the instructor's choice: one course, activities of that course that can have
    a gradebook column at this platform."""
    course_id = course_id or bound_course_id
    if not course_id:
        raise InvalidInput.one("course_id", "required", "Choose the gradesync course to connect.")
    course = u.courses.get(tenant, course_id)
    if course is None:
        raise InvalidInput.one(
            "course_id", "unknown_course", f"Course {course_id!r} does not exist."
        )
    if bound_course_id and bound_course_id != course_id:
        raise InvalidInput.one(
            "course_id",
            "already_bound",
            f"This LMS course is connected to gradesync course {bound_course_id!r}.",
        )
    if not activity_ids:
        raise InvalidInput.one("activity_ids", "required", "Choose at least one activity.")
    activities = u.activities.get_many(tenant, activity_ids)
    known = u.links.items(tenant, destination_id, list(activity_ids)) if destination_id else {}
    tenant_row = u.tenants.get(tenant)
    out: list[Choice] = []
    for index, aid in enumerate(dict.fromkeys(activity_ids)):
        act = activities.get(aid)
        if act is None or act.course_id != course_id:
            raise InvalidInput.one(
                f"activity_ids[{index}]",
                "unknown_activity" if act is None else "other_course",
                f"Activity {aid!r} is not in course {course_id!r}.",
            )
        layers = [tenant_row.policy] if tenant_row else []
        policy = resolve_settings(*layers, course.policy, act.policy)
        column = column_for(act, policy, capabilities)
        if not isinstance(column, Column):
            raise InvalidInput.one(f"activity_ids[{index}]", column.reason.code, column.reason.text)
        link = known.get(aid)
        out.append(Choice(course, act, column, link.remote_id if link and link.remote_id else None))
    return course, out


def connect_course(
    uow: UnitOfWorkFactory,
    request: DeepLinkRequest,
    now: datetime,
    *,
    capabilities_of: Callable[[str], Capabilities],
) -> tuple[Destination, list[Choice]]:
    """Check the choice and connect the LMS context to the chosen course, in one transaction.
    Raises LaunchRefused (the registration is gone) or InvalidInput (a bad choice)."""
    with uow() as u:
        platform = u.destinations.get(request.tenant_id, request.destination_id)
        if platform is None:
            raise LaunchRefused("unknown_platform", "the platform registration no longer exists")
        course, choices = choose(
            u,
            request.tenant_id,
            request.course_id,
            request.bound_course_id,
            request.activity_ids,
            capabilities_of(platform.profile),
            request.destination_id,
        )
        bind_context(
            u,
            request.tenant_id,
            request.destination_id,
            course.id,
            context=request.context,
            endpoint=request.endpoint,
            deployment_id=request.deployment_id,
            now=now,
        )
        u.commit()
    return platform, choices


# the instructor's answer waits on it: it goes before a run's requests, as a live grade does
LOOKUP_PRIORITY = 0


async def platform_columns(
    client: DestinationClient,
    platform: Destination,
    endpoint: Mapping[str, Any] | None,
    choices: Sequence[Choice],
    *,
    now: datetime,
    within: float,
    governor: Governor,
) -> list[Choice]:
    """`choices` with the platform's own column for each activity this connection has none
    recorded for: gradesync's links are per connection, so a connection added again under
    another id (or a link whose record was lost) knows none, while the LMS course still has
    the column gradesync made, with the activity's resourceId and the connection's tag. The
    LMS is asked once, for the line items of the launch's container, matched here for every
    activity, so the new link reuses its column and the LMS makes no second one.

    The instructor's browser waits on the answer: the question gets `within` seconds in all
    (waiting for the platform's limits included). Each request of it (a page of the
    listing: a platform that takes the container's filters as advisory answers every line
    item of the course, page after page) goes within the platform's limits, pause and
    breaker as any other request to it does, and takes its own slot and rate token
    (`governor`: the in-process worker's, or one of the request's own); the listing stops
    at the page that answers every activity. A failure is
    classified as a column's write's is (`outcome_of_failure`): a 5xx or a timeout counts
    on the breaker, a 429 pauses the platform until its Retry-After; a misconfigured or
    final answer (the launch's container off the platform's registered origins, a line
    item scope not granted) is only logged: it pauses nothing. Not asked at all while
    the platform is turned off or paused. Unanswered (paused, slow, down, no line item
    scope granted), every choice is left as it was: its link makes the LMS create the
    column, as it would without this look-up."""
    wanted = [ch.activity.id for ch in choices if ch.existing_column is None]
    container = str((endpoint or {}).get("lineitems") or "")
    if not wanted or not container or not isinstance(client, ColumnFinder):
        return list(choices)
    unasked = "its links ask the LMS for a column"
    if not platform.enabled or (platform.paused_until is not None and platform.paused_until > now):
        log.info("deep linking: %s is paused, not asked for its columns; %s", platform.id, unasked)
        return list(choices)

    try:
        async with asyncio.timeout(within):
            found = await client.find_columns(
                container, wanted, each_request=OwnRequests(governor, platform, LOOKUP_PRIORITY)
            )
    except TimeoutError:
        log.warning(
            "deep linking: %s did not list its columns within %g s (a slow LMS, or its "
            "limits let no request go sooner); %s",
            *(platform.id, within, unasked),
        )
        return list(choices)
    except DestinationPaused as paused:
        log.info("deep linking: %s; %s", paused, unasked)
        return list(choices)
    except RemoteFailure as failure:
        # a 5xx or a timeout counts on the platform's breaker and a 429 pauses it, as any
        # request's would; a misconfigured or final refusal of this one look-up (the
        # launch's container off the platform's origins) says nothing of the platform's
        # other courses: logged, never a pause of every send to the platform
        if failure.failure is not FailureClass.MISCONFIGURED and not failure.final:
            limits = governor.limits_for(platform)
            outcome_of_failure(governor, failure, platform, limits, course_wide=True)
        log.warning(
            "deep linking: %s could not be asked for its columns (%s: %s); %s",
            *(platform.id, failure.code, failure.message, unasked),
        )
        return list(choices)
    return [
        replace(ch, existing_column=ch.existing_column or found.get(ch.activity.id))
        for ch in choices
    ]
