"""The claim queries' plans and times on a ledger of N rows (SQLite or PostgreSQL).

    python -m benchmarks.claim_plan sqlite:////tmp/claims.db 100000
    python -m benchmarks.claim_plan postgresql://postgres@127.0.0.1:54329/claims 100000

The database must be new (it is migrated and filled here; a database with tenants is
refused). The ledger: three destinations, 40 activities, one row per learner; two thirds
pending, a sixth retrying and due (all at one time, as a paused destination leaves them),
a sixth delivered. Prints the time of a claim of 64 rows (min / median / max of 7) and the
plan of each claim query (EXPLAIN QUERY PLAN on SQLite, EXPLAIN ANALYZE on PostgreSQL): the
order must come from an index, with no sort step.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, insert, text

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.database import Database


def fill(db: Database, n: int, now: datetime) -> None:
    with db.engine.begin() as conn:
        if conn.execute(text("SELECT count(*) FROM tenants")).scalar():
            raise SystemExit("this database has tenants: give a new one")
        conn.execute(insert(t.tenants), [{"id": "t", "name": "t", "policy": {}, "created_at": now}])
        conn.execute(
            insert(t.destinations),
            [
                {"tenant_id": "t", "id": f"d{i}", "kind": "lti13_ags", "name": "d",
                 "profile": "generic", "config": {}, "enabled": True, "created_at": now}
                for i in range(3)
            ],
        )  # fmt: skip
        rows: list[dict[str, Any]] = []
        for i in range(n):
            state = "pending" if i % 3 else ("retrying" if i % 2 else "delivered")
            rows.append(
                {
                    "tenant_id": "t",
                    "destination_id": f"d{i % 3}",
                    "activity_id": f"a{i % 40}",
                    "person_id": f"p{i}",
                    "course_id": f"c{i % 40 // 4}",
                    "state": state,
                    "tries": 0,
                    "updated_at": now - timedelta(seconds=i // 1000),
                    "priority": 0 if i % 10 else 1,
                    "next_attempt_at": now - timedelta(seconds=5) if state == "retrying" else None,
                }
            )
        for k in range(0, n, 5000):
            conn.execute(insert(t.ledger), rows[k : k + 5000])
        conn.execute(
            text("ANALYZE ledger" if db.engine.dialect.name == "postgresql" else "ANALYZE")
        )


def main(url: str, n: int) -> None:
    db = Database(url, "x" * 32)
    db.upgrade()
    now = datetime.now(UTC)
    fill(db, n, now)
    captured: dict[str, Any] = {}

    @event.listens_for(db.engine, "before_cursor_execute")
    def capture(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if "FROM ledger" in statement and "ORDER BY" in statement:
            captured.setdefault(statement, params)

    times = []
    for _ in range(7):
        with db.uow() as uow:
            t0 = time.perf_counter()
            got = uow.ledger.claimable(now, 64, exclude_destinations=[("t", "d2")])
            times.append(time.perf_counter() - t0)
    times.sort()
    ms = [round(x * 1000, 1) for x in (times[0], times[3], times[-1])]
    print(f"{db.engine.dialect.name}, {n} rows: claimed {len(got)}, ms per claim {ms}")
    event.remove(db.engine, "before_cursor_execute", capture)
    pg = db.engine.dialect.name == "postgresql"
    with db.engine.connect() as conn:
        for statement, params in captured.items():
            print("----", " ".join(statement.split("WHERE", 1)[1].split())[:160])
            explain = "EXPLAIN (ANALYZE, BUFFERS) " if pg else "EXPLAIN QUERY PLAN "
            for r in conn.exec_driver_sql(explain + statement, params):
                print("   ", r[0] if pg else r)
    db.dispose()


def cli(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.claim_plan",
        description="The claim queries' plans and times on a ledger of N rows.",
    )
    ap.add_argument(
        "url", help="a new database (SQLite or PostgreSQL); one with tenants is refused"
    )
    ap.add_argument("rows", type=int, help="ledger rows to fill it with, e.g. 100000")
    args = ap.parse_args(argv)
    if args.rows < 1:
        ap.error("rows: a positive number of ledger rows")
    main(args.url, args.rows)


if __name__ == "__main__":
    cli()
