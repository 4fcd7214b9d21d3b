"""CPU per call of the storage calls that run for every few grades, on SQLite (a file in a
temporary directory): an `upsert` (`adapters/db/mapping.py`) of 1, 16 and 1,000 rows of
people; the settle writer's read of a batch's ledger rows (`LedgerRepo.get_keys`, 16
keys spread over 20 activities of a 4,000-row ledger) and its write of them
(`LedgerRepo.settle` of 6 and 16 delivered rows, each call's rows leased to it first and
untimed, `LedgerRepo.save_many` of the same, as the writer wrote them before, and of 1,000
as computing writes them).
SQLAlchemy's work and SQLite's.

    python -m benchmarks.storage_calls [--out FILE]

Prints one JSON object (and writes it to FILE): microseconds of this process's CPU per call,
with the CPU pressure over the run.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, tuple_

from benchmarks import pressure
from gradesync.adapters.db import schema as t
from gradesync.adapters.db.database import Database
from gradesync.adapters.db.mapping import upsert
from gradesync.adapters.db.repos.ledger import LedgerRepo
from gradesync.domain.ledger import LedgerKey
from gradesync.domain.model import DeliveryState, LedgerRow

UPSERT_CALLS = {1: 5000, 16: 3000, 1000: 60}
SAVE_CALLS = {6: 3000, 16: 2000, 1000: 40}  # a settle batch at 20 ms, a larger one, compute's
ACTIVITIES, LEARNERS, KEYS_PER_READ, READS = 20, 200, 16, 1500


def _people(n: int, k: int) -> list[dict[str, Any]]:
    return [
        {"tenant_id": "t", "id": f"p{i}", "name": f"n{k}", "email": None, "sis_id": None}
        for i in range(n)
    ]


def _cpu_per_call(calls: int, call: Callable[[int], object]) -> float:
    call(0)  # warm: the statement compiled, the pages read
    c0 = time.process_time()
    for i in range(calls):
        call(i)
    return round((time.process_time() - c0) / calls * 1e6, 1)


def _cpu_per_settle(
    calls: int, conn: Connection, ledger: LedgerRepo, claims: list[list[Claim]]
) -> float:
    """`_cpu_per_call` of `LedgerRepo.settle`, each call's rows leased to it first as a claim
    leases them (untimed): a settle writes a row only while it holds its claim's lease, so
    rows not leased would time a probe that writes nothing. Each call is checked to have
    written its rows (and given their leases back)."""
    spent = 0.0
    for i in range(calls + 1):  # the first one warms
        # the batches alternate, so each call finds the other's values and writes its own
        batch = claims[i % len(claims)]
        ledger.lease([(r.key, r.last_timestamp or UNTIL) for r, _, _ in batch], "w", UNTIL)
        c0 = time.process_time()
        ledger.settle(batch, "w")
        if i:
            spent += time.process_time() - c0
        _check_settled(conn, batch)
    return round(spent / calls * 1e6, 1)


def _check_settled(conn: Connection, batch: list[Claim]) -> None:
    """Every row of `batch` holds what the settle wrote and no lease: else the figure timed
    a write that changed nothing."""
    c = t.ledger.c
    keys = [(r.key.activity_id, r.key.person_id) for r, _, _ in batch]
    found = conn.execute(
        select(c.activity_id, c.person_id, c.delivered_hash, c.lease_owner).where(
            tuple_(c.activity_id, c.person_id).in_(keys)
        )
    ).all()
    sent = batch[0][0].delivered_hash
    written = sum(1 for _, _, h, owner in found if h == sent and owner is None)
    assert written == len(keys), f"the settle wrote {written} of {len(keys)} rows"


def _ledger(path: Path) -> None:
    """A ledger of ACTIVITIES x LEARNERS rows, written straight (its facts are not needed)."""
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA foreign_keys=OFF")
    raw.execute("BEGIN")
    raw.executemany(
        "INSERT INTO ledger (tenant_id, destination_id, activity_id, person_id, course_id, "
        "state, desired_hash, desired, tries, updated_at, priority) "
        "VALUES ('t', 'd', ?, ?, 'c', 'delivered', 'h', '{}', 0, '2026-12-04 00:00:00', 0)",
        [(f"a{a}", f"p{p}") for a in range(ACTIVITIES) for p in range(LEARNERS)],
    )
    raw.execute("COMMIT")
    raw.close()


UNTIL = datetime(2026, 12, 5, 1, 4, 3, tzinfo=UTC)  # a claim's lease_until
Claim = tuple[LedgerRow, str, datetime]  # a row to settle, its course, its claim's lease


def _settled(n: int, k: int) -> list[tuple[LedgerRow, str]]:
    """`n` ledger rows as the settle writer saves them (delivered, every column set)."""
    now = datetime(2026, 12, 5, 1, 2, 3, k, tzinfo=UTC)
    return [
        (
            LedgerRow(
                LedgerKey("t", "d", f"a{i % ACTIVITIES}", f"p{i // ACTIVITIES}"),
                DeliveryState.DELIVERED,
                desired_hash=f"h{k}",
                desired={"score": 0.5 + k, "max": 1.0, "comment": None, "progress": "done"},
                delivered_hash=f"h{k}",
                delivered_at=now,
                last_timestamp=now,
                remote_status=200,
                updated_at=now,
            ),
            "c",
        )
        for i in range(n)
    ]


def run() -> dict[str, Any]:
    window = pressure.Window.start()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calls.db"
        db = Database(f"sqlite:///{path}", secrets.token_urlsafe(32))
        db.upgrade()
        _ledger(path)
        rng = random.Random(1)
        batches = [
            [
                LedgerKey("t", "d", f"a{rng.randrange(ACTIVITIES)}", f"p{rng.randrange(LEARNERS)}")
                for _ in range(KEYS_PER_READ)
            ]
            for _ in range(50)
        ]
        with db.engine.begin() as conn:
            conn.execute(
                t.tenants.insert().values(id="t", name="T", policy={}, created_at=datetime.now(UTC))
            )
            for n, calls in UPSERT_CALLS.items():
                rows = [_people(n, k) for k in range(2)]  # inserted once, then updated
                out[f"upsert_{n}_rows_us"] = _cpu_per_call(
                    calls, lambda i, rows=rows: upsert(conn, t.people, rows[i % 2])
                )
            ledger = LedgerRepo(conn)
            out[f"ledger_get_keys_{KEYS_PER_READ}_us"] = _cpu_per_call(
                READS, lambda i: ledger.get_keys(batches[i % 50], lock=True)
            )
            for n, calls in SAVE_CALLS.items():
                saved = [_settled(n, k) for k in range(2)]
                out[f"ledger_save_many_{n}_rows_us"] = _cpu_per_call(
                    calls, lambda i, saved=saved: ledger.save_many(saved[i % 2], release_for="w")
                )
                if n < 1000:  # the settle writer's own write of the same rows, leased
                    claims = [[(r, c, UNTIL) for r, c in rows] for rows in saved]
                    out[f"ledger_settle_{n}_rows_us"] = _cpu_per_settle(calls, conn, ledger, claims)
        db.dispose()
    out["cpu_pressure"] = window.stop()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storage_calls")
    parser.add_argument("--out", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = json.dumps(run())
    if args.out:
        args.out.write_text(figures + "\n")
    print(figures)


if __name__ == "__main__":
    main()
