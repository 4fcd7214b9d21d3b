"""A live grade to a deployment's only `gradesync worker` (PostgreSQL) after it idled: the
seconds from the attempt stored to the score's arrival at the gradebook.

    python -m benchmarks.idle_worker postgresql://postgres@127.0.0.1:54329/idle_worker \
        --out benchmarks/results/idle-worker.json

The database must be new (it is migrated here). One worker, one course, a gradebook double
answering at once; each grade is posted after the worker has been idle longer than its
heartbeat's life (`worker_alive`, 5 s), so it comes back as a worker rejoining the others
would. The first grade also waits for the worker to start: it is reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import pressure
from gradesync.adapters.db.database import Database
from gradesync.adapters.queue.procrastinate_app import ProcrastinateWaker
from gradesync.testing import (
    TEST_SECRET,
    add_course,
    add_destination,
    add_tenant,
    post_attempts,
)
from gradesync.testing.http_double import running_gradebook
from gradesync.testing.processes import GRADESYNC, start_worker, stop_workers

IDLE_S = 7.0  # longer than the heartbeat's life (5 s): the worker rejoins for each grade


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.idle_worker", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("url", help="a new PostgreSQL database")
    ap.add_argument("--grades", type=int, default=6)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/idle-worker.json"))
    args = ap.parse_args()
    env = {**os.environ, "GRADESYNC_DATABASE_URL": args.url, "GRADESYNC_SECRET_KEY": TEST_SECRET}
    subprocess.run([GRADESYNC, "db", "upgrade"], env=env, check=True, capture_output=True)
    db = Database(args.url, TEST_SECRET)
    waker = ProcrastinateWaker(args.url)
    learners = [f"p{i:03d}" for i in range(args.grades)]
    seconds: list[float] = []
    window = pressure.Window.start()
    with tempfile.TemporaryDirectory() as tmp, running_gradebook() as (base, gb):
        add_tenant(db.uow, "t1", "Tenant")
        add_course(db.uow, "t1", "c1", ("a1", "Quiz", 10.0), title="Biology", learners=learners)
        add_destination(
            db.uow,
            "t1",
            "lms",
            name="LMS",
            config={"concurrency": 4, "base_url": base},
            links={"c1": "https://lms/courses/1"},
            people={p: f"sub-{p}" for p in learners},
        )
        worker = start_worker(
            args.url, Path(tmp) / "worker.log", GRADESYNC_OUTBOUND_ALLOWED_NETWORKS="127.0.0.0/8"
        )
        try:
            for i, learner in enumerate(learners):
                if i:
                    time.sleep(IDLE_S)  # the scenario: the worker idles
                sent = len(gb.sends)
                t0 = time.monotonic()
                post_attempts(db.uow, waker, "t1", [("a1", learner, 7.0)])
                deadline = t0 + 60
                while len(gb.sends) == sent and time.monotonic() < deadline:
                    time.sleep(0.002)  # polling the gradebook double's record of sends
                seconds.append(round(time.monotonic() - t0, 3))
                print(f"grade {i + 1}: {seconds[-1]:.3f} s", flush=True)
        finally:
            stop_workers(worker)
            waker.close()
            db.dispose()
    after_idle = seconds[1:]
    figures = {
        "scenario": "a live grade to the only worker after it idled for "
        f"{IDLE_S:g} s (its heartbeat lives 5 s)",
        "first_grade_s_with_worker_start": seconds[0],
        "after_idle_s": after_idle,
        "after_idle_median_s": statistics.median(after_idle) if after_idle else None,
        "cpu_pressure": window.stop(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
