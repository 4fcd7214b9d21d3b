"""Chaos: gradesync as an operator runs it, against an LMS that fails now and then, while its
processes are killed and its database restarts; in the end the LMS's gradebook is what the
acknowledged grades say, key by key, and every run tells the truth.

PostgreSQL: `serve` and two `gradesync worker`, the sandbox LMS with faults (10 % 5xx, 5 %
429 with Retry-After, 2 % connection resets), a remaster running; the worker running it is
SIGKILLed, a third worker starts while the dead one's jobs are still `doing`, and
PostgreSQL restarts (`pg_ctl restart -m fast`); newer grades arrive throughout.

SQLite: one `serve`, the same faults, SIGKILLed while it delivers (and runs a remaster) and
started again: nothing the ingest API acknowledged is lost.

The time to converge is printed (`chaos-report:` lines, shown with `pytest -rP`) and kept in
the test's properties (junit XML); it is never asserted: the machine may be loaded. The waits'
deadlines only end a hang."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from benchmarks.world import CourseSpec, World, add_courses, link_everyone, start_world

from benchmarks import procs
from gradesync.adapters.queue.procrastinate_app import QUEUE, TASK_DIRTY, conninfo
from gradesync.testing.processes import GRADESYNC, start_worker, stop_workers
from tests.faults import chaos
from tests.faults.postgres_server import PostgresServer

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
COURSE = "chaos"
LEARNERS = [f"L{i:02d}" for i in range(40)]
ACTIVITIES = [f"A{j}" for j in range(5)]
SPEC = CourseSpec(COURSE, LEARNERS, [(a, 10.0) for a in ACTIVITIES])
CONVERGE = 150.0  # seconds: a bound on a hang, not a target


def _connect(world: World) -> None:
    """The course in the LMS and in gradesync, linked by a real launch (the learners' links
    are written as their launches would write them)."""
    add_courses(world, [SPEC])
    link_everyone(world, [SPEC])


def _report(record: Any, name: str, figures: dict[str, Any]) -> None:
    line = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"chaos-report: {name} {line}")
    for k, v in figures.items():
        record(f"{name}.{k}", v)


def _scores_sent(world: World) -> int:
    return int(world.admin.counters().get("scores", {}).get("requests", 0))


def _finished(world: World, run_id: str) -> dict[str, Any] | None:
    run: dict[str, Any] = world.ok("GET", f"/runs/{run_id}")
    return run if run["stage"] == "finished" else None


def _converged(world: World, grades: chaos.Grades) -> bool:
    got, _items = chaos.gradebook(world, COURSE)
    if chaos.differences(grades.acknowledged, got):
        return False
    ledger = world.ok("GET", f"/destinations/{world.destination_id}")["ledger"] or {}
    return not any(ledger.get(s) for s in ("pending", "retrying", "sending"))


def _state(world: World, grades: chaos.Grades) -> str:
    got, items = chaos.gradebook(world, COURSE)
    wrong = chaos.differences(grades.acknowledged, got)
    dest = world.ok("GET", f"/destinations/{world.destination_id}")
    history = [
        (r["trigger"], r["stage"], r["outcome"], r["message"]) for r in chaos.runs(world, COURSE)
    ]
    return (
        f"{len(wrong)} wrong: {wrong[:10]}\nline items: {items}\nledger: {dest.get('ledger')}"
        f" paused_until={dest.get('paused_until')} reason={dest.get('pause_reason')}\n"
        f"runs: {history}"
    )


def _final_checks(world: World, grades: chaos.Grades) -> list[dict[str, Any]]:
    got, items = chaos.gradebook(world, COURSE)
    assert not chaos.differences(grades.acknowledged, got), chaos.differences(
        grades.acknowledged, got
    )[:20]
    assert len(got) == len(grades.acknowledged) == len(LEARNERS) * len(ACTIVITIES)
    assert sorted(items) == sorted(ACTIVITIES), f"line items (duplicates?): {sorted(items)}"
    history = chaos.runs(world, COURSE)
    ends = chaos.run_ends(world.db)
    for run in history:
        # the pauses as the database held them when the run finished (not as the run says)
        assert run["id"] in ends, ("no end recorded", run)
        held = chaos.held_past_patience(ends[run["id"]])
        assert not chaos.untruthful(run, held), (chaos.untruthful(run, held), ends.get(run["id"]))
    return history


# --- PostgreSQL: two workers, a SIGKILL, a stalled job, a database restart -----------------


def _sql(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo(url), connect_timeout=3, autocommit=True) as conn:
        cur = conn.execute(query)
        return list(cur.fetchall()) if cur.description else []


def _queue_workers(url: str) -> set[int]:
    try:
        return {int(r[0]) for r in _sql(url, "SELECT id FROM procrastinate_workers")}
    except psycopg.Error:
        return set()


def _sending_owner(url: str, run_id: str) -> str | None:
    """The worker running the run while it is sending, read with its stage in one query: a
    run may be requeued (its worker's heartbeat late on a loaded machine) or end between two
    reads, and the worker to kill is the one that holds it sending."""
    rows = _sql(
        url,
        f"SELECT worker_id FROM public.sync_runs WHERE id = '{run_id}'"
        " AND stage = 'sending' AND worker_id IS NOT NULL",
    )
    return str(rows[0][0]) if rows else None


def _stalled_jobs(url: str, dead: int) -> int:
    rows = _sql(
        url,
        f"SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing' AND worker_id = {dead}",
    )
    return int(rows[0][0])


@pytest.mark.postgres
@pytest.mark.timeout(420)
def test_chaos_on_postgresql(
    own_postgres: PostgresServer, tmp_path: Path, record_property: Any
) -> None:
    url = own_postgres.new_database()
    subprocess.run(
        [GRADESYNC, "db", "upgrade"],
        env={**procs.gradesync_env(tmp_path, url, "x" * 32)},
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    env = {**chaos.ENGINE_ENV, "GRADESYNC_WORKER_MODE": "distributed"}
    world = start_world(tmp_path, url, concurrency=4, gradesync_env=env)
    workers: dict[str, subprocess.Popen[bytes]] = {}
    queue_ids: dict[str, int] = {}
    logs = [world.gradesync.log, world.sandbox.log, own_postgres.data / "server.log"]

    def worker(name: str) -> subprocess.Popen[bytes]:
        log = worker_log(name)
        logs.append(log)
        return start_worker(
            url,
            log,
            cwd=ROOT,
            GRADESYNC_TEST_DESTINATION_MODULE="",  # the real LTI 1.3 adapter
            GRADESYNC_SECRET_KEY=world.secret,
            GRADESYNC_OUTBOUND_ALLOWED_NETWORKS=procs.LOOPBACK,
            GRADESYNC_DATA_DIR=str(tmp_path / "data"),
            **chaos.ENGINE_ENV,
        )

    def worker_log(name: str) -> Path:
        return tmp_path / f"{name}.log"

    def start(name: str) -> None:
        before = _queue_workers(url)
        workers[name] = worker(name)
        new = chaos.wait(lambda: _queue_workers(url) - before, f"{name} to start", 60, logs)
        queue_ids[name] = min(new)

    try:
        start("w1")
        start("w2")
        _connect(world)
        chaos.record_run_ends(world.db)
        world.admin.set_faults(chaos.FAULTS, rng_seed=19)
        grades = chaos.Grades(world)
        clock = chaos.Clock()
        first = chaos.first_scores(ACTIVITIES, LEARNERS)
        sent_before = _scores_sent(world)
        grades.send(first)

        # a remaster at once, while the first grades go out; once it is sending, the worker
        # running it is SIGKILLed
        remaster = world.ok("POST", f"/courses/{COURSE}/sync", json={"trigger": "remaster"})
        owner = chaos.wait(
            lambda: _scores_sent(world) > sent_before + 100 and _sending_owner(url, remaster["id"]),
            "the remaster sending",
            CONVERGE,
            logs,
        )
        victim = next(n for n, p in workers.items() if f":{p.pid}:" in owner)
        chaos.kill(workers[victim])
        killed_at = clock()
        print(f"chaos: {killed_at} s: {victim} killed")
        grades.send(chaos.newer(first, 40, 3.0, seed=1))  # newer grades during the chaos

        # the dead worker's jobs stay `doing`: the one it ran when killed, if any, and the
        # wake-up a worker killed inside `process_dirty` leaves (its twin may be queued: the
        # case that crashed every new worker). Its procrastinate heartbeat is made old, as it
        # is 30 s after a death; then a new worker starts while those jobs are stalled.
        dead = queue_ids[victim]
        _sql(
            url,
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour'"
            f" WHERE id = {dead}",
        )
        _sql(
            url,
            "INSERT INTO procrastinate_jobs (queue_name, task_name, queueing_lock, status,"
            f" worker_id) VALUES ('{QUEUE}', '{TASK_DIRTY}', '{TASK_DIRTY}', 'doing', {dead})",
        )
        stalled = _stalled_jobs(url, dead)
        start("w3")
        chaos.wait(lambda: _stalled_jobs(url, dead) == 0, "stalled jobs recovered", 60, logs)

        print(f"chaos: {clock()} s: {stalled} stalled job(s) recovered")
        # PostgreSQL restarts under the surviving workers, mid-remaster or just after
        t = clock()
        own_postgres.restart()
        print(f"chaos: restart took {clock() - t} s")
        world.db.engine.dispose()
        grades.send(chaos.newer(first, 40, 5.0, seed=2))
        print(f"chaos: {clock()} s: PostgreSQL restarted")

        chaos.wait(lambda: _finished(world, remaster["id"]), "the remaster to end", CONVERGE, logs)
        print(f"chaos: {clock()} s: remaster ended")
        chaos.wait(
            lambda: _converged(world, grades),
            "the gradebook",
            CONVERGE,
            logs,
            lambda: _state(world, grades),
        )
        converged = clock()
        print(f"chaos: {converged} s: the LMS holds every acknowledged grade")

        # the next run carries what the remaster could not rewrite, and says so
        resync = world.ok("POST", f"/courses/{COURSE}/sync", json={"trigger": "resync"})
        after = chaos.wait(lambda: _finished(world, resync["id"]), "the resync", CONVERGE, logs)

        for name, proc in workers.items():
            if name != victim:
                assert proc.poll() is None, (
                    f"{name} exited {proc.returncode}:\n{chaos.tail(worker_log(name))}"
                )
        history = _final_checks(world, grades)
        run = next(r for r in history if r["id"] == remaster["id"])
        said = " ".join(str(s.get("note")) for s in run["stages"] or [])
        assert "resumed by" in said, run["stages"]
        if run["outcome"] != "succeeded":
            assert after["counts"]["carried"]["from_run"] == remaster["id"], after
            assert run["counts"]["carried_to"] == resync["id"], run
            notes = " ".join(str(s.get("note")) for s in after["stages"] or [])
            assert f"remaster {remaster['id']} could not rewrite" in notes, after["stages"]
        counters = world.admin.counters()
        _report(
            record_property,
            "postgresql",
            {
                "keys": len(grades.acknowledged),
                "killed_at_s": killed_at,
                "stalled_jobs": stalled,
                "converged_s": converged,
                "remaster": run["outcome"],
                "remaster_says": repr(run["message"]),
                "resync_says": repr(after["message"]),
                "score_requests": counters.get("scores", {}).get("requests", 0),
                "injected": {
                    k: counters.get("scores", {}).get(k, 0) for k in ("error", "throttle", "reset")
                },
            },
        )
    finally:
        stop_workers(*workers.values())
        world.close()


# --- SQLite: one `serve`, SIGKILLed while it delivers, started again ----------------------


@pytest.mark.timeout(420)
def test_chaos_on_sqlite(tmp_path: Path, record_property: Any) -> None:
    world = start_world(tmp_path, concurrency=4, gradesync_env=chaos.ENGINE_ENV)
    logs = [world.gradesync.log, world.sandbox.log]
    port = int(world.gradesync.base_url.rsplit(":", 1)[1])
    try:
        _connect(world)
        chaos.record_run_ends(world.db)
        world.admin.set_faults(chaos.FAULTS, rng_seed=19)
        grades = chaos.Grades(world)
        clock = chaos.Clock()
        first = chaos.first_scores(ACTIVITIES, LEARNERS)
        sent_before = _scores_sent(world)
        grades.send(first)
        remaster = world.ok("POST", f"/courses/{COURSE}/sync", json={"trigger": "remaster"})
        chaos.wait(
            lambda: (
                _scores_sent(world) > sent_before + 100
                and world.ok("GET", f"/runs/{remaster['id']}")["stage"] == "sending"
            ),
            "the remaster sending",
            CONVERGE,
            logs,
        )
        # newer grades, acknowledged; `serve` is SIGKILLed right after, mid-delivery
        grades.send(chaos.newer(first, 40, 3.0, seed=1))
        chaos.kill(world.gradesync.proc)
        killed_at = clock()
        print(f"chaos: {killed_at} s: serve killed")

        # a client keeps sending while the server is down (no acknowledgement: it sends again)
        later = chaos.newer(first, 40, 5.0, seed=2)
        sender = threading.Thread(target=grades.send, args=(later,), kwargs={"until": 120.0})
        sender.start()
        world.gradesync = procs.start_gradesync(
            tmp_path, world.db.url, world.secret, chaos.ENGINE_ENV, port=port
        )
        print(f"chaos: {clock()} s: serve started again")
        sender.join(timeout=180)
        assert not sender.is_alive() and all(
            grades.acknowledged.get(k) == v for k, v in later.items()
        )

        chaos.wait(lambda: _finished(world, remaster["id"]), "the remaster to end", CONVERGE, logs)
        print(f"chaos: {clock()} s: remaster ended")
        chaos.wait(
            lambda: _converged(world, grades),
            "the gradebook",
            CONVERGE,
            logs,
            lambda: _state(world, grades),
        )
        converged = clock()
        history = _final_checks(world, grades)
        run = next(r for r in history if r["id"] == remaster["id"])
        counters = world.admin.counters()
        _report(
            record_property,
            "sqlite",
            {
                "keys": len(grades.acknowledged),
                "killed_at_s": killed_at,
                "refused_while_down": grades.refused,
                "converged_s": converged,
                "remaster": run["outcome"],
                "remaster_says": repr(run["message"]),
                "score_requests": counters.get("scores", {}).get("requests", 0),
            },
        )
    finally:
        world.close()
