"""Generic destination management: list, show, pause, resume, delete, limits.

Creating a destination is protocol-specific (LTI platforms, SIS connections) and lives with
each protocol; everything here works on any kind. Secrets never leave this layer through
these functions' intended callers: `public_view` drops them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from gradesync.domain.errors import FieldProblem, InvalidInput, NotFound
from gradesync.domain.model import SIS_KINDS, Destination, DestinationKind
from gradesync.domain.pauses import PauseCause
from gradesync.services.clock import Clock
from gradesync.services.outbound import url_without_credentials
from gradesync.services.ports import UnitOfWorkFactory
from gradesync.services.wakeup import Waker


def _without_credentials(value: Any) -> Any:
    """A URL saved with `user:password@` in it (before such URLs were refused) is shown
    without them: they are secrets kept outside the encrypted field."""
    if isinstance(value, str):
        return url_without_credentials(value) or value
    return value


def public_view(dest: Destination, now: datetime) -> dict[str, Any]:
    """Everything about a destination that may be shown: no secret material, and its state
    as of `now` (a timed pause that has run out is not shown as a pause)."""
    dest = dest.as_of(now)
    return {
        "id": dest.id,
        "kind": dest.kind.value,
        "name": dest.name,
        "profile": dest.profile,
        "config": {k: _without_credentials(v) for k, v in dest.config.items()},
        "enabled": dest.enabled,
        "paused_until": dest.paused_until,
        "pause_reason": dest.pause_reason,
    }


def list_destinations(uow_factory: UnitOfWorkFactory, tenant_id: str) -> list[Destination]:
    with uow_factory() as uow:
        return uow.destinations.all(tenant_id)


def connection_ids(uow_factory: UnitOfWorkFactory, tenant_id: str) -> list[str]:
    """The ids of every destination the tenant has or had on this installation (deleted
    ones by their recorded deletion)."""
    with uow_factory() as uow:
        now = {d.id for d in uow.destinations.all(tenant_id)}
        gone = {d.id for d in uow.destinations.deleted(tenant_id, None)}
    return sorted(now | gone)


def get_destination(
    uow_factory: UnitOfWorkFactory, tenant_id: str, destination_id: str
) -> Destination:
    with uow_factory() as uow:
        dest = uow.destinations.get(tenant_id, destination_id)
    if dest is None:
        raise NotFound("destination", destination_id)
    return dest


def until_problem(until: datetime | None, now: datetime) -> FieldProblem | None:
    """Why `until` ends no pause given at `now` (None: it does, or there is none)."""
    if until is not None and until <= now:
        return FieldProblem("until", "future", "A pause ends in the future.")
    return None


def pause(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    tenant_id: str,
    destination_id: str,
    *,
    actor: str,
    reason: str | None = None,
    until: datetime | None = None,
) -> Destination:
    """Stop deliveries to a destination. With `until`, a timed pause (like the circuit
    breaker's); without, until someone resumes it. Pending results wait; nothing is lost."""
    now = clock.now()
    if (past := until_problem(until, now)) is not None:
        raise InvalidInput([past])
    why = reason or f"paused by {actor}"
    with uow_factory() as uow:
        # held to the commit, as in every change written back whole: read unlocked, another
        # change committed meanwhile (PostgreSQL's read committed) would be written over
        dest = uow.destinations.get(tenant_id, destination_id, for_update=True)
        if dest is None:
            raise NotFound("destination", destination_id)
        # a person's pause whatever its words say (they may open like gradesync's own)
        cause = PauseCause.ADMIN
        if until is None:
            dest = replace(dest, enabled=False, pause_reason=why, pause_cause=cause)
            uow.destinations.upsert(dest, now)
        else:
            # the person's latest word wins: a destination they had turned off is paused until
            # then instead (its words too), not left off past the time they gave
            dest = replace(
                dest, enabled=True, paused_until=until, pause_reason=why, pause_cause=cause
            )
            uow.destinations.upsert(dest, now)
        uow.commit()
    return dest


def resume(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    tenant_id: str,
    destination_id: str,
) -> Destination:
    """Deliver again: clears a manual pause and a timed or misconfiguration pause. What the
    pause held goes at once: results waiting for a later try are due now (an admin who
    resumes has fixed what was wrong, and should not wait for the pause to run out)."""
    now = clock.now()
    with uow_factory() as uow:
        dest = uow.destinations.get(tenant_id, destination_id, for_update=True)  # as `pause`
        if dest is None:
            raise NotFound("destination", destination_id)
        dest = replace(dest, enabled=True, paused_until=None, pause_reason=None, pause_cause=None)
        uow.destinations.upsert(dest, now)
        uow.ledger.retry_now(tenant_id, destination_id, now)
        uow.commit()
    if waker is not None:  # pending results were waiting for this destination
        waker.wake_keys()
        waker.wake_delivery()
    return dest


def delete(
    uow_factory: UnitOfWorkFactory, clock: Clock, tenant_id: str, destination_id: str
) -> None:
    """Remove a destination with its links and ledger (grades already delivered stay there).
    Its name is kept with its deletion: its runs and delivery log still name it."""
    with uow_factory() as uow:
        if not uow.destinations.delete(tenant_id, destination_id, clock.now()):
            raise NotFound("destination", destination_id)
        uow.commit()


LIMITS = ("concurrency", "rate_per_second")
MAX_RATE_PER_SECOND = 1000.0
# one request per 100 s: a slower rate sends nothing useful (1e-320 never sends at all)
MIN_RATE_PER_SECOND = 0.01


MOST_CONCURRENCY = 256  # the most for any kind; a SIS takes fewer (`most_concurrency`)


def most_concurrency(kind: DestinationKind) -> int:
    """The most requests at once a destination of this kind may be given (the same bound its
    own registration or connection checks)."""
    return 64 if kind in SIS_KINDS else MOST_CONCURRENCY


def concurrency_wrong(value: object, most: int = MOST_CONCURRENCY) -> str | None:
    """Why `value` is no concurrency of at most `most` (None: it is one). The API's body
    checks it with the largest bound, beside the fields' types, and the service with the
    destination's."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        return f"concurrency must be a whole number from 1 to {most}."
    return None


def rate_wrong(value: object) -> str | None:
    """Why `value` is no rate_per_second (None: it is one)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not MIN_RATE_PER_SECOND <= value <= MAX_RATE_PER_SECOND
    ):
        return (
            f"rate_per_second must be a number from {MIN_RATE_PER_SECOND:g} (one request per"
            f" {1 / MIN_RATE_PER_SECOND:g} s) to {MAX_RATE_PER_SECOND:g}."
        )
    return None


