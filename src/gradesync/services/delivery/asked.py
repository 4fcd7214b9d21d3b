"""A call to a destination other than a score's send (a run's or a repair's read-back, a
check's test result), made within the destination's limits as a send is: its first request
in the slot and token `Governor.call` takes, each later one (a page, the next learner's
result) with a token of its own (`Governor.further_requests`, the call's `RequestGate`). A
paused destination is not asked (`DestinationPaused`); an answer asking to slow down pauses
it until its Retry-After, as a send's does; a call that asked nothing (no learner to read)
is no answer to a breaker's probe."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from gradesync.domain.model import CourseLink, Destination, ItemLink
from gradesync.services.delivery.failures import slowed_down
from gradesync.services.delivery.governor import Governor
from gradesync.services.destination import (
    DestinationClient,
    ReadBack,
    ReadBackFor,
    RequestGate,
)

T = TypeVar("T")


async def asked(
    governor: Governor,
    d: Destination,
    call: Callable[[RequestGate], Awaitable[T]],
    priority: int = 0,
) -> T:
    """`call` made within `d`'s limits, given the gate its further requests each enter."""
    try:
        async with governor.call(d, priority) as gate:
            return await call(gate)
    except Exception as exc:
        slowed_down(governor, exc, d)
        raise


async def read_back(
    governor: Governor,
    client: DestinationClient,
    course: CourseLink,
    item: ItemLink,
    priority: int = 0,
) -> Sequence[ReadBack]:
    """A column's results as the LMS holds them, read within its limits (`asked`)."""
    return await asked(
        governor,
        client.destination,
        lambda gate: client.read_results(course, item, each_request=gate),
        priority,
    )


def governed_reads(
    governor: Governor, client_for: Callable[[Destination], DestinationClient]
) -> ReadBackFor:
    """Read-backs each made within its destination's limits (`asked`); the client is made
    once the destination is known to be open (a paused one is neither built nor asked)."""

    async def read(d: Destination, course: CourseLink, item: ItemLink) -> Sequence[ReadBack]:
        return await asked(
            governor,
            d,
            lambda gate: client_for(d).read_results(course, item, each_request=gate),
        )

    return read
