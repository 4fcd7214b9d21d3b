"""The schedule service on SQLite and PostgreSQL: admin actions, the tick, history."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from gradesync.domain.errors import InvalidInput, NotFound
from gradesync.domain.model import (
    RunScope,
    RunStage,
    Schedule,
    ScheduleAction,
    ScheduleKind,
    SyncRun,
    Trigger,
)
from gradesync.services import destination_admin, schedules
from gradesync.services.schedules import ScheduleService
from tests.schedules.conftest import T0, Env
from tests.support.races import AfterFirstRead


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def daily(env: Env, spec: str = "01:30", **kw: object) -> Schedule:
    info = env.service.create(
        "t1", "alice", kind="daily", spec=spec, course_id="c1", destination_id="sis", **kw
    )
    return info.schedule


def stored(env: Env, schedule_id: str) -> Schedule:
    with env.db.uow() as uow:
        s = uow.schedules.get(schedule_id)
    assert s is not None
    return s


def test_create_takes_the_course_zone_and_computes_runs_across_fall_back(env: Env) -> None:
    info = env.service.create(
        "t1", "alice", kind="daily", spec="1:30", course_id="c1", destination_id="sis"
    )
    s = info.schedule
    assert (s.kind, s.spec, s.time_zone, s.posted_by) == (
        ScheduleKind.DAILY,
        "01:30",
        "America/New_York",
        "alice",
    )
    assert s.scope == RunScope("t1", "sis", "c1")
    assert s.first_run_at == s.next_run_at == utc(2024, 11, 2, 5, 30)
    # 01:30 EDT on the fall-back day, then 01:30 EST
    assert info.upcoming == [
        utc(2024, 11, 2, 5, 30),
        utc(2024, 11, 3, 5, 30),
        utc(2024, 11, 4, 6, 30),
    ]
    assert info.description == "daily at 01:30"
    assert [i.schedule.id for i in env.service.all("t1")] == [s.id]
    assert env.service.all("t2") == []
    assert env.changes  # the scheduler loop was told
    log = env.service.history("t1", s.id)
    assert [(e.event.action, e.event.actor) for e in log] == [(ScheduleAction.CREATED, "alice")]


@pytest.mark.parametrize(
    ("kwargs", "field", "rule"),
    [
        ({"kind": "daily", "spec": "01:30"}, "time_zone", "required"),
        (
            {"kind": "daily", "spec": "01:30", "time_zone": "Mars/Base"},
            "time_zone",
            "iana_time_zone",
        ),
        ({"kind": "daily", "spec": "1:30pm", "time_zone": "UTC"}, "spec", "time_format"),
        ({"kind": "sometimes", "spec": "x"}, "kind", "one_of"),
        (
            {"kind": "interval", "spec": "15m", "destination_id": "nope"},
            "destination_id",
            "unknown_destination",
        ),
        ({"kind": "interval", "spec": "15m", "course_id": "nope"}, "course_id", "unknown_course"),
        ({"kind": "interval", "spec": "15m", "activity_ids": ["a1"]}, "course_id", "required"),
        (
            {"kind": "interval", "spec": "15m", "course_id": "c1", "activity_ids": ["a1"]},
            "activity_ids[0]",
            "unknown_activity",
        ),
        ({"kind": "interval", "spec": "15m", "trigger": "auto"}, "trigger", "one_of"),
    ],
)
def test_bad_input_names_field_and_rule_and_changes_nothing(
    env: Env, kwargs: dict[str, object], field: str, rule: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        env.service.create("t1", "alice", **kwargs)  # type: ignore[arg-type]
    assert [(p.field, p.rule) for p in err.value.problems] == [(field, rule)]
    assert env.service.all("t1") == []
    assert env.service.history("t1") == []


def test_actor_is_required_and_tenant_must_exist(env: Env) -> None:
    with pytest.raises(InvalidInput) as err:
        env.service.create("t1", " ", kind="interval", spec="15m")
    assert err.value.problems[0].field == "actor"
    with pytest.raises(NotFound):
        env.service.create("ghost", "alice", kind="interval", spec="15m")


def test_interval_defaults_to_utc_and_a_naive_first_run_is_local(env: Env) -> None:
    s = env.service.create("t1", "alice", kind="interval", spec="15m").schedule
    assert s.time_zone == "UTC"
    assert s.next_run_at == T0 + timedelta(minutes=15)
    s2 = env.service.create(
        "t1",
        "alice",
        kind="interval",
        spec="2h",
        time_zone="America/New_York",
        first_run_at=datetime(2024, 11, 1, 9, 0),  # 09:00 EDT
    ).schedule
    assert s2.first_run_at == s2.next_run_at == utc(2024, 11, 1, 13, 0)


def test_tick_fires_a_due_schedule_once_and_moves_to_the_next_slot(env: Env) -> None:
    s = daily(env)
    assert env.service.tick() == []  # not due yet
    env.clock.set(utc(2024, 11, 2, 5, 30))
    fired = env.service.tick()
    assert [(f.schedule_id, f.slot_at, f.joined, f.missed) for f in fired] == [
        (s.id, utc(2024, 11, 2, 5, 30), False, 0)
    ]
    assert env.service.tick() == []  # the slot is spent
    assert env.requester.calls == [(s.scope, Trigger.SCHEDULE, "alice", s.id)]
    after = stored(env, s.id)
    assert after.next_run_at == utc(2024, 11, 3, 5, 30)
    assert after.last_run_at == utc(2024, 11, 2, 5, 30)
    entry = env.service.history("t1", s.id)[0]
    assert entry.event.action is ScheduleAction.FIRED
    assert entry.event.run_id == fired[0].run_id
    assert entry.run is not None and entry.run.trigger is Trigger.SCHEDULE
    assert entry.run.actor == "alice"  # runs in the name of who posted the schedule


def test_missed_slots_while_down_collapse_into_one_run(env: Env) -> None:
    s = daily(env)
    env.clock.set(utc(2024, 11, 6, 12, 0))  # down from before Nov 2 01:30 until Nov 6 07:00
    fired = env.service.tick()
    assert len(fired) == 1 and fired[0].missed == 4  # Nov 3, 4, 5, 6 collapsed
    assert len(env.requester.calls) == 1
    assert env.service.tick() == []
    assert stored(env, s.id).next_run_at == utc(2024, 11, 7, 6, 30)
    event = env.service.history("t1", s.id)[0].event
    assert event.missed == 4 and "4 later slot(s)" in (event.message or "")


def test_pause_stops_runs_and_resume_does_not_make_them_up(env: Env) -> None:
    s = daily(env)
    env.clock.set(utc(2024, 11, 1, 13, 0))
    paused = env.service.pause("t1", s.id, "bob").schedule
    assert paused.paused_at == utc(2024, 11, 1, 13, 0) and paused.next_run_at is None
    assert env.service.get("t1", s.id).upcoming == []
    assert env.service.pause("t1", s.id, "bob").schedule.paused_at == paused.paused_at  # no-op
    env.clock.set(utc(2024, 11, 10, 12, 0))
    assert env.service.tick() == []
    resumed = env.service.resume("t1", s.id, "carol").schedule
    assert resumed.paused_at is None
    assert resumed.next_run_at == utc(2024, 11, 11, 6, 30)
    assert env.service.tick() == []
    actions = [(e.event.action, e.event.actor) for e in env.service.history("t1", s.id)]
    assert actions == [
        (ScheduleAction.RESUMED, "carol"),
        (ScheduleAction.PAUSED, "bob"),
        (ScheduleAction.CREATED, "alice"),
    ]
    assert env.requester.calls == []


def test_pause_all_pauses_only_this_tenants_running_schedules(env: Env) -> None:
    a, b = daily(env), daily(env, "07:00")
    env.service.pause("t1", b.id, "bob")
    other = env.service.create("t2", "zoe", kind="interval", spec="1h").schedule
    paused = env.service.pause_all("t1", "carol")
    assert [i.schedule.id for i in paused] == [a.id]
    assert all(i.schedule.paused_at is not None for i in env.service.all("t1"))
    assert stored(env, other.id).paused_at is None


def test_run_now_records_who_pressed_it_and_joins_a_running_sync(env: Env) -> None:
    s = daily(env)
    env.service.pause("t1", s.id, "bob")
    run, joined = env.service.run_now("t1", s.id, "dave")
    assert not joined and run.trigger is Trigger.MANUAL and run.actor == "dave"
    again, joined2 = env.service.run_now("t1", s.id, "erin")
    assert joined2 and again.id == run.id
    log = env.service.history("t1", s.id)
    assert [(e.event.action, e.event.actor, e.event.joined) for e in log[:2]] == [
        (ScheduleAction.RUN_NOW, "erin", True),
        (ScheduleAction.RUN_NOW, "dave", False),
    ]
    assert f"joined run {run.id}" in (log[0].event.message or "")
    assert stored(env, s.id).paused_at is not None  # run now does not resume


def test_a_due_slot_joins_a_manual_run_of_the_same_scope(env: Env) -> None:
    s = daily(env)
    manual, _ = env.requester(s.scope, Trigger.MANUAL, "bob")
    env.clock.set(utc(2024, 11, 2, 5, 30))
    fired = env.service.tick()
    assert fired[0].joined and fired[0].run_id == manual.id
    entry = env.service.history("t1", s.id)[0]
    assert entry.event.joined and entry.run is not None and entry.run.id == manual.id
    assert "manual by bob" in (entry.event.message or "")
    # the manual run finishes; the next slot starts its own run
    with env.db.uow() as uow:
        uow.runs.update(
            SyncRun(
                manual.id,
                manual.scope,
                Trigger.MANUAL,
                "bob",
                RunStage.FINISHED,
                finished_at=env.clock.now(),
            )
        )
        uow.commit()
    env.clock.set(utc(2024, 11, 3, 5, 30))
    fired = env.service.tick()
    assert not fired[0].joined and fired[0].run_id != manual.id


def test_concurrent_ticks_fire_each_slot_once(env: Env) -> None:
    s = daily(env)
    env.clock.set(utc(2024, 11, 2, 5, 30))
    # eight schedulers, as if in eight processes, tick at the same moment
    services = [ScheduleService(env.db.uow, env.clock, env.requester) for _ in range(8)]
    barrier = threading.Barrier(len(services))
    results: list[int] = []
    errors: list[BaseException] = []

    def tick(svc: ScheduleService) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(len(svc.tick()))
        except BaseException as exc:  # report in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=tick, args=(svc,)) for svc in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert sorted(results) == [0] * 7 + [1]
    assert len(env.requester.calls) == 1
    fired = [e for e in env.service.history("t1", s.id) if e.event.action is ScheduleAction.FIRED]
    assert len(fired) == 1


def test_a_failed_run_request_gives_the_slot_back(env: Env) -> None:
    s = daily(env)
    env.clock.set(utc(2024, 11, 2, 5, 31))
    env.requester.fail = True
    assert env.service.tick() == []
    assert stored(env, s.id).next_run_at == utc(2024, 11, 2, 5, 30)
    env.requester.fail = False
    fired = env.service.tick()
    assert len(fired) == 1 and fired[0].slot_at == utc(2024, 11, 2, 5, 30)


def test_edit_recomputes_and_logs_what_changed(env: Env) -> None:
    s = daily(env)
    edited = env.service.edit("t1", s.id, "bob", spec="02:30", time_zone="Europe/Berlin")
    assert edited.schedule.spec == "02:30" and edited.schedule.time_zone == "Europe/Berlin"
    assert edited.schedule.next_run_at == utc(2024, 11, 2, 1, 30)  # 02:30 CET
    assert edited.schedule.posted_by == "alice"  # the creator stays the poster
    msg = env.service.history("t1", s.id)[0].event.message or ""
    assert msg == (
        "daily at 01:30 -> daily at 02:30; time zone America/New_York -> Europe/Berlin; "
        "first run 2024-11-02 01:30 EDT -> 2024-11-02 02:30 CET"
    ), msg
    with pytest.raises(InvalidInput) as err:
        env.service.edit("t1", s.id, "bob", spec="25:00")
    assert err.value.problems[0].rule == "time_format"
    with pytest.raises(InvalidInput) as err:
        env.service.edit("t1", s.id, "bob", kind="interval")
    assert (err.value.problems[0].field, err.value.problems[0].rule) == ("spec", "required")
    assert stored(env, s.id) == edited.schedule  # failed edits changed nothing
    scoped = env.service.edit("t1", s.id, "bob", scope=RunScope("t1", None, None))
    assert scoped.schedule.scope == RunScope("t1")
    interval = env.service.edit("t1", s.id, "bob", kind="interval", spec="6h")
    assert interval.schedule.kind is ScheduleKind.INTERVAL
    assert interval.schedule.next_run_at is not None and interval.schedule.next_run_at > T0


def test_edit_keeps_a_paused_schedule_paused(env: Env) -> None:
    s = daily(env)
    env.service.pause("t1", s.id, "bob")
    edited = env.service.edit("t1", s.id, "bob", spec="04:00").schedule
    assert edited.paused_at is not None and edited.next_run_at is None


def test_delete_keeps_the_log(env: Env) -> None:
    s = daily(env)
    env.service.delete("t1", s.id, "bob")
    assert env.service.all("t1") == []
    env.clock.set(utc(2024, 11, 9))
    assert env.service.tick() == []
    assert [e.event.action for e in env.service.history("t1", s.id)] == [
        ScheduleAction.DELETED,
        ScheduleAction.CREATED,
    ]
    with pytest.raises(NotFound):
        env.service.get("t1", s.id)
    with pytest.raises(NotFound):
        env.service.history("t1", "sch_never")


def test_other_tenants_cannot_touch_a_schedule(env: Env) -> None:
    s = daily(env)
    for action in (env.service.pause, env.service.resume, env.service.delete, env.service.run_now):
        with pytest.raises(NotFound):
            action("t2", s.id, "mallory")
    with pytest.raises(NotFound):
        env.service.get("t2", s.id)
    with pytest.raises(NotFound):
        env.service.history("t2", s.id)
    assert env.service.history("t2") == []
    assert stored(env, s.id).paused_at is None


def test_history_filters_by_date(env: Env) -> None:
    s = daily(env)
    for day in (2, 3, 4):
        env.clock.set(utc(2024, 11, day, 12))
        env.service.tick()
    fired = env.service.history("t1", s.id, since=utc(2024, 11, 3), until=utc(2024, 11, 4, 23))
    assert [e.event.slot_at for e in fired] == [utc(2024, 11, 4, 6, 30), utc(2024, 11, 3, 5, 30)]
    assert len(env.service.history("t1", s.id, limit=2)) == 2
    with pytest.raises(InvalidInput):
        env.service.history("t1", s.id, since=utc(2024, 11, 4), until=utc(2024, 11, 3))


def test_a_schedule_whose_zone_vanished_is_paused_with_a_reason(env: Env) -> None:
    s = daily(env)
    with env.db.uow() as uow:  # e.g. stored before tzdata dropped the zone
        from dataclasses import replace

        uow.schedules.save(replace(s, time_zone="Mars/Olympus_Mons"))
        uow.commit()
    env.clock.set(utc(2024, 11, 2, 6))
    assert env.service.tick() == []
    after = stored(env, s.id)
    assert after.paused_at is not None and after.next_run_at is None
    assert "Mars/Olympus_Mons" in (env.service.history("t1", s.id)[0].event.message or "")


def test_a_schedule_whose_destination_was_deleted_is_paused_with_a_reason(env: Env) -> None:
    """Its scope can never run again: it stops and says why, instead of failing every tick."""
    s = daily(env)
    destination_admin.delete(env.db.uow, env.clock, "t1", "sis")
    env.clock.set(utc(2024, 11, 2, 6))
    assert env.service.tick() == []
    after = stored(env, s.id)
    assert after.paused_at is not None and after.next_run_at is None
    last = env.service.history("t1", s.id)[0]  # newest first
    assert last.event.action is ScheduleAction.PAUSED
    assert "unknown_destination" in (last.event.message or "")
    assert env.service.tick() == []  # and is not tried again


def test_preview_shows_the_next_runs_without_saving(env: Env) -> None:
    runs = env.service.preview("cron", "0 2 * * *", "America/New_York", count=3)
    assert runs == [utc(2024, 11, 2, 6), utc(2024, 11, 3, 7), utc(2024, 11, 4, 7)]
    assert env.service.all("t1") == []


def test_next_due_at_is_the_soonest_unpaused(env: Env) -> None:
    assert env.service.next_due_at() is None
    a = daily(env, "05:00")
    b = daily(env, "03:00")
    assert env.service.next_due_at() == stored(env, b.id).next_run_at
    env.service.pause("t1", b.id, "bob")
    assert env.service.next_due_at() == stored(env, a.id).next_run_at


def test_a_schedule_whose_answer_cannot_be_worked_out_is_not_stored(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer to an add or an edit (the next runs) is worked out before anything is
    stored, so a failure there leaves no schedule behind and the stored one as it was (an
    overflow there once answered 500 after saving the schedule, and a retry saved another)."""
    made = env.service.create("t1", "ada", kind="daily", spec="01:30", time_zone="UTC")

    def fail(*args: object, **kwargs: object) -> list[datetime]:
        raise RuntimeError("the next runs cannot be worked out")

    monkeypatch.setattr(schedules, "upcoming", fail)
    with pytest.raises(RuntimeError):
        env.service.create("t1", "ada", kind="daily", spec="02:30", time_zone="UTC")
    with pytest.raises(RuntimeError):
        env.service.edit("t1", made.schedule.id, "ada", spec="03:30")
    with env.db.uow() as uow:
        assert uow.schedules.all("t1") == [made.schedule]
        assert [e.action for e in uow.schedules.events("t1", limit=10)] == [ScheduleAction.CREATED]


