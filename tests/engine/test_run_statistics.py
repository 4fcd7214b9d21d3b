"""A run that grows the ledger tells PostgreSQL's planner, so its sending (and live grades
meanwhile) read and lease rows through the primary key, not a scan of the whole LMS's rows
until autovacuum comes round."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from gradesync.adapters.db.database import Database
from gradesync.domain.model import RunScope, RunStage, Trigger
from gradesync.services.clock import SystemClock
from gradesync.services.runs import request_run
from gradesync.services.sync import STATISTICS_AFTER
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory
from tests.engine.conftest import COURSE, DEST, FAST, T, learner, seed

pytestmark = pytest.mark.postgres

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
    seed(db, learners=STATISTICS_AFTER + 200)
    engine = Engine(db.uow, SystemClock(), DoubleFactory(), FAST)
    try:
        run, _ = request_run(
            db.uow, None, SystemClock(), RunScope(T, DEST, COURSE), Trigger.REMASTER, "ada"
        )
        done = await engine.execute_run(run.id)
    finally:
        await engine.aclose()
    assert done is not None and done.stage is RunStage.FINISHED
    assert done.counts["computed"] >= STATISTICS_AFTER
    assert _lease_plan(db) == {"pk_ledger"}
