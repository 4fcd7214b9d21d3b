"""The claim queries' plans and times on a ledger of N rows (SQLite or PostgreSQL).

    python -m benchmarks.claim_plan sqlite:////tmp/claims.db 100000
    python -m benchmarks.claim_plan postgresql://postgres@127.0.0.1:54329/claims 100000

The database must be new (it is migrated and filled here; a database with tenants is
refused). Prints the time of a claim of 64 rows (min / median / max of 7) and the plan of
each claim query (EXPLAIN QUERY PLAN on SQLite, EXPLAIN ANALYZE on PostgreSQL): the order
must come from the index, with no sort step.
"""

# ruff: noqa
import sys, time
from datetime import UTC, datetime, timedelta
from sqlalchemy import event, text, insert
from gradesync.adapters.db.database import Database
from gradesync.adapters.db import schema as t

url = sys.argv[1]
n = int(sys.argv[2])
db = Database(url, "x" * 32)
db.upgrade()
now = datetime.now(UTC)
with db.engine.begin() as conn:
    if conn.execute(text("SELECT count(*) FROM tenants")).scalar():
        raise SystemExit("this database has tenants: give a new one")
    conn.execute(
        insert(t.tenants), [{"id": "t", "name": "t", "policy": {}, "created_at": now}]
    ) if "tenants" in t.metadata.tables else None
    conn.execute(
        insert(t.destinations),
        [
            {
                "tenant_id": "t",
                "id": f"d{i}",
                "kind": "lti13_ags",
                "name": "d",
                "profile": "generic",
                "config": {},
                "enabled": True,
                "created_at": now,
            }
            for i in range(3)
        ],
    )
    rows = []
    for i in range(n):
        st = "pending" if i % 3 else ("retrying" if i % 2 else "delivered")
        rows.append(
            {
                "tenant_id": "t",
                "destination_id": f"d{i % 3}",
                "activity_id": f"a{i % 40}",
                "person_id": f"p{i}",
                "course_id": f"c{i % 40 // 4}",
                "state": st,
                "tries": 0,
                "updated_at": now - timedelta(seconds=(i // 1000)),
                "priority": 0 if i % 10 else 1,
                "next_attempt_at": now - timedelta(seconds=5) if st == "retrying" else None,
            }
        )
    for k in range(0, n, 5000):
        conn.execute(insert(t.ledger), rows[k : k + 5000])
if db.engine.dialect.name == "postgresql":
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE ledger"))
else:
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE"))
captured = []


@event.listens_for(db.engine, "before_cursor_execute")
def cap(conn, cursor, statement, params, context, many):
    if (
        "FROM ledger" in statement
        and "ORDER BY" in statement
        and not statement.startswith("EXPLAIN")
    ):
        captured.append((statement, params))


ts = []
for _ in range(7):
    with db.uow() as uow:
        t0 = time.perf_counter()
        got = uow.ledger.claimable(now, 64, exclude_destinations=[("t", "d2")])
        ts.append(time.perf_counter() - t0)
ts.sort()
print(
    db.engine.dialect.name,
    n,
    "claimed",
    len(got),
    "ms per claim min/median/max",
    [round(x * 1000, 1) for x in (ts[0], ts[3], ts[-1])],
)
seen = set()
captured[:] = [c for c in captured if not (c[0] in seen or seen.add(c[0]))]
with db.engine.connect() as conn:
    for stmt, params in captured:
        print("----", stmt.split("WHERE")[1][:200].replace("\n", " "))
        if db.engine.dialect.name == "postgresql":
            for r in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + stmt, params):
                print("  ", r[0])
        else:
            for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + stmt, params):
                print("  ", r)
