"""Ingest of attempts in batches of 1,000 straight through the runtime (the path of the API
and `gradesync import`, without HTTP), on one
database: attempts per second committed, this process's CPU per attempt (SQLite's work
included; PostgreSQL's server work is not) and the SQL statements per batch, which is what
sets the cost on PostgreSQL, where each statement is a round trip. The roster the attempts
need is ingested first, in batches of 500 people and their 500 enrollments, and timed too
(`roster_rows_per_s`, `roster_cpu_ms_per_batch`, `roster_statements_per_batch`): a roster
sync's shape. `--roster-batches N`: a longer roster than the attempts need.

    python -m benchmarks.ingest_batches sqlite:////tmp/ingest.db --batches 20
    python -m benchmarks.ingest_batches postgresql://postgres@127.0.0.1:54329/gs_ingest

A PostgreSQL database named in the URL is dropped and created again; a SQLite file, removed.
Prints one JSON object.
`--against URL`: a second database, the same batches ingested into each in turn (one batch
here, one there; the roster's, then the attempts'), so on a shared machine both meet the
same load; each side's rate is its batches' own time, and `first_over_second` (attempts)
and `roster_first_over_second` their ratios.
`--explain` (PostgreSQL, superuser): the server logs the plan of every statement over 3 ms
with its actual times, foreign-key triggers, buffers and WAL (`auto_explain`), to see where
a batch's server time goes.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.pool import Pool

from benchmarks import postgres, pressure
from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.domain.model import Activity, Attempt, Course, Enrollment, Person
from gradesync.runtime import Runtime
from gradesync.services import ingest as svc
from gradesync.services.clock import SystemClock
from gradesync.services.tenants import create_tenant

PER_BATCH = 1000  # 100 learners x 10 activities
SETUP_BATCH = 500


class _Side:
    """One database made ready for the timed batches: the tenant, its course and activities,
    then the roster the attempts name (`roster_batch`, timed, with its statements), then
    `ready()` for the attempts."""

    def __init__(self, url: str, batches: int, roster_batches: int) -> None:
        if url.startswith("postgresql"):
            why = postgres.fresh_database(url)
            if why:
                raise RuntimeError(why)
        elif url.startswith("sqlite:///"):
            for suffix in ("", "-wal", "-shm"):
                Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
        self.url = url
        self.secret = secrets.token_urlsafe(32)
        self.db = db = Database(url, self.secret)
        db.upgrade()
        self.clock = SystemClock()
        create_tenant(db.uow, self.clock, "t", "T")
        # the attempts name p0..p(100 * batches - 1); a longer roster goes on past them
        self.learners = max(100 * batches, SETUP_BATCH * roster_batches)
        acts = [Activity("t", f"a{j}", "c", f"A{j}", 10.0) for j in range(10)]
        svc.ingest(
            db.uow,
            self.clock,
            None,
            "t",
            svc.IngestBatch(courses=[Course("t", "c", "C")], activities=acts),
        )
        self.statements: Counter[str] = Counter()

        def count(_c: object, _cur: object, statement: str, *_: object) -> None:
            self.statements[" ".join(statement.split()[:3])] += 1

        event.listen(db.engine, "before_cursor_execute", count)
        self.roster_seconds = self.roster_cpu = 0.0
        self.roster_batches = 0
        self.seconds = self.cpu = 0.0

    def roster_batch(self, k: int) -> None:
        """Ingest roster batch `k`: SETUP_BATCH people and their enrollments (its wall and
        CPU time added to this side's roster)."""
        ids = [f"p{i}" for i in range(k * SETUP_BATCH, min((k + 1) * SETUP_BATCH, self.learners))]
        batch = svc.IngestBatch(
            people=[Person("t", p, p) for p in ids],
            enrollments=[Enrollment("t", "c", p) for p in ids],
        )
        t0, c0 = time.perf_counter(), time.process_time()
        result = svc.ingest(self.db.uow, self.clock, None, "t", batch)
        self.roster_seconds += time.perf_counter() - t0
        self.roster_cpu += time.process_time() - c0
        self.roster_batches += 1
        if result.changed.get("enrollments") != len(ids):
            raise RuntimeError(f"roster batch {k}: {result.changed} for {len(ids)} people")

    def ready(self) -> None:
        """The roster is in: its figures kept, the runtime made for the attempts."""
        rows = 2 * self.learners
        self.roster = {
            "roster_rows_per_s": round(rows / self.roster_seconds, 1),
            "roster_cpu_ms_per_batch": round(self.roster_cpu * 1000 / self.roster_batches, 2),
            "roster_cpu_us_per_row": round(self.roster_cpu * 1e6 / rows, 2),
            "roster_statements_per_batch": round(
                sum(self.statements.values()) / self.roster_batches, 1
            ),
            "roster_statements": dict(self.statements.most_common()),
        }
        self.statements.clear()
        self.runtime = Runtime(
            settings=Settings(database_url=self.url, secret_key=self.secret), db=self.db
        )
        self.now = datetime.now(UTC)

    def batch(self, b: int) -> None:
        """Ingest timed batch `b` (its wall and CPU time added to this side's)."""
        attempts = [
            Attempt("t", f"e{b}-{i}-{j}", f"a{j}", f"p{b * 100 + i}", float(j), 10.0, self.now)
            for i in range(100)
            for j in range(10)
        ]
        t0, c0 = time.perf_counter(), time.process_time()
        result = self.runtime.ingest("t", svc.IngestBatch(attempts=attempts))
        self.seconds += time.perf_counter() - t0
        self.cpu += time.process_time() - c0
        if result.recorded != PER_BATCH:
            raise RuntimeError(f"batch {b}: {result.recorded} of {PER_BATCH} recorded")

    def figures(self, batches: int) -> dict[str, Any]:
        n = batches * PER_BATCH
        return {
            "database": self.db.engine.dialect.name,
            "attempts": n,
            "attempts_per_s": round(n / self.seconds, 1),
            "cpu_ms_per_attempt": round(self.cpu * 1000 / n, 3),
            "statements_per_batch": round(sum(self.statements.values()) / batches, 1),
            "statements": dict(self.statements.most_common()),
            **self.roster,
        }


def roster_batches_for(batches: int, roster_batches: int | None) -> int:
    """Roster batches to run: as asked, and at least enough for the attempts' people."""
    return max(-(-100 * batches // SETUP_BATCH), roster_batches or 0)


def run(url: str, batches: int, roster_batches: int | None = None) -> dict[str, Any]:
    rb = roster_batches_for(batches, roster_batches)
    side = _Side(url, batches, rb)
    try:
        roster_window = pressure.Window.start()
        for k in range(rb):
            side.roster_batch(k)
        side.ready()
        roster_pressure = roster_window.stop()
        window = pressure.Window.start()
        t0, c0 = time.perf_counter(), time.process_time()
        for b in range(batches):
            side.batch(b)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        out = side.figures(batches)
        # the loop's whole time, the attempts' building included, as always measured here
        out["attempts_per_s"] = round(batches * PER_BATCH / seconds, 1)
        out["cpu_ms_per_attempt"] = round(cpu * 1000 / (batches * PER_BATCH), 3)
        out["cpu_pressure"] = window.stop()
        out["roster_cpu_pressure"] = roster_pressure
        return out
    finally:
        side.db.dispose()


def run_in_turn(
    url: str, against: str, batches: int, roster_batches: int | None = None
) -> dict[str, Any]:
    """The same batches into two databases, one batch into each in turn (the roster's, then
    the attempts'), so both share whatever load the machine has meanwhile; each side's rate
    is its batches' own time."""
    rb = roster_batches_for(batches, roster_batches)
    sides = [_Side(url, batches, rb), _Side(against, batches, rb)]
    try:
        roster_window = pressure.Window.start()
        for k in range(rb):
            for side in sides if k % 2 == 0 else sides[::-1]:
                side.roster_batch(k)
        for side in sides:
            side.ready()
        roster_pressure = roster_window.stop()
        window = pressure.Window.start()
        for b in range(batches):
            for side in sides if b % 2 == 0 else sides[::-1]:
                side.batch(b)
        first, second = (s.figures(batches) for s in sides)
        return {
            "first": first,
            "second": second,
            "first_over_second": round(first["attempts_per_s"] / second["attempts_per_s"], 3),
            "roster_first_over_second": round(
                first["roster_rows_per_s"] / second["roster_rows_per_s"], 3
            ),
            "cpu_pressure": window.stop(),
            "roster_cpu_pressure": roster_pressure,
        }
    finally:
        for side in sides:
            side.db.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest_batches")
    parser.add_argument("url", help="a database URL (a PostgreSQL one is recreated)")
    parser.add_argument("--batches", type=int, default=20, help="batches of 1,000 attempts")
    parser.add_argument(
        "--against",
        metavar="URL",
        help="a second database, ingested batch by batch in turn with the first (its ratio)",
    )
    parser.add_argument(
        "--explain", action="store_true", help="PostgreSQL: log plans with auto_explain"
    )
    parser.add_argument(
        "--roster-batches",
        type=int,
        help=f"roster batches of {SETUP_BATCH} people and their enrollments (default and least:"
        " enough for the attempts' people)",
    )
    args = parser.parse_args(argv)
    if args.batches <= 0:
        parser.error("--batches: a positive number")
    if args.roster_batches is not None and args.roster_batches <= 0:
        parser.error("--roster-batches: a positive number")
    if args.explain:
        event.listen(Pool, "connect", _auto_explain)
    if args.against:
        print(json.dumps(run_in_turn(args.url, args.against, args.batches, args.roster_batches)))
    else:
        print(json.dumps(run(args.url, args.batches, args.roster_batches)))


def _auto_explain(dbapi_conn: Any, _record: object) -> None:
    """Every new PostgreSQL connection logs its slow statements' plans, analysed."""
    if "psycopg" not in type(dbapi_conn).__module__:
        return
    autocommit, dbapi_conn.autocommit = dbapi_conn.autocommit, True
    with dbapi_conn.cursor() as cur:
        cur.execute("LOAD 'auto_explain'")
        for setting, value in (
            ("log_min_duration", "3"),
            ("log_analyze", "on"),
            ("log_triggers", "on"),
            ("log_buffers", "on"),
            ("log_wal", "on"),
        ):
            cur.execute(f"SET auto_explain.{setting} = {value}")
    dbapi_conn.autocommit = autocommit


if __name__ == "__main__":
    main()
