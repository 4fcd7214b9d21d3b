"""What a remaster could not rewrite goes with the next run.

A remaster sends every result of its scope again and rewrites every column. Results it did
not deliver (the destination failed or refused them, was paused, or the run stopped before
them) and columns it could not provision are owed: the next run whose scope covers the
remaster's rewrites the columns and sends those results again, changed or not, with every
result of those columns (grades are not held for a column whose rewrite failed: they reached
it as it was). Both runs say so: the next run's `counts.carried` and a note in its history,
the remaster's `counts.carried_to`. A remaster's debt is carried once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from gradesync.domain.model import RunOutcome, RunScope, RunStage, SyncRun, Trigger
from gradesync.services.ports import UnitOfWorkFactory

# (destination, course, activity)
Column = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Carry:
    from_run: str
    # the columns the remaster could not provision, "destination/activity"
    column_names: frozenset[str] = frozenset()
    results: dict[Column, list[str]] = field(default_factory=dict)  # learners per column

    @property
    def columns(self) -> int:
        return len(self.column_names)

    @property
    def result_count(self) -> int:
        return sum(len(people) for people in self.results.values())

    def owes_column(self, destination_id: str, activity_id: str) -> bool:
        return f"{destination_id}/{activity_id}" in self.column_names

    def describe(self) -> str:
        return (
            f"carries {self.result_count} result(s) and {self.columns} column(s) that "
            f"remaster {self.from_run} could not rewrite"
        )


def covers(outer: RunScope, inner: RunScope) -> bool:
    """Every result of `inner` is in `outer`."""
    if outer.tenant_id != inner.tenant_id:
        return False
    if outer.destination_id and outer.destination_id != inner.destination_id:
        return False
    if outer.course_id and outer.course_id != inner.course_id:
        return False
    if outer.activity_ids:
        return bool(inner.activity_ids) and set(inner.activity_ids) <= set(outer.activity_ids)
    return True


def owed(uow_factory: UnitOfWorkFactory, run: SyncRun) -> Carry | None:
    """What the latest remaster within `run`'s scope left undone, unless carried already.
    A remaster owes nothing to others: it rewrites everything itself."""
    if run.trigger is Trigger.REMASTER:
        return None
    with uow_factory() as uow:
        # those of its course and destination only (every one, when it names none): the
        # tenant's latest of any scope would hide a course's behind other courses' remasters
        remasters = uow.runs.history(
            run.scope.tenant_id,
            course_id=run.scope.course_id,
            destination_id=run.scope.destination_id,
            trigger=Trigger.REMASTER.value,
            limit=20,
        )
        for m in remasters:  # newest first
            if m.id == run.id or m.stage is not RunStage.FINISHED:
                continue
            if not covers(run.scope, m.scope):
                continue
            if m.outcome is RunOutcome.SUCCEEDED:
                return None
            if m.counts.get("carried_to") not in (None, run.id):  # a resumed run carries again
                return None
            if m.started_at is None:
                return None
            rows = uow.ledger.not_delivered_since(
                m.scope.tenant_id,
                m.started_at,
                destination_id=m.scope.destination_id,
                course_id=m.scope.course_id,
                activity_ids=m.scope.activity_ids or None,
            )
            columns = frozenset(str(c) for c in m.counts.get("columns_failed") or ())
            # a column it could not rewrite took its grades as it was: they go again too,
            # after it (those sent before this run began)
            until = run.started_at or m.finished_at or m.started_at
            for dest, activities in _by_destination(columns).items():
                rows += uow.ledger.not_delivered_since(
                    m.scope.tenant_id,
                    until,
                    destination_id=dest,
                    course_id=m.scope.course_id,
                    activity_ids=activities,
                )
            rows = sorted(set(rows))
            if not rows and not columns:
                return None
            results: dict[Column, list[str]] = defaultdict(list)
            for dest, course, activity, person in rows:
                results[(dest, course, activity)].append(person)
            return Carry(m.id, columns, dict(results))
    return None


def _by_destination(columns: frozenset[str]) -> dict[str, list[str]]:
    """ "destination/activity" names as activities per destination."""
    out: dict[str, list[str]] = defaultdict(list)
    for name in sorted(columns):
        dest, _, activity = name.partition("/")
        out[dest].append(activity)
    return out


def record(uow_factory: UnitOfWorkFactory, run_id: str, carry: Carry) -> None:
    """Note the carry in both runs' records (the remaster's debt is then paid)."""
    with uow_factory() as uow:
        remaster = uow.runs.get(carry.from_run)
        if remaster is not None:
            uow.runs.set_counts(remaster.id, {**remaster.counts, "carried_to": run_id})
        uow.runs.note(run_id, carry.describe())
        uow.commit()
