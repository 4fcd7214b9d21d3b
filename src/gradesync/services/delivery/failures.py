"""Failure classification: what a remote failure means for the row and for its destination.

| class         | the row                      | the destination                                  |
|---------------|------------------------------|--------------------------------------------------|
| RETRY_LATER   | retrying, backoff + jitter   | counts towards the circuit breaker               |
|  ... per key  | retrying, `per_key_tries` in | none (the destination works; one learner fails)  |
|               | all, then rejected           |                                                  |
| SLOW_DOWN     | retrying at Retry-After      | gated until Retry-After (paused_until)           |
| REJECTED      | rejected, remote's words kept| none (the destination works)                     |
| MISCONFIGURED | retrying after the pause     | paused (`misconfigured_pause`), admin told       |
|   (final)     | rejected at once             | paused (`misconfigured_pause`), admin told       |
| NOT_SYNCED    | skipped with the reason      | none (the column is not sent by design)          |
"""

from __future__ import annotations

import logging
from datetime import timedelta

from gradesync.domain.ledger import DeliveryOutcome, Rejected, RetryLater
from gradesync.domain.model import Destination
from gradesync.domain.pauses import PauseCause
from gradesync.domain.reasons import Reason, as_clause
from gradesync.services import log_context
from gradesync.services.delivery.governor import (
    DestinationLimits,
    Governor,
    counted,
    mark_counted,
)
from gradesync.services.destination import FailureClass, RemoteFailure
from gradesync.services.destination import reason_of as reason_of  # read from here too

log = logging.getLogger(__name__)


def outcome_of_failure(
    gov: Governor,
    f: RemoteFailure,
    d: Destination,
    lim: DestinationLimits,
    *,
    course_wide: bool = False,
) -> DeliveryOutcome | Reason:
    """Act on a failure's class for the destination; return the row's outcome (a Reason:
    the row is skipped with it)."""
    now = gov.clock.now()
    reason = reason_of(f)
    # a pause reason is read alike by every reader (the API, the console, the command line):
    # what happened, and a remedy only in words every reader acts on (one held as a code is
    # left out: each reader reads its own in the diagnosis, `destination_ready`)
    paused = reason.text
    if f.failure is FailureClass.NOT_SYNCED:
        # not sent by design (normally settled before this, from ensure_column): a skip,
        # which says nothing about the destination's health
        return reason
    if f.failure is FailureClass.REJECTED:
        lim.breaker.record_success()  # the destination works; it refused this one
        return Rejected(reason, remote_status=f.status, remote_message=f.message)
    if f.failure is FailureClass.SLOW_DOWN:
        wait = (
            timedelta(seconds=f.retry_after)
            if f.retry_after is not None and f.retry_after >= 0
            else gov.settings.default_retry_after
        )
        gov.gate(
            d,
            lim,
            now + wait,
            PauseCause.SLOW_DOWN,
            f" ({f.message.strip() or f.code}); sending resumes by itself.",
        )
        return RetryLater(
            reason, retry_after=wait, remote_status=f.status, remote_message=f.message
        )
    if f.failure is FailureClass.MISCONFIGURED:
        wait = gov.settings.misconfigured_pause
        if f.final:
            # the same request would be refused again: the row is refused now, and the
            # destination paused until an admin fixes its settings
            gov.gate(d, lim, now + wait, PauseCause.MISCONFIGURED, paused)
            return Rejected(reason, remote_status=f.status, remote_message=f.message)
        if not course_wide:
            gov.gate(
                d,
                lim,
                now + wait,
                PauseCause.MISCONFIGURED,
                # the destination's words end as a sentence of their own, then gradesync's
                f"{as_clause(paused)}. gradesync tries again by itself at the end of the pause, "
                "or when an admin resumes the destination.",
            )
        return RetryLater(
            reason,
            retry_after=wait,
            remote_status=f.status,
            remote_message=f.message,
            misconfigured=True,
        )
    if f.per_key:
        # the adapter saw the destination working: only this key fails, so neither the
        # breaker nor any other learner's grade is held back, and the tries are few
        lim.breaker.record_success()
        return RetryLater(
            reason,
            remote_status=f.status,
            remote_message=f.message,
            max_tries=gov.settings.per_key_tries,
        )
    if not counted(f):  # the breaker's probe's failure is on the breaker already
        gov.failed(d, lim, paused)
    return RetryLater(reason, remote_status=f.status, remote_message=f.message)


def slowed_down(gov: Governor, exc: BaseException, d: Destination) -> bool:
    """A request other than a score's send (a column's write ahead, a run's read-back)
    failed: when the remote asked to slow down (a 429, a 503 with Retry-After), `d` is
    paused for every request until Retry-After, as a send's 429 pauses it. True when it
    was."""
    if not isinstance(exc, RemoteFailure) or exc.failure is not FailureClass.SLOW_DOWN:
        return False
    outcome_of_failure(gov, exc, d, gov.limits_for(d))
    return True


def unexpected_failure(
    gov: Governor, exc: BaseException, d: Destination, lim: DestinationLimits
) -> RetryLater:
    """An error no adapter classified: a transient failure, logged with its traceback."""
    log.exception(
        "unexpected error talking to destination %s/%s",
        d.tenant_id,
        d.id,
        exc_info=exc,
        extra=log_context.fields(tenant=d.tenant_id, destination=d.id),
    )
    f = RemoteFailure(FailureClass.RETRY_LATER, "unexpected_error", f"{type(exc).__name__}: {exc}")
    if counted(exc):
        mark_counted(f)
    outcome = outcome_of_failure(gov, f, d, lim)
    assert isinstance(outcome, RetryLater)
    return outcome