def _edited_while(env: Env, s: Schedule, other: Callable[[ScheduleService], object]) -> None:
    """`bob`'s edit of `s`, `other` (another process's service) committed right after the
    edit read the schedule."""
    others = ScheduleService(env.db.uow, env.clock, env.requester)
    racing = AfterFirstRead(env.db, "schedules", "get", lambda: other(others))
    editing = ScheduleService(racing, env.clock, env.requester)
    editing.edit("t1", s.id, "bob", spec="04:00")
    racing.finish()


def test_a_pause_made_while_a_schedule_is_edited_stays(env: Env) -> None:
    """The edit read the schedule, another admin paused it, the edit saved it whole: on
    PostgreSQL (read committed) the schedule ran again, its log saying it was paused."""
    s = daily(env)
    _edited_while(env, s, lambda other: other.pause("t1", s.id, "carol"))
    kept = stored(env, s.id)
    assert (kept.spec, kept.next_run_at) == ("04:00", None)
    assert kept.paused_at is not None
    env.clock.set(utc(2024, 11, 9))
    assert env.service.tick() == []


def test_a_schedule_deleted_while_it_is_edited_stays_deleted(env: Env) -> None:
    """The edit's save put a schedule deleted meanwhile back in place (PostgreSQL)."""
    s = daily(env)
    _edited_while(env, s, lambda other: other.delete("t1", s.id, "carol"))
    assert env.service.all("t1") == []
    assert [e.event.action for e in env.service.history("t1", s.id)][:2] == [
        ScheduleAction.DELETED,
        ScheduleAction.EDITED,
    ]
