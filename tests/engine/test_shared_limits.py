"""A destination's limits hold across worker processes: three `gradesync worker` on
PostgreSQL never send it more requests at once, or per second, than its config allows."""

from __future__ import annotations

import bisect
import subprocess
from pathlib import Path

import pytest

from gradesync.domain.model import DeliveryState
from gradesync.testing.http_double import running_gradebook
from gradesync.testing.processes import start_worker
from tests.engine.conftest import ROOT, Processes, learner, post, seed, states

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CONCURRENCY = 4
RATE = 10.0
WORKERS = 3
JITTER = 0.15  # seconds between a worker taking a token and the gradebook seeing its request


def _worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    # rows wait for the rate longer than the default test lease: a lease long enough that
    # none is let go and claimed again while its first send may still be on the wire
    return start_worker(url, log, cwd=ROOT, GRADESYNC_WORKER_LEASE_SECONDS="60")


def test_three_workers_keep_to_the_destination_s_concurrency_and_rate(processes: Processes) -> None:
    ps = processes
    db, waker = ps.db, ps.waker
    n = 60
    with running_gradebook() as (base, gb):
        gb.latency = 0.2
        seed(
            db,
            learners=n,
            config={"concurrency": CONCURRENCY, "rate_per_second": RATE, "base_url": base},
        )
        ps.procs += [_worker(ps.url, ps.log) for _ in range(WORKERS)]
        post(db, waker, [("a1", learner(i), 7.0) for i in range(n)])
        ps.wait(
            lambda: states(db) == {DeliveryState.DELIVERED.value: n}, 120, "every result delivered"
        )
        assert gb.overlapping == []
        assert len(gb.senders) >= 2, gb.senders  # the limits were shared, not one's
        assert gb.max_concurrent <= CONCURRENCY, gb.max_concurrent
        started = sorted(gb.started)
        # requests started within any one second: the rate, plus the one token each
        # worker may hold saved up. The double sees a request when it arrives, up to
        # JITTER after the worker took its token (a loaded machine schedules late), so
        # a second of tokens may arrive within a shorter window: count over 1 s - JITTER.
        window = 1.0 - JITTER
        busiest = max(bisect.bisect_left(started, t + window) - i for i, t in enumerate(started))
        assert busiest <= RATE + WORKERS, busiest
        span = started[-1] - started[0]
        assert len(started) - 1 <= RATE * span + WORKERS, (len(started), span)
