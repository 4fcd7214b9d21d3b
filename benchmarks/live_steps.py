"""Where a live grade's time goes, step by step (`python -m benchmarks.limits --only live
--trace-steps`).

A trigger, installed in the benchmark's own database for the run, stamps when each live
ledger row (priority 0) becomes pending. With the attempt's own `recorded_at` and the
sandbox's time of storing the score, each live grade's latency splits into:

- accepted -> computed: the API's answer to the grade's ledger row written pending;
- computed -> in the LMS: claimed, waiting for a slot, sent, stored by the sandbox.

The trigger costs a little on every ledger write, so a run with it is for diagnosis, not
for the headline figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text

from benchmarks import stats

_TABLE = "bench_live_pending"

_POSTGRES = [
    f"CREATE TABLE IF NOT EXISTS {_TABLE} (activity_id text, person_id text, at timestamptz)",
    f"""CREATE OR REPLACE FUNCTION bench_live_pending() RETURNS trigger AS $$
        BEGIN
          IF NEW.state = 'pending' AND NEW.priority = 0 THEN
            INSERT INTO {_TABLE} VALUES (NEW.activity_id, NEW.person_id, clock_timestamp());
          END IF;
          RETURN NEW;
        END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS bench_live_pending ON ledger",
    """CREATE TRIGGER bench_live_pending AFTER INSERT OR UPDATE ON ledger
       FOR EACH ROW EXECUTE FUNCTION bench_live_pending()""",
]

# seconds since the epoch, to the millisecond
_SQLITE_NOW = "(julianday('now') - 2440587.5) * 86400.0"
_SQLITE = [
    f"CREATE TABLE IF NOT EXISTS {_TABLE} (activity_id TEXT, person_id TEXT, at REAL)",
    *(
        f"""CREATE TRIGGER IF NOT EXISTS bench_live_pending_{when.lower()}
            AFTER {when} ON ledger WHEN NEW.state = 'pending' AND NEW.priority = 0
            BEGIN
              INSERT INTO {_TABLE} VALUES (NEW.activity_id, NEW.person_id, {_SQLITE_NOW});
            END"""
        for when in ("INSERT", "UPDATE")
    ),
]


def install(engine: Engine) -> None:
    statements = _POSTGRES if engine.dialect.name == "postgresql" else _SQLITE
    with engine.begin() as conn:
        for sql in statements:
            conn.execute(text(sql))


def _epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def split(
    engine: Engine,
    accepted: Mapping[tuple[str, str], float],
    stored: Mapping[tuple[str, str], float],
    *,
    window: float = 10.0,
) -> dict[str, Any]:
    """Latency summaries of each step, over the live grades with a stamp, and for the grades
    accepted in each `window` seconds of the live minute. `accepted` and `stored`:
    (activity, person) -> seconds since the epoch."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT activity_id, person_id, min(at) FROM {_TABLE} GROUP BY 1, 2")
        ).all()
    computed = {(a, p): _epoch(at) for a, p, at in rows}
    keys = [k for k in accepted if k in computed and k in stored]
    start = min((accepted[k] for k in keys), default=0.0)
    windows: dict[int, list[tuple[str, str]]] = {}
    for k in keys:
        windows.setdefault(int((accepted[k] - start) // window), []).append(k)

    def steps(of: list[tuple[str, str]]) -> dict[str, Any]:
        return {
            "accepted_to_computed": stats.summary_ms([computed[k] - accepted[k] for k in of]),
            "computed_to_in_lms": stats.summary_ms([stored[k] - computed[k] for k in of]),
        }

    return {
        "grades": len(keys),
        **steps(keys),
        "by_window": [{"from_s": i * window, **steps(windows[i])} for i in sorted(windows)],
    }
