"""The settle writer's outcomes left unwritten and leases found gone are served on
`/metrics` (the server `gradesync worker --metrics-address` runs, over its real HTTP), not
only logged: a result's lease runs out, another worker claims it, and what the first
worker then writes for it is counted."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from gradesync.adapters import metrics
from gradesync.adapters.db.database import Database
from gradesync.adapters.metrics_server import MetricsServer
from gradesync.domain.ledger import Rejected
from gradesync.domain.reasons import Reason
from gradesync.services.clock import SystemClock
from gradesync.services.delivery import Settlement, SettleWriter
from gradesync.services.engine_config import EngineSettings
from tests.support.metrics import value

from .conftest import COURSE, claimed

ENDED = "gradesync_results_claim_ended_before_written_total"
GONE = "gradesync_results_given_back_without_lease_total"


@pytest.fixture
def scrape(db: Database) -> Iterator[str]:
    """The URL of a worker's metrics server over `db`."""
    server = MetricsServer("127.0.0.1", 0, lambda: metrics.exposition(db.engine), None)
    try:
        yield server.url
    finally:
        server.close()


def _served(url: str) -> str:
    r = httpx.get(url)
    assert r.status_code == 200
    return r.text


def _writer(db: Database) -> SettleWriter:
    """Worker w:1's writer, counting in the process's registry as a served worker's does."""
    settings = replace(EngineSettings(), settle_gather=timedelta(0))
    return SettleWriter(db.uow, SystemClock(), settings, "w:1", meter=metrics.PrometheusMeter())


async def _claimed_again(db: Database) -> tuple[Settlement, Settlement]:
    """A result w:1 claimed, its lease run out, then claimed by w:2: w:1's refusal of it
    and its giving it back unsent, as w:1 would put them."""
    key, now, sent = await claimed(db, -timedelta(seconds=1))
    first = now - timedelta(seconds=1)  # w:1's lease, run out
    with db.uow() as uow:
        uow.ledger.lease([(key, now)], "w:2", now + timedelta(minutes=2))
        uow.commit()
    refused = Rejected(Reason("remote_4xx", "refused"), 422)
    return (
        Settlement(key, COURSE, refused, first, sent_hash=sent, logged=True),
        Settlement(key, COURSE, None, first),
    )


@pytest.mark.parametrize(
    ("put", "counted", "not_counted"),
    [("outcome", ENDED, GONE), ("let_go", GONE, ENDED)],
    ids=["an-outcome-left-unwritten", "a-result-given-back-without-its-lease"],
)
async def test_what_a_claim_whose_lease_ran_out_writes_is_counted_on_metrics(
    db: Database, scrape: str, put: str, counted: str, not_counted: str
) -> None:
    """w:1's refusal of the result is not written (its claim ended), or its giving the
    result back unsent finds no lease of its own to give back: each is counted once."""
    outcome, let_go = await _claimed_again(db)
    before = _served(scrape)
    writer = _writer(db)
    try:
        writer.put(outcome if put == "outcome" else let_go)
        await writer.flush()
    finally:
        await writer.stop()
    assert (writer.claims_ended, writer.leases_gone) == ((1, 0) if put == "outcome" else (0, 1))
    after = _served(scrape)
    assert value(after, counted) - value(before, counted) == 1
    assert value(after, not_counted) == value(before, not_counted)
