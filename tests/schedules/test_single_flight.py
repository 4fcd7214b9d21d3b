"""One sync job per scope: concurrent triggers, and a run whose worker died."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from gradesync.domain.model import RunOutcome, RunStage, ScheduleAction, SyncRun
from gradesync.services.engine_config import EngineSettings
from gradesync.services.schedules import ScheduleService
from tests.schedules.conftest import Env


def test_scheduled_and_manual_triggers_at_once_make_one_run(env: Env) -> None:
    s = env.service.create(
        "t1", "alice", kind="daily", spec="01:30", course_id="c1", destination_id="sis"
    ).schedule
    env.clock.set(datetime(2024, 11, 2, 5, 30, tzinfo=UTC))
    schedulers = [ScheduleService(env.db.uow, env.clock, env.requester) for _ in range(4)]
    run_ids: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)
    lock = threading.Lock()

    def tick(svc: ScheduleService) -> None:
        try:
            barrier.wait(timeout=10)
            for f in svc.tick():
                with lock:
                    run_ids.append(f.run_id)
        except BaseException as exc:
            errors.append(exc)

    def press(who: str) -> None:
        try:
            barrier.wait(timeout=10)
            run, _ = env.service.run_now("t1", s.id, who)
            with lock:
                run_ids.append(run.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=tick, args=(svc,)) for svc in schedulers]
    threads += [threading.Thread(target=press, args=(f"admin{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(run_ids) == 5  # one firing, four presses
    assert len(set(run_ids)) == 1  # ... all on one run
    with env.db.uow() as uow:
        active = uow.runs.active_for_scope(s.scope.key)
    assert [r.id for r in active] == [run_ids[0]]
    log = env.service.history("t1", s.id)
    fired = [e for e in log if e.event.action is ScheduleAction.FIRED]
    pressed = [e for e in log if e.event.action is ScheduleAction.RUN_NOW]
    assert len(fired) == 1 and len(pressed) == 4
    assert sum(not e.event.joined for e in fired + pressed) == 1  # exactly one started it


def test_a_run_left_by_a_killed_worker_does_not_block_scheduled_runs(env: Env) -> None:
    settings = EngineSettings()
    s = env.service.create(
        "t1", "alice", kind="daily", spec="01:30", course_id="c1", destination_id="sis"
    ).schedule
    env.clock.set(datetime(2024, 11, 2, 5, 30, tzinfo=UTC))
    first = env.service.tick()[0]
    # a worker claims the run, then is killed (no more heartbeats)
    with env.db.uow() as uow:
        now = env.clock.now()
        claimed = uow.runs.claim_next("w-dead", now, now - settings.stale_after)
        uow.commit()
    assert claimed is not None and claimed.id == first.run_id
    # the next day's slot comes due while the dead worker's run still looks "running"
    env.clock.set(datetime(2024, 11, 3, 5, 30, tzinfo=UTC))
    second = env.service.tick()[0]
    assert second.joined and second.run_id == first.run_id
    entry = env.service.history("t1", s.id)[0]
    assert entry.event.joined and f"joined run {first.run_id}" in (entry.event.message or "")
    # a live worker neither waits for it nor loses it: the stale run is requeued and claimed
    with env.db.uow() as uow:
        now = env.clock.now()
        assert uow.runs.requeue_stale(now - settings.stale_after, now) == [first.run_id]
        retaken = uow.runs.claim_next("w-live", now, now - settings.stale_after)
        uow.commit()
    assert retaken is not None and retaken.id == first.run_id
    with env.db.uow() as uow:
        uow.runs.update(
            SyncRun(
                retaken.id,
                retaken.scope,
                retaken.trigger,
                retaken.actor,
                RunStage.FINISHED,
                RunOutcome.SUCCEEDED,
                finished_at=env.clock.now(),
            ),
            worker_id="w-live",
        )
        uow.commit()
    # and the slot after that starts a fresh run
    env.clock.set(datetime(2024, 11, 4, 6, 30, tzinfo=UTC))
    third = env.service.tick()[0]
    assert not third.joined and third.run_id != first.run_id
    assert env.service.next_due_at() == datetime(2024, 11, 5, 6, 30, tzinfo=UTC)
