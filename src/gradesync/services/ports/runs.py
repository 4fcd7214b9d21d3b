"""Sync runs: their progress and stage history, one live run per scope, claims by workers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from gradesync.domain.model import SyncRun


class RunRepo(Protocol):
    def add(self, run: SyncRun, *, schedule_id: str | None = None) -> None:
        """Store a new run; `schedule_id` names the schedule that requested it."""

    def schedules_of(self, run_ids: Sequence[str]) -> dict[str, str]:
        """The schedule that requested each of these runs (runs nobody scheduled are left
        out)."""

    def get(self, run_id: str, tenant_id: str | None = None) -> SyncRun | None:
        """A run, of one tenant when `tenant_id` is given."""

    def get_many(self, run_ids: Sequence[str], tenant_id: str) -> dict[str, SyncRun]:
        """The tenant's runs of these ids, by id, in one statement (none for none)."""

    def stages(self, run_id: str) -> list[dict[str, Any]]:
        """A run's stage history: `{"stage": ..., "at": ISO time}`, oldest first."""

    def stages_many(self, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """`stages` of these runs, by run id, in one statement (a page lists up to 200)."""

    def update(
        self, run: SyncRun, *, worker_id: str | None = None, heartbeat_at: datetime | None = None
    ) -> None:
        """Write a run's progress; a new stage is appended to its stage history."""

    def note(self, run_id: str, note: str) -> None:
        """Add `note` to the run's current stage in its history (what happened there)."""

    def set_counts(self, run_id: str, counts: dict[str, Any]) -> None:
        """Replace a run's counts (a finished run's record of what became of it later)."""

    def active_for_scope(self, scope_key: str) -> list[SyncRun]:
        """The scope's runs not finished, oldest first."""

    def unfinished(self) -> list[tuple[SyncRun, datetime | None]]:
        """Runs not finished, with their last heartbeat (to find ones a dead worker left)."""

    def latest_beat_covering(
        self, tenant_id: str, destination_id: str, course_id: str
    ) -> datetime | None:
        """The latest heartbeat of the tenant's unfinished runs whose scope covers the
        destination's course (a scope naming no destination or no course covers them all);
        None when no such run has beaten. Other tenants' runs are not read."""

    def history(
        self,
        tenant_id: str,
        *,
        course_id: str | None = None,
        destination_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        trigger: str | None = None,
        limit: int = 50,
    ) -> list[SyncRun]:
        """A tenant's runs, newest first; `until` is exclusive."""

    def running_since(self, tenant_id: str, since: datetime, *, but: str) -> list[SyncRun]:
        """The tenant's runs other than `but` that had started by now and had not finished
        before `since` (still running, waiting to resume, or finished at or after it), by
        their first start."""

    def covering_course(
        self, tenant_id: str, course_id: str, destination_ids: Sequence[str], *, limit: int
    ) -> list[SyncRun]:
        """The tenant's runs that included the course, newest first: those scoped to it, and
        those of every course (a scope naming no course) at every destination or at one of
        `destination_ids` (the course's)."""

    # the sync engine: one run per scope, claims, dead workers

    def lock_scope(self, scope_key: str) -> None:
        """Serialise run requests for one scope until the transaction ends."""

    def upgrade_queued(self, run_id: str, trigger: str) -> bool:
        """Give a queued run a stronger trigger; False when it is queued no more (a worker
        claimed it since it was read: it runs with the trigger it was claimed with)."""

    def claim_next(
        self, worker_id: str, now: datetime, stale_before: datetime, *, run_id: str | None = None
    ) -> SyncRun | None:
        """Start the oldest queued run (or `run_id`) whose scope has no live run: stage
        computing, owned by `worker_id`. None when there is nothing to start."""

    def heartbeat(self, run_id: str, worker_id: str, now: datetime) -> bool:
        """Prove the run's worker is alive; False when the run was taken from it."""

    def requeue_own(self, run_id: str, worker_id: str, now: datetime, note: str) -> bool:
        """`worker_id` gives its running run back to the queue, saying why in the run's
        history; False when the run is no longer its own (taken over meanwhile)."""

    def requeue_stale(
        self, stale_before: datetime, now: datetime, *, keep_worker: str | None = None
    ) -> list[str]:
        """Runs whose worker stopped proving it is alive go back to the queue, to be run again
        by a live worker (it resumes past computing when it had got there). `keep_worker`:
        the caller's own runs, which it knows are alive, are left alone. Returns their ids."""
