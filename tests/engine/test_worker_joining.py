"""A worker joining the others on PostgreSQL (`WorkerShare`): it waits two heartbeats before
sending only when there are others who must count it first. A lone worker back from idle
sends its first grade at once; it used to wait two heartbeats for nobody (about 3 s per
live grade with the default 1 s beat, for a deployment's only worker)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from gradesync.adapters.db.database import Database
from gradesync.services.clock import SystemClock
from gradesync.services.delivery.share import WorkerShare

pytestmark = pytest.mark.postgres

BEAT = timedelta(seconds=10)  # a worker waiting to be counted waits two: 20 s
PROMPT = 5.0  # seconds: far less than two beats, far more than a heartbeat's transaction


def _share(db: Database, worker_id: str) -> WorkerShare:
    return WorkerShare(db.uow, SystemClock(), worker_id, beat=BEAT, alive=timedelta(seconds=30))


async def test_a_worker_counted_alone_sends_at_once(postgres_db: Database) -> None:
    share = _share(postgres_db, "alone")
    try:
        await asyncio.wait_for(share.ready(), PROMPT)
        assert share.live == 1
    finally:
        await share.leave()


async def test_a_worker_joining_a_sender_waits_until_the_sender_counts_it(
    postgres_db: Database,
) -> None:
    sender, joiner = _share(postgres_db, "sender"), _share(postgres_db, "joiner")
    try:
        await asyncio.wait_for(sender.ready(), PROMPT)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(joiner.ready(), PROMPT)
        assert joiner.live == 2
    finally:
        await asyncio.gather(sender.leave(), joiner.leave())


async def test_of_two_workers_joining_together_only_one_counts_itself_alone(
    postgres_db: Database,
) -> None:
    a, b = _share(postgres_db, "a"), _share(postgres_db, "b")
    ready = [asyncio.create_task(a.ready()), asyncio.create_task(b.ready())]
    try:
        done, _ = await asyncio.wait(ready, timeout=PROMPT)
        assert len(done) == 1  # the other waits to be counted
        assert sorted([a.live, b.live]) == [1, 2]
    finally:
        for task in ready:
            task.cancel()
        await asyncio.gather(*ready, return_exceptions=True)
        await asyncio.gather(a.leave(), b.leave())
