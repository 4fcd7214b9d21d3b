"""Scheduled syncs: what admins do with schedules, and the scheduler's tick.

A schedule asks for a sync run of its scope at the times its rule gives
(`domain.schedule_rules`). The tick fires every schedule whose `next_run_at` has passed:

- it claims the slot with a compare-and-set on `next_run_at` (`ScheduleRepo.advance`), so two
  scheduler processes (two `gradesync serve`, or a serve and a procrastinate periodic task)
  can never both fire one slot;
- it moves `next_run_at` to the first slot after *now*: however many slots passed while the
  service was down, the schedule runs once, and the log says how many were missed;
- it asks the engine for a run (`request_run`); when a run of the same scope is already
  queued or running (someone pressed "Sync now"), the engine joins it and the log says
  "joined run X" instead of starting a second job.

Every action (created, edited, paused, resumed, deleted, fired, run now) is written to the
schedule's log with who did it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from gradesync.domain.errors import InvalidInput, NotFound, Problems
from gradesync.domain.local_time import in_zone, strftime
from gradesync.domain.model import (
    RunScope,
    Schedule,
    ScheduleAction,
    ScheduleEvent,
    ScheduleKind,
    SyncRun,
    Trigger,
)
from gradesync.domain.run_history import shown_stages
from gradesync.domain.schedule_rules import (
    ScheduleRule,
    count_slots,
    describe,
    next_run,
    parse_kind,
    parse_rule,
    parse_time_zone,
    resolve_local,
    upcoming,
)
from gradesync.services.clock import Clock
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.runs import scope_of

log = logging.getLogger(__name__)

__all__ = [
    "SCHEDULE_TRIGGERS",
    "Firing",
    "HistoryEntry",
    "RunRequester",
    "ScheduleInfo",
    "ScheduleService",
]

# What a schedule may ask for: a normal sync of its scope, or a full remaster.
SCHEDULE_TRIGGERS = (Trigger.SCHEDULE, Trigger.REMASTER)


class RunRequester(Protocol):
    """The engine's `request_run` with its dependencies bound: queue a run of `scope`, or
    join the one already queued or running for it. Returns (run, joined)."""

    def __call__(
        self, scope: RunScope, trigger: Trigger, actor: str, *, schedule_id: str | None = None
    ) -> tuple[SyncRun, bool]: ...


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule as lists show it: the row, its rule in words and its next few runs."""

    schedule: Schedule
    description: str
    upcoming: list[datetime]


@dataclass(frozen=True, slots=True)
class Firing:
    """What one tick did for one due schedule."""

    schedule_id: str
    slot_at: datetime
    run_id: str
    joined: bool
    missed: int


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One log line, with the run it started or joined as that run stands now."""

    event: ScheduleEvent
    run: SyncRun | None
    stages: list[dict[str, Any]] | None = None  # the run's stage history


def _new_id() -> str:
    return f"sch_{secrets.token_hex(8)}"


def _actor(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor:
        raise InvalidInput.one("actor", "required", "say who is doing this (recorded in history)")
    return actor


def _first_run(value: datetime | str | None) -> datetime | None:
    """A first run as given, or read from a form's text (ISO date and time; empty: none)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)  # naive: a local time in the schedule's zone
    except ValueError:
        raise InvalidInput.one(
            "first_run_at",
            "datetime",
            f"the first run is a date and time, e.g. 2025-09-01 07:00, not {text!r}",
        ) from None


