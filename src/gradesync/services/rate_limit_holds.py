"""Destinations whose rate limit holds the grades waiting there, as the console's Dashboard
and a run's progress panel say it beside a pause: the diagnosis's `rate_limit` check (its
limit alone makes them take a minute or more), with who can change the limit in the viewer's
words (an instructor asks an administrator; an administrator reads where it is changed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gradesync.domain import remedies
from gradesync.domain.diagnosis import rate_limit_check
from gradesync.domain.model import Destination, RunScope
from gradesync.services.ports import UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class RateLimitHold:
    destination_id: str
    name: str
    rate: float  # requests per second
    said: str  # the grades waiting, the limit and how long they take at it
    remedy: str  # nothing to do if the pace is meant; else who raises or clears it

    @property
    def headline(self) -> str:
        return f"{self.name} is held back by its rate limit."

    @property
    def text(self) -> str:
        return f"{self.said} {self.remedy}"

    def as_json(self) -> dict[str, str]:
        return {"destination_id": self.destination_id, "headline": self.headline, "text": self.text}


def rate_limit_hold(
    d: Destination, waiting: int, *, instructor: bool = False
) -> RateLimitHold | None:
    """`d`'s rate limit, when it alone holds its `waiting` grades (pending or retrying) for a
    minute or more; None otherwise (no limit, one that keeps up, or nothing waiting)."""
    check = rate_limit_check(d, waiting) if waiting else None
    if check is None or check.passed:
        return None
    remedy = remedies.in_console(
        check.remedy_code, check.remedy or "", instructor=instructor, destination_id=d.id
    )
    return RateLimitHold(d.id, d.name, float(d.config["rate_per_second"]), check.evidence, remedy)


def rate_limit_holds(
    uow_factory: UnitOfWorkFactory,
    scope: RunScope,
    now: datetime,
    *,
    instructor: bool = False,
) -> list[RateLimitHold]:
    """The holds at the destinations a run of `scope` sends to (one; those the course is
    connected to; or every one of the tenant), by name. A paused destination's grades wait
    for the pause, which is said instead. Only a destination with a limit has its grades
    counted."""
    tenant = scope.tenant_id
    with uow_factory() as uow:
        limited = [
            d
            for d in uow.destinations.all(tenant)
            if d.config.get("rate_per_second") and not d.paused_at(now)
        ]
        if scope.destination_id is not None:
            limited = [d for d in limited if d.id == scope.destination_id]
        elif scope.course_id is not None and limited:
            links = uow.links.destinations_for_course(tenant, scope.course_id)
            linked = {link.destination_id for link in links}
            limited = [d for d in limited if d.id in linked]
        waiting = {d.id: uow.ledger.waiting_at(tenant, d.id) for d in limited}
    holds = [rate_limit_hold(d, waiting[d.id], instructor=instructor) for d in limited]
    return sorted((h for h in holds if h is not None), key=lambda h: h.name.lower())
