"""Dirty keys: the keys whose facts changed, waiting to be recomputed into the ledger."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol


class DirtyKeyRepo(Protocol):
    """Keys whose facts changed; recomputed by the engine, many changes collapsing into one."""

    def mark(
        self, tenant_id: str, course_id: str, activity_id: str, person_id: str, now: datetime
    ) -> None:
        """Mark a key dirty; marking it again refreshes the time (so `take` with the time read
        before leaves it dirty), but not when it began to wait (`waiting`) nor its place in
        the claims' queue."""

    def mark_many(
        self,
        rows: Sequence[tuple[str, str, str, str]],
        now: datetime,
        *,
        destination_id: str | None = None,
        behind: bool = False,
    ) -> None:
        """`mark` each of rows: (tenant_id, course_id, activity_id, person_id). With
        `destination_id`, a key is recomputed for that destination only (the change concerns
        no other); a key also marked for another destination, or for every one, is
        recomputed for every destination of its course. A key marked again keeps its place
        in the claims' queue, unless `behind`: then it goes to the back."""

    def marked_at(self, tenant_id: str, activity_id: str, person_id: str) -> datetime | None:
        """When the key was last marked (as the marking process's clock said), or None when
        it is not dirty."""

    def peek(self, limit: int) -> list[tuple[str, str, str, str, datetime]]:
        """The keys `claim` would take first, without taking them: (tenant, course,
        activity, person, last marked at)."""

    def schedule(
        self,
        rows: Sequence[tuple[str, str, str, str, datetime]],
        *,
        destination_id: str | None = None,
    ) -> None:
        """Mark keys dirty again at a later time, durably: (tenant, course, activity,
        person, at). A key already timed keeps the earlier of its two times. With
        `destination_id`, the key is marked for that destination only when the timer fires
        (as `mark_many`); timed also for another destination, or for every one, it is marked
        for every destination of its course."""

    def fire_due(self, now: datetime) -> int:
        """Mark dirty (and forget) every timer whose time has come, each for the
        destination(s) it was set for; how many fired."""

    def next_due_at(self) -> datetime | None:
        """The earliest timer, or None when there is none."""

    def count(self) -> int: ...

    def waiting(self, tenant_id: str) -> tuple[int, datetime | None]:
        """The tenant's keys not worked out yet, and when the oldest was first marked: a
        key marked again while it waits (a new fact, or a retry of one that cannot even be
        set aside) has waited since its first mark."""
        ...

    def lock_activities(self, activities: Iterable[tuple[str, str]]) -> None:
        """Serialise computing these (tenant, activity) pairs across processes until the
        transaction ends, so a slower computation from older facts can never overwrite a
        newer one. Take them all in one call, before reading any fact."""

    def claim(self, limit: int) -> list[tuple[str, str, str, str, str | None]]:
        """Take (and delete) up to `limit` dirty keys, first marked first (a key marked
        `behind` after those marked before it), skipping keys
        another process is taking, and lock their activities (`lock_activities`):
        (tenant_id, course_id, activity_id, person_id, destination_id), the destination None
        for every destination of the course (see `mark_many`). The deletion commits with the
        recomputed ledger rows, so a crash before the commit leaves the keys dirty, and a key
        marked again meanwhile is marked anew (the fact's transaction waits for this one)."""

    def take(
        self, keys: Sequence[tuple[str, str, str]], *, marked_at: datetime | None = None
    ) -> list[tuple[str, str, str, str, str | None]]:
        """`claim` these (tenant_id, activity_id, person_id) keys only: those still dirty
        and not being taken by another process, their activities locked. Returns them as
        `claim` does. `marked_at`: only a mark made at exactly this time (`marked_at()` read
        it): a key marked again since stays dirty and is not returned, whatever the clock of
        the process that marked it says."""

    def take_activities(
        self, tenant_id: str, activity_ids: Sequence[str], *, limit: int
    ) -> list[tuple[str, str, str, str, str | None]]:
        """`claim` up to `limit` keys of these activities, their activities locked; a key
        another process is taking is waited for, not skipped (once it commits its key is
        gone), so what this returns and what others took are both in the ledger when the
        transaction ends. Returns them as `claim` does."""