class ScheduleService:
    """Schedules of every tenant. `on_change` is called after a change that can move the
    soonest due time (the in-process scheduler loop uses it to re-plan its sleep)."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        request_run: RunRequester,
        *,
        on_change: Callable[[], None] | None = None,
        upcoming_count: int = 3,
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._request_run = request_run
        self._on_change = on_change
        self._upcoming_count = upcoming_count

    # --- reading ------------------------------------------------------------------------------

    def all(self, tenant_id: str) -> list[ScheduleInfo]:
        with self._uow() as uow:
            schedules = uow.schedules.all(tenant_id)
        now = self._clock.now()
        return [self._info(s, now) for s in schedules]

    def get(self, tenant_id: str, schedule_id: str) -> ScheduleInfo:
        with self._uow() as uow:
            s = self._load(uow, tenant_id, schedule_id)
        return self._info(s, self._clock.now())

    def history(
        self,
        tenant_id: str,
        schedule_id: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[HistoryEntry]:
        """The log of one schedule (or of all the tenant's schedules), newest first, with
        each firing's run (stages, counts, outcome) as it stands now. `until` is exclusive."""
        if limit < 1 or limit > 1000:
            raise InvalidInput.one("limit", "range", "limit must be between 1 and 1000")
        if since is not None and until is not None and until <= since:
            raise InvalidInput.one("until", "after_since", "until must be later than since")
        with self._uow() as uow:
            events = uow.schedules.events(
                tenant_id, schedule_id=schedule_id, since=since, until=until, limit=limit
            )
            if (
                schedule_id is not None
                and not events
                and uow.schedules.get(schedule_id, tenant_id) is None
            ):
                raise NotFound("schedule", schedule_id)
            # the runs and their stages in two statements, not one per line
            ids = list({e.run_id for e in events if e.run_id is not None})
            runs = uow.runs.get_many(ids, tenant_id)
            stages = uow.runs.stages_many(list(runs))
        return [
            HistoryEntry(
                e,
                runs.get(e.run_id),
                shown_stages(stages[e.run_id]) if e.run_id in stages else None,
            )
            if e.run_id
            else HistoryEntry(e, None)
            for e in events
        ]

    def next_due_at(self) -> datetime | None:
        """When the soonest unpaused schedule of any tenant is due."""
        with self._uow() as uow:
            return uow.schedules.next_due_at()

    def preview(
        self,
        kind: ScheduleKind | str,
        spec: str,
        time_zone: str,
        *,
        first_run_at: datetime | None = None,
        count: int = 5,
    ) -> list[datetime]:
        """The next `count` runs a schedule with this rule would make, without saving it."""
        rule = parse_rule(kind, spec)
        zone = parse_time_zone(time_zone)
        now = self._clock.now()
        anchor = self._anchor(rule, zone, first_run_at, now)
        return upcoming(rule, zone, now - timedelta(microseconds=1), count, anchor=anchor)

    # --- changing -----------------------------------------------------------------------------

    def create(
        self,
        tenant_id: str,
        actor: str,
        *,
        kind: ScheduleKind | str,
        spec: str,
        time_zone: str | None = None,
        destination_id: str | None = None,
        course_id: str | None = None,
        activity_ids: Sequence[str] = (),
        first_run_at: datetime | str | None = None,
        trigger: Trigger | str = Trigger.SCHEDULE,
    ) -> ScheduleInfo:
        """Add a schedule. A naive `first_run_at` is a local time in the schedule's zone (text,
        as a form sends it, is read as an ISO date and time, its problem named with the
        others). Without a time zone, a course-scoped schedule uses the course's zone."""
        checks = Problems()
        who = checks.check(lambda: _actor(actor))
        first = checks.check(lambda: _first_run(first_run_at))
        rule = checks.check(lambda: parse_rule(kind, spec))
        trig = checks.check(lambda: self._trigger(trigger))
        now = self._clock.now()
        with self._uow() as uow:
            if uow.tenants.get(tenant_id) is None:
                raise NotFound("tenant", tenant_id)
            scope = checks.check(
                lambda: scope_of(uow, tenant_id, destination_id, course_id, activity_ids)
            )
            zone = self._checked_zone(checks, uow, rule, time_zone, scope)
            checks.raise_any()
            # raise_any raised unless every check passed
            assert who is not None and rule is not None and trig is not None
            assert scope is not None and zone is not None
            actor = who
            anchor = self._anchor(rule, zone, first, now)
            s = Schedule(
                id=_new_id(),
                tenant_id=tenant_id,
                scope=scope,
                kind=rule.kind,
                spec=rule.spec,
                time_zone=zone.key,
                posted_by=actor,
                trigger=trig,
                first_run_at=anchor,
                next_run_at=self._first_slot(rule, zone, anchor, now),
                created_at=now,
            )
            # what the answer shows, worked out before anything is stored: a schedule that
            # cannot be shown is not saved
            info = self._info(s, now)
            uow.schedules.save(s)
            self._log(uow, s, ScheduleAction.CREATED, actor, now, describe(rule))
            uow.commit()
        self._changed()
        return info

    def edit(
        self,
        tenant_id: str,
        schedule_id: str,
        actor: str,
        *,
        kind: ScheduleKind | str | None = None,
        spec: str | None = None,
        time_zone: str | None = None,
        first_run_at: datetime | str | None = None,
        scope: RunScope | None = None,
        trigger: Trigger | str | None = None,
    ) -> ScheduleInfo:
        """Change a schedule; only the given fields change (an empty time zone: the default
        one, as on create; a first run as on create). The next run is recomputed (a paused
        schedule stays paused). Changing the kind needs a spec for the new kind."""
        checks = Problems()
        who = checks.check(lambda: _actor(actor))
        first = checks.check(lambda: _first_run(first_run_at))
        trig = None if trigger is None else checks.check(lambda: self._trigger(trigger))
        now = self._clock.now()
        with self._uow() as uow:
            s = self._load(uow, tenant_id, schedule_id, for_update=True)
            new_kind = s.kind if kind is None else checks.check(lambda: parse_kind(kind))
            rule: ScheduleRule | None = None
            if new_kind is not None and new_kind is not s.kind and spec is None:
                checks.add("spec", "required", "changing the kind needs a spec for the new kind")
            elif new_kind is not None:
                rule = checks.check(lambda: parse_rule(new_kind, s.spec if spec is None else spec))
            new_scope: RunScope | None = s.scope
            if scope is not None:
                new_scope = checks.check(
                    lambda: scope_of(
                        uow, tenant_id, scope.destination_id, scope.course_id, scope.activity_ids
                    )
                )
            # None keeps the zone; "" is the default one (the course's), as on create
            zone = (
                parse_time_zone(s.time_zone)
                if time_zone is None
                else self._checked_zone(checks, uow, rule, time_zone, new_scope)
            )
            checks.raise_any()
            # raise_any raised unless every check passed
            assert who is not None and rule is not None
            assert new_scope is not None and zone is not None
            actor = who
            anchor = s.first_run_at
            rule_changed = (rule.kind, rule.spec, zone.key) != (s.kind, s.spec, s.time_zone)
            if (
                first is not None
                or anchor is None
                # a wall-clock schedule that has not started yet starts at the new rule's
                # first slot; an interval keeps its grid
                or (rule_changed and rule.interval is None and anchor > now)
            ):
                anchor = self._anchor(rule, zone, first, now)
            # checked while paused too, so that resuming finds a next run
            nxt = self._first_slot(rule, zone, anchor, now)
            changed = replace(
                s,
                kind=rule.kind,
                spec=rule.spec,
                time_zone=zone.key,
                scope=new_scope,
                trigger=trig or s.trigger,
                first_run_at=anchor,
                next_run_at=None if s.paused_at is not None else nxt,
            )
            what = _differences(s, changed)
            info = self._info(changed, now)  # before storing, as on create
            uow.schedules.save(changed)
            self._log(
                uow, changed, ScheduleAction.EDITED, actor, now, what or "saved without changes"
            )
            uow.commit()
        self._changed()
        return info

    def pause(self, tenant_id: str, schedule_id: str, actor: str) -> ScheduleInfo:
        """Stop future runs; a paused schedule shows when it was paused and has no next run.
        Pausing a paused schedule changes nothing."""
        actor = _actor(actor)
        now = self._clock.now()
        with self._uow() as uow:
            s = self._load(uow, tenant_id, schedule_id, for_update=True)
            if s.paused_at is None:
                s = replace(s, paused_at=now, next_run_at=None)
                uow.schedules.set_paused(s.id, tenant_id, paused_at=now, next_run_at=None)
                self._log(uow, s, ScheduleAction.PAUSED, actor, now)
                uow.commit()
        self._changed()
        return self._info(s, now)

    def resume(self, tenant_id: str, schedule_id: str, actor: str) -> ScheduleInfo:
        """Allow runs again from the next slot after now (slots passed while paused are not
        made up)."""
        actor = _actor(actor)
        now = self._clock.now()
        with self._uow() as uow:
            s = self._load(uow, tenant_id, schedule_id, for_update=True)
            if s.paused_at is not None:
                rule, zone = self._rule(s)
                nxt = next_run(rule, zone, now, anchor=s.first_run_at)
                uow.schedules.set_paused(s.id, tenant_id, paused_at=None, next_run_at=nxt)
                self._log(
                    uow,
                    s,
                    ScheduleAction.RESUMED,
                    actor,
                    now,
                    f"paused since {_local(s.paused_at, s.time_zone)}",
                )
                s = replace(s, paused_at=None, next_run_at=nxt)
                uow.commit()
        self._changed()
        return self._info(s, now)

    def pause_all(self, tenant_id: str, actor: str) -> list[ScheduleInfo]:
        """Pause every running schedule of the tenant; returns the ones this paused."""
        actor = _actor(actor)
        now = self._clock.now()
        paused: list[Schedule] = []
        with self._uow() as uow:
            for s in uow.schedules.all(tenant_id):
                if s.paused_at is None:
                    uow.schedules.set_paused(s.id, tenant_id, paused_at=now, next_run_at=None)
                    s = replace(s, paused_at=now, next_run_at=None)
                    self._log(uow, s, ScheduleAction.PAUSED, actor, now, "pause all")
                    paused.append(s)
            uow.commit()
        self._changed()
        return [self._info(s, now) for s in paused]

    def delete(self, tenant_id: str, schedule_id: str, actor: str) -> None:
        """Remove a schedule. Its log and the runs it made stay in history."""
        actor = _actor(actor)
        now = self._clock.now()
        with self._uow() as uow:
            s = self._load(uow, tenant_id, schedule_id, for_update=True)
            uow.schedules.delete(schedule_id, tenant_id)
            self._log(uow, s, ScheduleAction.DELETED, actor, now, _words(s))
            uow.commit()
        self._changed()

    def run_now(self, tenant_id: str, schedule_id: str, actor: str) -> tuple[SyncRun, bool]:
        """Run the schedule's scope now, recorded with who pressed the button. Works on a
        paused schedule too and does not move its next run. Returns (run, joined)."""
        actor = _actor(actor)
        with self._uow() as uow:
            s = self._load(uow, tenant_id, schedule_id)
        trigger = Trigger.MANUAL if s.trigger is Trigger.SCHEDULE else s.trigger
        run, joined = self._request_run(s.scope, trigger, actor, schedule_id=s.id)
        now = self._clock.now()
        with self._uow() as uow:
            self._log(
                uow,
                s,
                ScheduleAction.RUN_NOW,
                actor,
                now,
                _run_message(run, joined),
                run_id=run.id,
                joined=joined,
            )
            uow.commit()
        return run, joined

    # --- the scheduler ------------------------------------------------------------------------

    def tick(self) -> list[Firing]:
        """Fire every schedule that is due now. Safe to call from several processes at once:
        each slot fires once. A schedule that fails is logged and left for the next tick."""
        now = self._clock.now()
        with self._uow() as uow:
            due = uow.schedules.due(now)
        fired: list[Firing] = []
        for s in sorted(due, key=lambda x: (x.next_run_at or now, x.id)):
            try:
                f = self._fire(s, now)
            except Exception:
                log.exception("schedule %s could not be fired; will retry next tick", s.id)
                continue
            if f is not None:
                fired.append(f)
        return fired

    def _fire(self, s: Schedule, now: datetime) -> Firing | None:
        assert s.next_run_at is not None  # due() only returns schedules with a next run
        slot = s.next_run_at
        try:
            rule, zone = self._rule(s)
        except InvalidInput as exc:
            # Stored before a rule changed (or tzdata dropped its zone): stop, say why.
            with self._uow() as uow:
                if uow.schedules.advance(
                    s.id, expected_next_run_at=slot, next_run_at=slot, last_run_at=s.last_run_at
                ):
                    uow.schedules.set_paused(s.id, s.tenant_id, paused_at=now, next_run_at=None)
                    self._log(uow, s, ScheduleAction.PAUSED, "scheduler", now, f"paused: {exc}")
                uow.commit()
            return None
        # None once no slot is left before year 10000: the schedule then has no next run
        nxt = next_run(rule, zone, now, anchor=s.first_run_at)
        # Slots strictly after the one being fired and not later than now: runs the service
        # missed while it was down. They collapse into this one run.
        missed = count_slots(
            rule, zone, slot + timedelta(microseconds=1), now, anchor=s.first_run_at
        )
        with self._uow() as uow:
            claimed = uow.schedules.advance(
                s.id, expected_next_run_at=slot, next_run_at=nxt, last_run_at=now
            )
            uow.commit()
        if not claimed:
            return None  # another scheduler fired this slot, or it was paused or edited
        try:
            run, joined = self._request_run(s.scope, s.trigger, s.posted_by, schedule_id=s.id)
        except InvalidInput as exc:
            # Its scope names what no longer exists (a destination, course or activity
            # deleted since): no later tick can run it. Stop, and say why.
            with self._uow() as uow:
                uow.schedules.set_paused(s.id, s.tenant_id, paused_at=now, next_run_at=None)
                self._log(uow, s, ScheduleAction.PAUSED, "scheduler", now, f"paused: {exc}")
                uow.commit()
            return None
        except Exception:
            # Give the slot back so the next tick tries again (unless someone changed it).
            with self._uow() as uow:
                uow.schedules.advance(
                    s.id, expected_next_run_at=nxt, next_run_at=slot, last_run_at=s.last_run_at
                )
                uow.commit()
            raise
        message = _run_message(run, joined)
        if missed:
            message += (
                f"; {missed}{'+' if missed >= 1000 else ''} later slot(s) passed while the "
                "scheduler was not running and were collapsed into this run"
            )
        with self._uow() as uow:
            self._log(
                uow,
                s,
                ScheduleAction.FIRED,
                "scheduler",
                now,
                message,
                run_id=run.id,
                joined=joined,
                slot_at=slot,
                missed=missed,
            )
            uow.commit()
        log.info("schedule %s fired for %s: %s", s.id, slot.isoformat(), message)
        return Firing(s.id, slot, run.id, joined, missed)

    # --- helpers ------------------------------------------------------------------------------

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    @staticmethod
    def _load(
        uow: UnitOfWork, tenant_id: str, schedule_id: str, *, for_update: bool = False
    ) -> Schedule:
        """for_update: held to the commit by a change decided from it. Read unlocked, another
        change committed meanwhile (PostgreSQL's read committed) would be written over: an
        edit saving the schedule whole put a pause made meanwhile back to running, and a
        schedule deleted meanwhile back in place."""
        s = uow.schedules.get(schedule_id, tenant_id, for_update=for_update)
        if s is None:
            raise NotFound("schedule", schedule_id)
        return s

    @staticmethod
    def _rule(s: Schedule) -> tuple[ScheduleRule, ZoneInfo]:
        return parse_rule(s.kind, s.spec), parse_time_zone(s.time_zone)

    def _info(self, s: Schedule, now: datetime) -> ScheduleInfo:
        try:
            rule, zone = self._rule(s)
        except InvalidInput:
            # Stored before a rule changed (or tzdata dropped its zone): listed as stored,
            # with no runs to come (the scheduler pauses it, saying why, at its next run),
            # so that one such schedule does not hide the others.
            return ScheduleInfo(s, _words(s), [])
        nexts: list[datetime] = []
        if s.next_run_at is not None and self._upcoming_count > 0:
            later = upcoming(
                rule, zone, s.next_run_at, self._upcoming_count - 1, anchor=s.first_run_at
            )
            nexts = [s.next_run_at, *later]
        return ScheduleInfo(s, describe(rule), nexts)

    @staticmethod
    def _trigger(trigger: Trigger | str) -> Trigger:
        try:
            t = Trigger(trigger)
        except ValueError:
            t = None
        if t not in SCHEDULE_TRIGGERS:
            raise InvalidInput.one(
                "trigger",
                "one_of",
                f"a schedule's trigger is {' or '.join(x.value for x in SCHEDULE_TRIGGERS)}, "
                f"not {str(trigger)!r}",  # a Trigger's repr is Python's, not the value sent
            )
        assert t is not None
        return t

    def _checked_zone(
        self,
        checks: Problems,
        uow: UnitOfWork,
        rule: ScheduleRule | None,
        time_zone: str | None,
        scope: RunScope | None,
    ) -> ZoneInfo | None:
        """The zone given, else the default one (which needs a valid rule and scope to find);
        a problem goes to `checks`."""
        if time_zone:
            return checks.check(lambda: parse_time_zone(time_zone))
        if rule is None or scope is None:
            return None
        return checks.check(lambda: parse_time_zone(self._zone_name(uow, rule, None, scope)))

    @staticmethod
    def _zone_name(
        uow: UnitOfWork, rule: ScheduleRule, time_zone: str | None, scope: RunScope
    ) -> str:
        if time_zone:
            return time_zone
        if scope.course_id is not None:
            course = uow.courses.get(scope.tenant_id, scope.course_id)
            if course is not None:
                return course.time_zone
        if rule.kind is ScheduleKind.INTERVAL:
            return "UTC"
        raise InvalidInput.one(
            "time_zone",
            "required",
            f"a {rule.kind.value} schedule runs at a local time: give its IANA time zone "
            "(e.g. America/New_York)",
        )

    @staticmethod
    def _anchor(
        rule: ScheduleRule, zone: ZoneInfo, first_run_at: datetime | None, now: datetime
    ) -> datetime:
        """The first run: as given (naive = local time in the zone), else the first slot."""
        if first_run_at is not None:
            try:
                if first_run_at.tzinfo is None or first_run_at.utcoffset() is None:
                    return resolve_local(first_run_at, zone)
                first_run_at.astimezone(UTC)
                return first_run_at
            except OverflowError:
                raise InvalidInput.one(
                    "first_run_at",
                    "range",
                    "the first run must lie between years 1 and 9999 once converted to UTC",
                ) from None
        if rule.interval is not None:
            return now + rule.interval
        return ScheduleService._first_slot(rule, zone, None, now)

    @staticmethod
    def _first_slot(
        rule: ScheduleRule, zone: ZoneInfo, anchor: datetime | None, now: datetime
    ) -> datetime:
        """The next run of a schedule being saved; refused when it has none (its rule has no
        slot from its first run to the end of year 9999), as it would never run."""
        nxt = next_run(rule, zone, now - timedelta(microseconds=1), anchor=anchor)
        if nxt is None:
            raise InvalidInput.one(
                "first_run_at",
                "range",
                f"the rule {describe(rule)!r} has no run from the first run to the end of "
                "year 9999: give an earlier first run",
            )
        return nxt

    @staticmethod
    def _log(
        uow: UnitOfWork,
        s: Schedule,
        action: ScheduleAction,
        actor: str,
        at: datetime,
        message: str | None = None,
        *,
        run_id: str | None = None,
        joined: bool = False,
        slot_at: datetime | None = None,
        missed: int = 0,
    ) -> None:
        uow.schedules.add_event(
            ScheduleEvent(
                tenant_id=s.tenant_id,
                schedule_id=s.id,
                action=action,
                actor=actor,
                at=at,
                run_id=run_id,
                joined=joined,
                slot_at=slot_at,
                missed=missed,
                message=message,
            )
        )


def _run_message(run: SyncRun, joined: bool) -> str:
    if joined:
        return (
            f"joined run {run.id} ({run.trigger.value} by {run.actor}, {run.stage.value}) "
            "already going for this scope"
        )
    return f"started run {run.id}"


def _words(s: Schedule) -> str:
    """The schedule's rule in words; as stored ("cron 0 7 * * *") when it no longer parses."""
    try:
        return describe(parse_rule(s.kind, s.spec))
    except InvalidInput:
        return f"{s.kind.value} {s.spec}"


def _differences(old: Schedule, new: Schedule) -> str:
    """ "daily at 01:30 -> daily at 02:30; time zone America/New_York -> Europe/Berlin" for the
    edit's log line: the schedule's words, and times in its own zone, as its list shows them."""
    rules = (_words(s) for s in (old, new))
    first_runs = (_local(s.first_run_at, s.time_zone) for s in (old, new))
    parts = [
        f"{name}{a} -> {b}"
        for name, a, b in (
            ("", *rules),
            ("time zone ", old.time_zone, new.time_zone),
            ("first run ", *first_runs),
            ("type ", _type_words(old.trigger), _type_words(new.trigger)),
            ("scope ", _scope_words(old.scope), _scope_words(new.scope)),
        )
        if a != b
    ]
    return "; ".join(parts)


def _type_words(trigger: Trigger) -> str:
    return "remaster" if trigger is Trigger.REMASTER else "grade sync"


def _scope_words(scope: RunScope) -> str:
    words = f"course {scope.course_id}" if scope.course_id else "all courses"
    if scope.activity_ids:
        words += f", activities {', '.join(sorted(scope.activity_ids))}"
    if scope.destination_id:
        words += f" to {scope.destination_id}"
    return words


def _local(at: datetime | None, zone: str) -> str:
    if at is None:
        return "-"
    local = in_zone(at, zone)  # in UTC when the zone's clock cannot show it
    return f"{strftime(local, '%Y-%m-%d %H:%M')} {local.tzname() or zone}"
