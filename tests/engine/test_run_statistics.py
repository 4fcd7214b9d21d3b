"""A process that grows the ledger tells PostgreSQL's planner (a run computing its scope, a
bulk import's dirty keys), so sending and live grades read and lease rows through the primary
key, not by scanning every row of the LMS until autovacuum comes round."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from gradesync.adapters.db.database import Database
from gradesync.domain.model import RunScope, RunStage, Trigger
from gradesync.services.clock import SystemClock
from gradesync.services.ledger_statistics import FIRST_REFRESH
from gradesync.services.runs import request_run
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory
from tests.engine.conftest import COURSE, DEST, FAST, T, learner, post, seed

pytestmark = pytest.mark.postgres  # SQLite needs no statistics: see LedgerRepo

NOW = datetime(2026, 12, 3, tzinfo=UTC)
LEASE = (
    "EXPLAIN (FORMAT JSON) UPDATE ledger SET lease_owner = 'w' WHERE tenant_id = :t"
    " AND destination_id = :d AND activity_id = 'a1' AND person_id = :p"
)


@pytest.fixture
def no_autovacuum(postgres_db: Database) -> Iterator[Database]:
    """Autovacuum would analyze the ledger sooner or later: here only the run may."""
    with postgres_db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE ledger SET (autovacuum_enabled = false)"))
    yield postgres_db
    with postgres_db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE ledger RESET (autovacuum_enabled)"))


def _indexes(plan: dict) -> set[str]:  # type: ignore[type-arg]
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= _indexes(child)
    return found


def _lease_plan(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        got = conn.execute(text(LEASE), {"t": T, "d": DEST, "p": learner(7)}).scalar()
    return _indexes((json.loads(got) if isinstance(got, str) else got)[0]["Plan"])


async def test_a_run_that_grows_the_ledger_refreshes_its_statistics(
    no_autovacuum: Database,
) -> None:
    db = no_autovacuum
    seed(db, learners=FIRST_REFRESH + 200)
    engine = Engine(db.uow, SystemClock(), DoubleFactory(), FAST)
    try:
        run, _ = request_run(
            db.uow, None, SystemClock(), RunScope(T, DEST, COURSE), Trigger.REMASTER, "ada"
        )
        done = await engine.execute_run(run.id)
    finally:
        await engine.aclose()
    assert done is not None and done.stage is RunStage.FINISHED
    assert done.counts["computed"] >= FIRST_REFRESH
    assert _lease_plan(db) == {"pk_ledger"}


async def test_a_bulk_import_computed_as_live_grades_refreshes_them_too(
    no_autovacuum: Database,
) -> None:
    db = no_autovacuum
    n = FIRST_REFRESH + 200
    seed(db, learners=n)
    engine = Engine(db.uow, SystemClock(), DoubleFactory(), FAST)
    try:
        for first in range(0, n, 500):  # an import, in batches a request may hold
            post(db, None, [("a1", learner(i), 7.0) for i in range(first, min(n, first + 500))])
        stats = await engine.process_dirty()
        await engine.statistics_refreshed()
    finally:
        await engine.aclose()
    assert stats.changed == n
    assert _lease_plan(db) == {"pk_ledger"}


def test_a_refresh_that_would_wait_on_the_table_gives_up_and_changes_nothing(
    postgres_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    db = postgres_db
    seed(db, learners=2)
    with db.engine.connect() as holder:  # as autovacuum holds it while vacuuming
        holder.execute(text("LOCK TABLE ledger IN SHARE UPDATE EXCLUSIVE MODE"))
        with db.uow() as uow:
            uow.ledger.refresh_statistics()  # gives up after its lock timeout
            uow.tenants.upsert(replace(uow.tenants.get(T), name="Still usable"), NOW)
            uow.commit()
        holder.rollback()
    assert "refreshing the statistics of ledger" in caplog.text
    with db.uow() as uow:
        assert uow.tenants.get(T).name == "Still usable"
