"""Real worker processes (`gradesync worker`) on PostgreSQL, talking HTTP to a gradebook
double: a worker killed with SIGKILL mid-run, and two workers sharing the work."""

from __future__ import annotations

import re
import signal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gradesync.adapters.db.database import Database
from gradesync.domain.model import DeliveryState, RunOutcome, RunScope, RunStage, Trigger
from gradesync.services.clock import SystemClock
from gradesync.services.runs import get_run, get_run_stages, request_run
from gradesync.testing.http_double import running_gradebook
from gradesync.testing.processes import LONG_LEASE, start_worker
from tests.engine.conftest import COURSE, DEST, ROOT, Processes, T, learner, post, seed, states

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SCOPE = RunScope(T, DEST, COURSE)


def test_worker_killed_mid_run_then_restarted_delivers_exactly_the_final_state(
    processes: Processes,
) -> None:
    ps = processes
    db, waker = ps.db, ps.waker
    n = 24
    with running_gradebook() as (base, gb):
        seed(db, learners=n, config={"concurrency": 4, "base_url": base})
        post(db, None, [("a1", learner(i), 5.0) for i in range(n)])
        gb.hold = True  # sends reach the gradebook and wait there
        run, _ = request_run(db.uow, waker, SystemClock(), SCOPE, Trigger.MANUAL, "ops")
        first = start_worker(ps.url, ps.log, cwd=ROOT, name="worker-a")
        ps.procs.append(first)
        ps.wait(lambda: gb.held >= 4, 60, "sends in flight")
        first.send_signal(signal.SIGKILL)  # mid-run, mid-send
        first.wait(timeout=10)
        # newer facts arrive while no worker runs
        post(db, waker, [("a1", learner(i), 9.0) for i in range(0, n, 3)])
        gb.release()
        second = start_worker(ps.url, ps.log, cwd=ROOT, name="worker-b")
        ps.procs.append(second)

        ps.wait(lambda: _done(db, run.id, n) and _dirty(db) == 0, 90, "the final state")
        final = {p: score for (_, p), (score, _) in gb.scores.items()}
        assert final == {f"sub-{learner(i)}": 9.0 if i % 3 == 0 else 5.0 for i in range(n)}
        assert gb.overlapping == []
        finished = get_run(db.uow, T, run.id)
        assert finished is not None and finished.outcome is RunOutcome.SUCCEEDED
        stages = [s["stage"] for s in get_run_stages(db.uow, T, run.id)]
        assert stages.count("queued") == 2  # requeued after the first worker died
        # the run's history names each worker by its --name
        (requeued,) = [s for s in get_run_stages(db.uow, T, run.id)[1:] if s["stage"] == "queued"]
        assert re.fullmatch(
            r"worker worker-a@[^:]+:\d+:\w+ stopped \(last heard .+\); "
            r"requeued by worker-b@[^:]+:\d+:\w+",
            requeued["note"],
        ), requeued


def _done(db: Database, run_id: str, n: int) -> bool:
    """The run finished, and the n results are delivered."""
    r = get_run(db.uow, T, run_id)
    return (
        r is not None
        and r.stage is RunStage.FINISHED
        and states(db) == {DeliveryState.DELIVERED.value: n}
    )


def _dirty(db: Database) -> int:
    with db.uow() as uow:
        return uow.dirty.count()


def test_two_workers_share_the_work_without_sending_a_key_twice_at_once(
    processes: Processes,
) -> None:
    ps = processes
    db, waker = ps.db, ps.waker
    n = 48
    with running_gradebook() as (base, gb):
        # sends wait in the gradebook until both workers have some in flight: on a loaded
        # machine the second may take longer to start than the default 30 s request
        # timeout, or the test workers' 4 s claims, after either of which the first would
        # rightly send its held keys again
        seed(db, learners=n, config={"concurrency": 4, "base_url": base, "timeout_seconds": 120})
        gb.hold = True
        gb.release_when_workers = 2
        # each worker serves its own /metrics (a free port each, named in the log)
        ps.procs += [
            start_worker(
                ps.url,
                ps.log,
                cwd=ROOT,
                GRADESYNC_WORKER_METRICS_ADDRESS="127.0.0.1:0",
                GRADESYNC_METRICS_TOKEN="scrape-me",
                GRADESYNC_WORKER_LEASE_SECONDS=LONG_LEASE,
            )
            for _ in range(2)
        ]
        post(db, waker, [("a1", learner(i), 6.0) for i in range(n)])
        run, _ = request_run(db.uow, waker, SystemClock(), SCOPE, Trigger.MANUAL, "ops")

        ps.wait(lambda: _done(db, run.id, n), 90, "every result delivered")
        assert gb.overlapping == []  # no key was ever sent twice at once
        assert len(gb.sends) == n and set(gb.sends.values()) == {1}  # each key sent once
        assert len(gb.senders) == 2, gb.senders  # both workers sent results
        assert all(count > 0 for count in gb.senders.values())
        finished = get_run(db.uow, T, run.id)
        assert finished is not None and finished.outcome is RunOutcome.SUCCEEDED
        # what Prometheus sees: each worker counts what it delivered, and together
        # they count every result once (serve, running no engine here, counts none)
        urls = re.findall(r"metrics at (http://\S+)", ps.log.read_text())
        assert len(urls) == 2, ps.log.read_text()
        assert all(httpx.get(u).status_code == 401 for u in urls)  # the token is asked
        # (a counter moves just after its settle commits: wait for the last ones)
        ps.wait(
            lambda: sum(_delivered(u, "scrape-me") for u in urls) == n,
            20,
            "every delivered result counted",
        )
        assert all(_delivered(u, "scrape-me") > 0 for u in urls)
        # each worker set its startup heap aside from the garbage collector
        frozen = [_gauge(u, "scrape-me", "gradesync_heap_frozen_objects") for u in urls]
        assert all(n > 10_000 for n in frozen), frozen


def _gauge(url: str, token: str, name: str) -> float:
    r = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    (family,) = (f for f in text_string_to_metric_families(r.text) if f.name == name)
    (sample,) = family.samples
    return sample.value


def _delivered(url: str, token: str) -> float:
    """The results a worker's /metrics says it delivered to the test's destination."""
    r = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    return sum(
        sample.value
        for family in text_string_to_metric_families(r.text)
        if family.name == "gradesync_results_delivered"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels == {"tenant": T, "destination": DEST}
    )
