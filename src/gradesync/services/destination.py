"""What delivery needs from a destination, as a protocol the services own.

One adapter per protocol implements it (`adapters/destinations/`: LTI 1.3 AGS, LTI 1.1
Outcomes, OneRoster REST). Every failure is raised as a `RemoteFailure` with its class, because
the class decides what happens next:

| class          | engine does                                                        |
|----------------|--------------------------------------------------------------------|
| RETRY_LATER    | backoff with jitter; the key stays pending                          |
| SLOW_DOWN      | honour retry_after for the whole destination                        |
| REJECTED       | not retried until the facts change; the remote's words are kept     |
| MISCONFIGURED  | the destination is paused and an admin is told                      |
| NOT_SYNCED     | the column is not sent by design: the rows are skipped with the     |
|                | reason (not a failure; nothing is wrong with the destination)       |

Re-authentication (401 with an expired token) is handled inside the adapter: new token once,
then retry; a second 401 is MISCONFIGURED.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from gradesync.domain.diagnosis import ProbeStep
from gradesync.domain.model import Course, CourseLink, Destination, ItemLink, PersonLink
from gradesync.domain.policy import Capabilities, Column, DesiredResult
from gradesync.domain.reasons import Reason
from gradesync.domain.remedies import SEPARATOR, Reader, Remedy


class FailureClass(StrEnum):
    RETRY_LATER = "retry_later"
    SLOW_DOWN = "slow_down"
    REJECTED = "rejected"
    MISCONFIGURED = "misconfigured"
    # This column is not sent by design (e.g. not selected for SIS passback): record a skip
    # with the reason, not a failure. Only meaningful from `ensure_column`.
    NOT_SYNCED = "not_synced"


# The column's code when the LMS counts grades only on a column tied to the activity's LTI
# link and no launch has said which link that is: a launch that does lets them go out.
NO_RESOURCE_LINK = "no_resource_link"

# A result's code when the destination no longer holds its column (deleted there, or a SIS
# restored from an older state): delivery marks the column's link to be looked at, so the
# next write of it makes the column again (`Provisioner.column_gone`).
LINE_ITEM_GONE = "line_item_gone"


class RemoteFailure(Exception):
    """A destination refused or failed. `code` is a machine-readable reason ("unknown_user",
    "line_item_gone", "attempts_exceeded", "timestamp_older", "course_concluded", "server_error",
    "timeout", "rate_limited", "no_grade_scope", "bad_credentials", ...); `message` holds the
    remote's own words; `remedy` what a person should do, in words every reader acts on
    (naming no command, route or page: one that does is held as a code, `fix`, which the
    ledger stores as such, `delivery.failures.reason_of`). `per_key`: the failure is tied to
    this one key (learner), not to the destination, which the adapter saw working: it never
    counts towards the destination's circuit breaker, and a transient one is retried only a
    few times (`EngineSettings.per_key_tries`) before the key is rejected with the remedy."""

    def __init__(
        self,
        failure: FailureClass,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        remedy: str | None = None,
        fix: Remedy | None = None,
        per_key: bool = False,
        final: bool = False,
    ) -> None:
        super().__init__(f"{failure.value}/{code}: {message}")
        self.failure = failure
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after
        # `fix`: the remedy held as a code, each reader's words made from it (`remedy_for`);
        # `remedy` is then the command line's (what is stored with a refused row)
        self.fix = fix
        self.remedy = fix.words(Reader.CLI) if fix is not None and remedy is None else remedy
        self.per_key = per_key
        # MISCONFIGURED only: trying again cannot help (a refused address, a URL outside
        # the registration), so the row is refused at once; the destination is still paused.
        self.final = final

    def remedy_for(self, reader: Reader, destination_id: str | None = None) -> str | None:
        """The remedy in the words of an administrator reading over `reader`, about the
        destination `destination_id` where the adapter that refused did not name it."""
        if self.fix is None:
            return self.remedy
        fix = self.fix
        if fix.destination is None and destination_id is not None:
            fix = replace(fix, destination=destination_id)
        return fix.words(reader)


def reason_of(f: RemoteFailure) -> Reason:
    """The remote's words (or its code), with the remedy when the adapter knows one: held as
    its code where the adapter holds it so (`fix`), to be worded for whoever reads it, else
    in the adapter's words, which name no command."""
    text = f.message.strip() or f.code
    if f.fix is not None:
        return Reason(f.code, text, f.fix)
    if f.remedy:
        text = f"{text}{SEPARATOR}{f.remedy}"
    return Reason(f.code, text)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What was sent and what the remote said, for the delivery log."""

    payload: Mapping[str, Any]
    status: int | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ReadBack:
    """A result as the destination holds it now (for verify and override detection)."""

    remote_person_id: str
    score_given: float | None
    score_maximum: float | None
    comment: str | None = None
    timestamp: datetime | None = None
    # whether the destination said the maximum (AGS's resultMaximum may be left out: 1)
    maximum_said: bool = True


@dataclass(frozen=True, slots=True)
class ResultTarget:
    """Everything an adapter needs to address one result."""

    course: CourseLink
    item: ItemLink
    person: PersonLink
    extra: Mapping[str, Any] = field(default_factory=dict)


class RequestGate(Protocol):
    """Entered around each request of a call that makes several (a column's look-up and
    write, a listing's pages, a read-back): the caller's limits for one request
    (`Governor.further_requests` under the slot `Governor.request` holds), so such a call
    takes a rate token per request and meets a pause between them."""

    def __call__(self) -> AbstractAsyncContextManager[object]: ...

    def beside(self) -> AbstractContextManager[bool]:
        """A further slot of the destination's concurrency, taken at once when one is free
        and nothing waits for one (True, held until the block ends), for a request beside
        those the caller's slot allows; False: none, the call goes one request at a time."""
        ...


class _Ungated:
    """The gate of a call made outside any limits (no `RequestGate` given)."""

    def __call__(self) -> AbstractAsyncContextManager[object]:
        return nullcontext()

    def beside(self) -> AbstractContextManager[bool]:
        return nullcontext(True)


ungated: RequestGate = _Ungated()


# a column's results as the LMS holds them (`read_results`), read within the destination's
# limits (`delivery.asked.governed_reads`)
ReadBackFor = Callable[[Destination, CourseLink, ItemLink], Awaitable[Sequence[ReadBack]]]


class DestinationClient(Protocol):
    """A connection to one destination. Adapters are async (httpx.AsyncClient) and safe to
    call concurrently; the engine bounds concurrency and rate per destination.

    Optional attribute `timestamp_step: timedelta`: the smallest difference between two
    score timestamps the destination tells apart (Moodle keeps whole seconds: 1 s). The
    engine reads it with `timestamp_step_of(client)`; without it, 1 ms."""

    destination: Destination

    @property
    def capabilities(self) -> Capabilities: ...

    async def ensure_course(self, course: Course, link: CourseLink | None) -> CourseLink:
        """Return the course's link at the destination, creating or discovering it where the
        protocol allows. Raise MISCONFIGURED when it cannot be known (e.g. no LTI launch yet
        from that course)."""
        ...

    async def ensure_column(
        self,
        course: CourseLink,
        column: Column,
        link: ItemLink | None,
        *,
        force: bool = False,
        each_request: RequestGate = ungated,
    ) -> ItemLink:
        """Find before create; update details when `column` differs from `link.details_hash`
        or `force` (remaster). Return the link with `details_hash` set, and in its data
        what the write found or made (line items, matches, the line item's fields): only
        the keys whose value differs from `link`'s are saved, over the link as stored then,
        so a key left out or passed on as read is never the write's (a person's change
        saved meanwhile stays: `LinkRepo.save_written_item`). An adapter that
        lists page by page within the limits (AGS) requests each page within `each_request`
        when given; one that does not (LTI 1.1, OneRoster) makes every request under the
        caller's."""
        ...

    async def put_result(
        self,
        target: ResultTarget,
        result: DesiredResult,
        timestamp: datetime,
        *,
        each_request: RequestGate = ungated,
    ) -> Receipt:
        """Send one result. `timestamp` strictly increases per (column, person). Its requests
        each within `each_request` (the send's slot takes the first: an adapter that asks
        more, OneRoster whether a refused result's line item is gone, takes a token each)."""
        ...

    async def read_results(
        self, course: CourseLink, item: ItemLink, *, each_request: RequestGate = ungated
    ) -> Sequence[ReadBack]:
        """Results as the destination holds them; empty when it cannot read back. An adapter
        that lists page by page within the limits (AGS) requests each page within
        `each_request` when given; one that does not (LTI 1.1's readResult per learner,
        OneRoster's offset pages) makes every request under the caller's."""
        ...

    async def check(self) -> Sequence[ProbeStep]:
        """Prove the destination works: credentials, token, scopes, listing."""
        ...

    async def aclose(self) -> None:
        """Called when the process stops, for the clients in use then, and once no send
        holds it when its destination is deleted. A client replaced by new settings and no
        longer used is dropped without it: a client must own nothing that needs closing
        (the HTTP pool is the context's)."""
        ...


# What a destination can take, as the client the engine uses for it says (`capabilities`),
# or why gradesync cannot talk to it at all (an unknown kind, unusable settings).
CapabilitiesLookup = Callable[[Destination], Capabilities | Reason]


@runtime_checkable
class OneResultReader(Protocol):
    """A client that reads back one learner's result, addressed as a send is (LTI 1.1:
    readResult by the learner's sourcedId), so a check costs one request, not one per
    learner. Every refusal is raised, with the id asked for in its message."""

    async def read_one(self, target: ResultTarget) -> ReadBack: ...


@runtime_checkable
class ColumnFinder(Protocol):
    """A client that finds, in a course's gradebook, the columns it would write for
    activities (LTI 1.3 AGS: the line items with each activity's resourceId and the
    destination's tag in the course's line items container), so a column gradesync made
    under an earlier connection or link is written to again rather than doubled. One
    listing of the gradebook answers for every activity asked about, read no further than
    the page that answers them all; each page's request is made within `each_request`:
    activity id -> column id, an activity with none left out; a RemoteFailure when the
    gradebook cannot be asked."""

    async def find_columns(
        self, container: str, activity_ids: Sequence[str], *, each_request: RequestGate
    ) -> dict[str, str]: ...


@runtime_checkable
class ColumnRemover(Protocol):
    """A client that deletes a column it made (LTI 1.3 AGS: the line item's DELETE), with
    the results in it. Only the check's test column is ever removed: gradesync never deletes
    a column that holds grades. A column already gone counts as removed."""

    async def delete_column(self, course: CourseLink, item: ItemLink) -> None: ...


DEFAULT_TIMESTAMP_STEP = timedelta(milliseconds=1)


def timestamp_step_of(client: object) -> timedelta:
    """The client's `timestamp_step` when it declares a usable one, else 1 ms."""
    step = getattr(client, "timestamp_step", None)
    if isinstance(step, timedelta) and step > timedelta(0):
        return step
    return DEFAULT_TIMESTAMP_STEP


class DestinationFactory(Protocol):
    def __call__(self, destination: Destination) -> DestinationClient: ...
