"""The ledger (per key: what should be, what was sent, its delivery state and lease) and the
log of every send."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow

# Courses whose pending rows one claim shares out (`LedgerRepo.claimable`); more courses
# take turns over claims, so a claim that served this many may have left rows behind.
FAIR_COURSES = 16


class Claimable(NamedTuple):
    """A due row a claim found, with its course and priority (0: a live grade, 1: a row a
    run made pending)."""

    row: LedgerRow
    course_id: str
    priority: int


class LedgerRepo(Protocol):
    def get(self, key: LedgerKey) -> LedgerRow | None: ...

    def get_many(
        self,
        tenant_id: str,
        destination_id: str,
        course_id: str,
        activity_ids: Sequence[str] | None = None,
        *,
        state: DeliveryState | None = None,
        lock: bool = False,
    ) -> dict[tuple[str, str], LedgerRow]:
        """A course's rows (of some activities, when given; in `state`, when given), by
        (activity, person). `lock` as `get_keys` locks (every other writer kept off them
        until the transaction ends, the locks taken in key order), and the rows are as the
        lock finds them: on PostgreSQL a row another transaction changed meanwhile is read
        as it committed it, and left out when no longer in `state`."""

    def save(self, row: LedgerRow, course_id: str) -> None: ...

    def refresh_statistics(self) -> None:
        """Tell the database's planner how many rows the ledger holds now and what is in
        them, after a bulk write (a no-op where the planner does not need it)."""

    def save_many(
        self,
        rows: Sequence[tuple[LedgerRow, str]],
        *,
        release_for: str | None = None,
        bulk: bool | None = None,
    ) -> None:
        """Upsert many (row, course) pairs at once (the engine's hot path).
        `release_for`: also give up the leases that owner holds on these rows, as `release`
        does, in the same write (settling writes each row once, not twice). `bulk`: the rows
        were computed by a run (True) or for a live grade (False), which is claimed first;
        None leaves their priority as it is."""

    def insert_new(self, rows: Sequence[tuple[LedgerRow, str]]) -> set[LedgerKey]:
        """Insert the (row, course) pairs whose key has no row yet, and leave the others as
        they are (on PostgreSQL a row another transaction is making is waited for, then
        kept). Returns the keys inserted."""

    def course_of(self, key: LedgerKey) -> str | None: ...

    def due(
        self,
        now: datetime,
        limit: int,
        *,
        tenant_id: str | None = None,
        destination_id: str | None = None,
        course_id: str | None = None,
    ) -> list[LedgerRow]:
        """Keys to send now: pending, or retrying whose time has come. Oldest first."""

    def next_retry_at(
        self, now: datetime, destinations: Sequence[tuple[str, str]]
    ) -> datetime | None:
        """When the soonest retrying row of `destinations` ((tenant, destination): those a
        claim does not leave out) a claim at that time could take is due: its retry time,
        or the end of its lease if another claim holds it."""

    def counts_by_state(
        self, tenant_id: str, *, destination_id: str | None = None, course_id: str | None = None
    ) -> dict[str, int]: ...

    def counts_by_outcome(
        self, tenant_id: str, destination_id: str, reason_codes: Sequence[str]
    ) -> list[tuple[str, bool, bool, int]]:
        """A destination's results counted by (state, whether the LMS holds one gradesync
        sent, whether the reason code is one of `reason_codes`): what the console's words
        for a grade ("Sent", "Kept in LMS", "Overridden", ...) are worked out from."""

    def waiting(self, tenant_id: str) -> list[tuple[str, int, datetime | None]]:
        """Per destination with results waiting (pending or retrying): (destination id, how
        many, when the one waiting longest last changed)."""

    def waiting_at(self, tenant_id: str, destination_id: str) -> int:
        """How many of the tenant's results wait (pending or retrying) for this one
        destination: `waiting` narrowed to it, read without counting the others."""

    def oldest_waiting(self, tenant_id: str) -> tuple[LedgerRow, str] | None:
        """The waiting result that has waited longest, with its course."""

    def for_person(self, tenant_id: str, person_id: str) -> list[LedgerRow]: ...

    def of_people(
        self,
        tenant_id: str,
        destination_id: str,
        course_ids: Collection[str],
        person_ids: Collection[str],
        *,
        lock: bool = False,
    ) -> list[tuple[LedgerRow, str]]:
        """The rows of these people in these courses at one destination, each with its
        course, in key order (the rest of the courses' rows not read). `lock` as `get_keys`
        locks: every other writer kept off them until the transaction ends, the locks taken
        in key order."""

    def iter_scope(
        self, tenant_id: str, destination_id: str, course_id: str, batch: int = 1000
    ) -> Iterator[list[LedgerRow]]:
        """Stream a course's ledger in key order, a batch at a time (bounded memory)."""

    # the sync engine: row locks, leases, scope summaries

    def settle(self, rows: Sequence[tuple[LedgerRow, str, datetime]], owner: str) -> None:
        """Write settled (row, course, the claim's lease_until), each read in this
        transaction under its lock (`get_keys`) and folded with its outcome: only what a
        settle changes (the state, what was delivered, tries, retry time, reason, the
        remote's answer, times), not the key, course, desired state or priority as read;
        and give back its claim's lease in the same write. A row no longer holding that
        lease (`owner`, lease_until) is another claim's: it is left as it is."""

    def settle_as_claimed(
        self,
        rows: Sequence[tuple[LedgerRow, LedgerRow, datetime | None, datetime]],
        owner: str,
    ) -> int:
        """`settle` without a read: each (settled row, the row as its claim read it, the
        score timestamp the claim stamped on it or None, the claim's lease_until) is
        written, and gives back its lease, only while the row still holds that lease of
        `owner` and every column the fold read or carried over is as that claim left it.
        Returns how many rows were written: a row changed since (its desired state, its
        lease, anything its outcome was folded from) is left as it is, for the caller to
        read under lock and fold again."""

    def get_claimed(
        self, keys: Sequence[LedgerKey], owner: str
    ) -> dict[LedgerKey, tuple[LedgerRow, datetime | None]]:
        """Rows of these keys locked as `get_keys(lock=True)` locks them, each with the
        lease_until of `owner`'s lease on it (run out or not), None when it holds none."""

    def get_keys(
        self, keys: Sequence[LedgerKey], *, lock: bool = False
    ) -> dict[LedgerKey, LedgerRow]:
        """Rows of these keys. `lock` keeps every other writer off them until the
        transaction ends (locks are taken in key order, so two writers never deadlock)."""

    def claimable(
        self,
        now: datetime,
        limit: int,
        *,
        tenant_id: str | None = None,
        destination_id: str | None = None,
        course_id: str | None = None,
        activity_ids: Sequence[str] | None = None,
        exclude_destinations: Sequence[tuple[str, str]] = (),
        courses_after: str = "",
        live_only: bool = False,
    ) -> list[Claimable]:
        """Due rows nobody holds, with their course and priority. Live grades (priority 0)
        before rows a run made pending (`live_only`: live grades alone); within a priority,
        due retries, then pending rows shared round-robin between the courses that have
        some (each course's oldest first), so a remaster of one course never holds back
        another's grades. More courses than one claim serves (`FAIR_COURSES`) take turns:
        the next claim starts after `courses_after`. A claim costs the same whatever the
        backlog. Locked so two workers claiming at once get different rows; `lease` them in
        the same transaction."""

    def lease(
        self, rows: Sequence[tuple[LedgerKey, datetime]], owner: str, until: datetime
    ) -> None:
        """Hold rows for `owner` until `until`; each row's `last_timestamp` becomes the score
        timestamp about to be sent, so a send the remote applied before a crash is never
        followed by an older timestamp."""

    def release(self, claims: Sequence[tuple[LedgerKey, datetime]], owner: str) -> int:
        """Give up the claims (key, lease_until) `owner` holds: a lease taken over after
        expiry, by another worker or by `owner` again, is another claim's and is left
        alone. Returns how many were given up."""

    def take_leases(self, keys: Sequence[LedgerKey], now: datetime) -> list[LedgerKey]:
        """Drop the leases of these rows, whoever holds them: the sends in flight are for
        what the row meant when they were claimed, and their outcomes are not written (the
        settle finds its claim ended). Returns the keys whose lease had not run out at `now`
        (a send may be in flight)."""

    def clear_leases(self, owner: str | None = None) -> int:
        """Drop leases (all, or one holder's): used when the only worker restarts. Returns
        how many rows were held."""

    def retry_now(self, tenant_id: str, destination_id: str, now: datetime) -> int:
        """Make every result of the destination that waits for a later try due at `now`
        (an admin resumed it: what a pause held goes at once). Returns how many."""

    def due_summary(
        self,
        now: datetime,
        *,
        tenant_id: str | None = None,
        destination_id: str | None = None,
        course_id: str | None = None,
        activity_ids: Sequence[str] | None = None,
        exclude_destinations: Sequence[tuple[str, str]] = (),
    ) -> tuple[int, int, datetime | None, datetime | None]:
        """(rows due now, rows leased by a worker, when the next retry falls due, when the
        last lease ends) in a scope, but for the (tenant, destination)s excluded."""

    def scope_summary(
        self,
        tenant_id: str,
        *,
        destination_id: str | None = None,
        course_id: str | None = None,
        activity_ids: Sequence[str] | None = None,
        delivered_since: datetime | None = None,
        leave_out: Sequence[str] = (),
    ) -> list[tuple[str, str | None, bool, int]]:
        """Counts of rows in a scope by (state, reason_code, delivered since `delivered_since`),
        the rows of the destinations of `leave_out` left out."""

    def not_delivered_since(
        self,
        tenant_id: str,
        since: datetime,
        *,
        destination_id: str | None = None,
        course_id: str | None = None,
        activity_ids: Sequence[str] | None = None,
    ) -> list[tuple[str, str, str, str]]:
        """(destination, course, activity, person) of the scope's rows that hold a result
        and were not delivered at or after `since` (what a run from `since` did not write)."""

    def delivered_since(
        self,
        tenant_id: str,
        since: datetime,
        *,
        destination_id: str | None = None,
        course_id: str | None = None,
        activity_ids: Sequence[str] | None = None,
    ) -> list[tuple[str, str, str, str]]:
        """(destination, course, activity, person) of the scope's rows delivered at or after
        `since` that hold what was delivered (state delivered: a row changed since is due
        anyway), selected by the database, not read whole."""


class DeliveryLogRepo(Protocol):
    def add(
        self,
        *,
        key: LedgerKey,
        run_id: str | None,
        sent_at: datetime,
        sent_hash: str | None,
        payload: dict[str, Any] | None,
        outcome: str,
        remote_status: int | None,
        remote_message: str | None,
        latency_ms: float | None,
        score_scale: float | None = None,
    ) -> None:
        """Log one send and what the remote answered. `score_scale`: the activity's points
        an LTI 1.1 fraction was computed on (`domain.held.logs_scale`)."""

    def for_key(self, key: LedgerKey, limit: int = 20) -> list[dict[str, Any]]:
        """A key's sends, newest first."""

    def since(self, tenant_id: str, since: datetime) -> list[dict[str, Any]]:
        """A tenant's sends since a time (destination, time, outcome, latency), oldest first;
        the log's other lines (an override seen, a repair asked for) are no send."""

    def add_many(self, entries: Sequence[dict[str, Any]]) -> None:
        """Log many sends at once; each entry has the keyword arguments of `add`."""

    def logged_to(self, tenant_id: str, destination_id: str) -> bool:
        """Whether the log holds a line of the destination: it outlives a destination deleted
        since, which no other table remembers."""

    def last_send(self, tenant_id: str, destination_id: str, since: datetime) -> datetime | None:
        """When gradesync last sent the destination a grade, whatever the answer, if it did
        at or after `since` (only the log since then is read); None otherwise."""

    def delivered_by_run(
        self,
        tenant_id: str,
        run_id: str,
        destination_ids: Sequence[str],
        since: datetime,
        until: datetime | None = None,
    ) -> dict[str, int]:
        """Per destination of `destination_ids`, how many (activity, person) the run
        delivered at or after `since` (and before `until`), by its log (which outlives a
        deleted destination's ledger)."""

    def last_holding(
        self, tenant_id: str, destination_id: str, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Per (activity, person) of `keys`, the newest log line that says what the
        gradebook holds (`domain.held.HOLDING_OUTCOMES`: a delivered send, or a readback that
        found an edit); keys with none are left out."""

    def last_tries(
        self, tenant_id: str, destination_id: str, activity_ids: Sequence[str]
    ) -> dict[tuple[str, str], datetime]:
        """When each (activity, person) of these activities was last sent to the destination,
        whatever the answer (delivered, retrying or rejected)."""
