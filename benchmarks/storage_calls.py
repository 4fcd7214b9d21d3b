"""CPU per call of the storage calls that run for every few grades, on SQLite (a file in a
temporary directory): an `upsert` (`adapters/db/mapping.py`) of 1, 16 and 1,000 rows of
people; the settle writer's read of a batch's ledger rows (`LedgerRepo.get_keys`, 16
keys spread over 20 activities of a 4,000-row ledger) and its write of them
(`LedgerRepo.settle` of 6 and 16 delivered rows, each call's rows leased to it first and
untimed, `LedgerRepo.save_many` of the same, as the writer wrote them before, and of 1,000
as computing writes them).
SQLAlchemy's work and SQLite's. Then the settle writer's whole write of a batch of 16
delivered outcomes (`SettleWriter._write`: its transaction, the ledger, the delivery log,
the commit), its rows leased to it first (untimed), both ways in turn: each outcome carrying
the row its claim read, written without reading it again (`as_claimed`), and without it,
the rows read again under lock (`read_again`, the way every batch was written before).

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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, tuple_

from benchmarks import pressure
from gradesync.adapters.db import schema as t
from gradesync.adapters.db.database import Database
from gradesync.adapters.db.mapping import upsert
from gradesync.adapters.db.repos.ledger import LedgerRepo
from gradesync.domain.ledger import Delivered, LedgerKey
from gradesync.domain.model import DeliveryState, LedgerRow
from gradesync.services.clock import SystemClock
from gradesync.services.delivery import Settlement, SettleWriter
from gradesync.services.engine_config import EngineSettings

UPSERT_CALLS = {1: 5000, 16: 3000, 1000: 60}
SAVE_CALLS = {6: 3000, 16: 2000, 1000: 40}  # a settle batch at 20 ms, a larger one, compute's
ACTIVITIES, LEARNERS, KEYS_PER_READ, READS = 20, 200, 16, 1500
WRITES = 600  # settle writer batches each way (of KEYS_PER_READ outcomes)


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


def _cpu_per_write(db: Database, batches: list[list[LedgerKey]]) -> dict[str, float]:
    """CPU per batch of `SettleWriter._write`, each way in turn (`as_claimed`: the outcomes
    carry the rows as their claims read them; `read_again`: they do not). Each batch's rows
    are read and leased first, untimed, as a claim reads and leases them; each write is
    checked to have written them all (delivered, their leases given back)."""
    writer = SettleWriter(db.uow, SystemClock(), EngineSettings(), "w")
    spent = {"as_claimed": 0.0, "read_again": 0.0}
    for i in range(2 * WRITES + 2):  # the first of each way warms
        way = "as_claimed" if i % 2 else "read_again"
        keys = list(dict.fromkeys(batches[i % len(batches)]))
        stamp = datetime(2026, 12, 5, 1, 2, 3, tzinfo=UTC) + timedelta(microseconds=i)
        with db.uow() as uow:
            read = uow.ledger.get_keys(keys, lock=True)
            uow.ledger.lease([(k, stamp) for k in keys], "w", UNTIL)
            uow.commit()
        batch = [
            Settlement(
                k,
                "c",
                Delivered(200, "ok"),
                UNTIL,
                sent_hash=read[k].desired_hash,
                timestamp=stamp,
                payload={"userId": k.person_id, "scoreGiven": 0.5, "scoreMaximum": 1.0},
                latency_ms=50.0,
                logged=True,
                claimed=read[k] if way == "as_claimed" else None,
            )
            for k in keys
        ]
        c0 = time.process_time()
        written, _ = writer._write(batch)
        if i >= 2:
            spent[way] += time.process_time() - c0
        assert len(written) == len(keys) and all(
            r.state is DeliveryState.DELIVERED for r in written
        ), f"the settle writer wrote {len(written)} of {len(keys)} rows"
    assert (writer.read_again, writer.claims_ended) == (0, 0), "a write read its rows again"
    with db.uow() as uow:
        held = uow.conn.execute(
            select(t.ledger.c.lease_owner).where(t.ledger.c.lease_owner.is_not(None))
        )
        assert held.first() is None, "a settle left a lease"
    return {way: round(cpu / WRITES * 1e6, 1) for way, cpu in spent.items()}


def _ledger(path: Path) -> None:
    """A ledger of ACTIVITIES x LEARNERS rows, written straight (its facts are not needed)."""
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA foreign_keys=OFF")
    raw.execute("BEGIN")
    raw.executemany(
        "INSERT INTO ledger (tenant_id, destination_id, activity_id, person_id, course_id, "
        "state, desired_hash, desired, tries, updated_at, priority) "
        # a time as SQLAlchemy stores it (six digits of fraction): a settle without a read
        # compares what the claim read with the stored text
        "VALUES ('t', 'd', ?, ?, 'c', 'delivered', 'h', '{}', 0, '2026-12-04 00:00:00.000000', 0)",
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
        for way, us in _cpu_per_write(db, batches).items():
            out[f"settle_writer_{KEYS_PER_READ}_outcomes_{way}_us"] = us
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