def limit_problems(kind: DestinationKind, changes: Mapping[str, object]) -> list[FieldProblem]:
    """What is wrong with new limits (None clears one: back to the default)."""
    problems = [
        FieldProblem(k, "unknown_field", f"{k!r} is not a limit; give {' or '.join(LIMITS)}.")
        for k in changes
        if k not in LIMITS
    ]
    c = changes.get("concurrency")
    why = None if c is None else concurrency_wrong(c, most_concurrency(kind))
    if why:
        problems.append(FieldProblem("concurrency", "range", why))
    r = changes.get("rate_per_second")
    why = None if r is None else rate_wrong(r)
    if why:
        problems.append(FieldProblem("rate_per_second", "range", why))
    return problems


def set_limits(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    tenant_id: str,
    destination_id: str,
    changes: Mapping[str, object],
) -> Destination:
    """Change how hard gradesync may press a destination, for all workers together:
    `concurrency` (requests at once) and `rate_per_second` (a token bucket). A value sets a
    limit, None clears it (concurrency back to its default, no rate limit); limits not named
    keep their value. The running engine reads them when it next reads the destination (within
    `destinations_ttl`, or at once on the change's signal), sends already waiting included.
    Bad values change nothing."""
    with uow_factory() as uow:
        dest = uow.destinations.get(tenant_id, destination_id, for_update=True)  # as `pause`
        if dest is None:
            raise NotFound("destination", destination_id)
        problems = limit_problems(dest.kind, changes)
        if problems:
            raise InvalidInput(problems)
        config = dict(dest.config)
        for key, value in changes.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        dest = replace(dest, config=config)
        uow.destinations.upsert(dest, clock.now())
        uow.commit()
    return dest
