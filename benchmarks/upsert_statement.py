"""CPU per `upsert` call (`adapters/db/mapping.py`) of 1, 16 and 1,000 rows of people, on
SQLite in memory: the statement's building and SQLAlchemy's work, beside SQLite's own.

    python -m benchmarks.upsert_statement [--out FILE]

Prints one JSON object (and writes it to FILE): microseconds of this process's CPU per call
and per row, with the CPU pressure over the run.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from benchmarks import pressure
from gradesync.adapters.db import schema as t
from gradesync.adapters.db.mapping import upsert

CALLS = {1: 5000, 16: 3000, 1000: 60}


def _rows(n: int, k: int) -> list[dict[str, Any]]:
    return [
        {"tenant_id": "t", "id": f"p{i}", "name": f"n{k}", "email": None, "sis_id": None}
        for i in range(n)
    ]


def run() -> dict[str, Any]:
    engine = create_engine("sqlite://")
    t.metadata.create_all(engine)
    window = pressure.Window.start()
    out: dict[str, Any] = {}
    with engine.begin() as conn:
        conn.execute(
            t.tenants.insert().values(id="t", name="T", policy={}, created_at=datetime.now(UTC))
        )
        for n, calls in CALLS.items():
            batches = [_rows(n, k) for k in range(2)]
            upsert(conn, t.people, batches[0])  # inserted once; then each call updates
            c0 = time.process_time()
            for k in range(calls):
                upsert(conn, t.people, batches[k % 2])
            cpu = time.process_time() - c0
            out[f"rows_{n}"] = {
                "us_per_call": round(cpu / calls * 1e6, 1),
                "us_per_row": round(cpu / calls / n * 1e6, 2),
            }
    engine.dispose()
    out["cpu_pressure"] = window.stop()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.upsert_statement")
    parser.add_argument("--out", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = json.dumps(run())
    if args.out:
        args.out.write_text(figures + "\n")
    print(figures)


if __name__ == "__main__":
    main()
