"""CPU per claim on SQLite (a file in a temporary directory), timed alone: the worker
thread's part of `Deliverer.claim` (its transaction: `LedgerRepo.claimable`, the score
timestamps, `LedgerRepo.lease`, the facts sending needs, `Deliverer._load_facts`, the
commit) for claims of 100, 200 and 400 rows, the sizes a pass claims (`claim_batch`
100, grown while claims come back full; 128 rows a claim on average in the throughput
scenario). The world is the throughput scenario's: 5 courses of 200 learners and 4
activities at one destination, every learner launched and every column made, the 4,000
results computed by the engine (pending, made so by a run). Each claim is made a lease's
length after the last, so it finds the same rows due again and is checked to have
claimed and leased `limit` rows spanning the courses.

    python -m benchmarks.claim_calls [--rounds N] [--calls N] [--profile FILE] [--out FILE]

Prints one JSON object (and writes it to FILE): microseconds of this process's CPU per
claim and per row claimed (min / median / max of the rounds), with the CPU pressure over
the run (the world's writes are checkpointed out of SQLite's WAL before the first claim).
`--calls` sets the claims of each size a round; `--profile` also writes a cProfile of the
timed claims (`pstats`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import secrets
import sqlite3
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks import pressure
from gradesync.adapters.db.database import Database
from gradesync.domain.ledger import DEFAULT_TIMESTAMP_STEP, next_score_timestamp
from gradesync.domain.model import ItemLink
from gradesync.services.clock import SystemClock
from gradesync.services.delivery.pass_loop import Deliverer
from gradesync.services.engine_config import EngineSettings
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory, add_course, add_destination, add_tenant
from gradesync.testing.seeding import post_attempts

T, DEST = "t", "lms"
COURSES, LEARNERS, ACTIVITIES = 5, 200, 4
SIZES = {100: 150, 200: 80, 400: 40}  # rows a claim: claims a round
LEASE = EngineSettings().lease


def _world(db: Database) -> None:
    """The throughput scenario's courses, launched learners and made columns, and their
    results computed into the ledger by the engine (as a run makes them pending)."""
    add_tenant(db.uow, T)
    acts = [f"a{a}" for a in range(ACTIVITIES)]
    people: dict[str, str] = {}
    for c in range(COURSES):
        learners = [f"c{c}p{i:03d}" for i in range(LEARNERS)]
        people.update({p: f"sub-{p}" for p in learners})
        add_course(
            db.uow,
            T,
            f"c{c}",
            *((f"c{c}{a}", f"Quiz {a}", 10.0) for a in acts),
            learners=learners,
        )
    links = {f"c{c}": f"https://lms/courses/{c}" for c in range(COURSES)}
    add_destination(db.uow, T, DEST, links=links, people=people, config={"concurrency": 16})
    with db.uow() as uow:
        for c in range(COURSES):
            for a in acts:
                uow.links.save_item(
                    ItemLink(T, DEST, f"c{c}{a}", f"https://lms/courses/{c}/line_items/{a}")
                )
        uow.commit()
    scores = [
        (f"c{c}{a}", f"c{c}p{i:03d}", float(i % 11))
        for c in range(COURSES)
        for a in acts
        for i in range(LEARNERS)
    ]
    for k in range(0, len(scores), 1000):
        post_attempts(db.uow, None, T, scores[k : k + 1000])

    async def compute() -> None:
        engine = Engine(db.uow, SystemClock(), DoubleFactory(), EngineSettings())
        await engine.process_dirty()  # every dirty key, batch after batch
        await engine.aclose()

    asyncio.run(compute())
    with db.uow() as uow:
        pending = uow.conn.exec_driver_sql("SELECT count(*) FROM ledger WHERE state = 'pending'")
        assert pending.scalar() == len(scores), "the results were not all computed"
    with db.uow() as uow:  # as a run leaves them: priority 1
        uow.conn.exec_driver_sql("UPDATE ledger SET priority = 1")
        uow.commit()


def _claim(db: Database, now: datetime, limit: int, after: str) -> tuple[int, set[str]]:
    """What `Deliverer.claim`'s worker thread does (`work`), for a sweep's scope."""
    with db.uow() as uow:
        rows = uow.ledger.claimable(now, limit, courses_after=after)
        stamped = [
            (f, next_score_timestamp(f.row.last_timestamp, now, DEFAULT_TIMESTAMP_STEP))
            for f in rows
        ]
        uow.ledger.lease([(f.row.key, ts) for f, ts in stamped], "w:1", now + LEASE)
        facts = Deliverer._load_facts(uow, [(f.row.key, f.course_id) for f, _ in stamped])
        uow.commit()
    courses = {f.course_id for f, _ in stamped}
    assert all(any(b.people) and any(b.items) for b in facts.values()), "facts missing"
    return len(stamped), courses


def run(rounds: int, profile: Path | None, calls: int | None = None) -> dict[str, Any]:
    window = pressure.Window.start()
    out: dict[str, Any] = {"rounds": rounds}
    prof = cProfile.Profile() if profile else None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "claims.db"
        db = Database(f"sqlite:///{path}", secrets.token_urlsafe(32))
        db.upgrade()
        _world(db)
        db.engine.dispose()  # the world's writes out of the WAL, untimed
        with sqlite3.connect(path) as raw:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw.close()
        now = SystemClock().now()
        step = LEASE + timedelta(seconds=1)
        for limit, each in SIZES.items():
            per_claim: list[float] = []
            for _ in range(rounds):
                now += step
                _claim(db, now, limit, "")  # warm
                spent = 0.0
                after = ""
                for _ in range(calls or each):
                    now += step
                    c0 = time.process_time()
                    if prof:
                        prof.enable()
                    n, courses = _claim(db, now, limit, after)
                    if prof:
                        prof.disable()
                    spent += time.process_time() - c0
                    assert n == limit and len(courses) == COURSES, (n, courses)
                    after = max(courses)  # the next claim takes its turn after (`_take_turns`)
                per_claim.append(spent / (calls or each) * 1e6)
            med = statistics.median(per_claim)
            out[f"claim_{limit}_rows_us"] = [
                round(min(per_claim)),
                round(med),
                round(max(per_claim)),
            ]
            out[f"claim_{limit}_rows_us_per_row"] = round(med / limit, 1)
        db.dispose()
    out["cpu_pressure"] = window.stop()
    if prof and profile:
        prof.dump_stats(profile)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.claim_calls")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each size (3)")
    parser.add_argument("--profile", type=Path, help="a cProfile of the timed claims")
    parser.add_argument("--calls", type=int, help="claims of each size a round (150, 80, 40)")
    parser.add_argument("--out", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = json.dumps(run(args.rounds, args.profile, args.calls))
    if args.out:
        args.out.write_text(figures + "\n")
    print(figures)


if __name__ == "__main__":
    main()
