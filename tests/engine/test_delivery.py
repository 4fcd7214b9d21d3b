"""Auto sync and delivery against the in-memory double, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.metrics import LedgerCollector
from gradesync.domain.model import DeliveryState, Destination, LedgerKey
from gradesync.domain.pauses import PauseCause
from gradesync.domain.reasons import Reason
from gradesync.services.clock import SystemClock
from gradesync.services.delivery import DeliveryScope, outcome_of_failure
from gradesync.services.delivery.background import BackgroundWrites
from gradesync.services.delivery.governor import DestinationLimits, Governor, RateLimiter
from gradesync.services.destination import FailureClass, RemoteFailure
from gradesync.services.worker import Engine
from gradesync.testing import DEADLINE, ManualClock, wait_for_async
from gradesync.testing.double import not_synced, server_error, slow_down, unknown_user
from tests.engine.conftest import (
    COURSE,
    DEST,
    FAST,
    Harness,
    T,
    learner,
    ledger,
    post,
    seed,
    states,
)


def _item() -> str:
    return "https://lms/courses/1/items/a1"


async def test_an_attempt_is_delivered_and_logged(harness: Harness, db: Database) -> None:
    seed(db, learners=1)
    post(db, harness.waker, [("a1", learner(0), 7.0)])
    stats = await harness.engine.process_dirty()
    assert stats.dirty == 1 and stats.pending == 1
    sent = await harness.engine.deliver_due()
    assert (sent.sent, sent.delivered) == (1, 1)
    assert harness.remote.score_of(_item(), "sub-p000") == 7.0
    row = ledger(db)[("a1", learner(0))]
    assert row.state is DeliveryState.DELIVERED and row.delivered_hash == row.desired_hash
    with db.uow() as uow:
        log = uow.deliveries.for_key(LedgerKey(T, DEST, "a1", learner(0)))
    assert [e["outcome"] for e in log] == ["delivered"]
    assert log[0]["payload"]["scoreGiven"] == 7.0
    # nothing more to do: a second pass sends nothing
    again = await harness.engine.deliver_due()
    assert again.sent == 0


async def test_learner_without_person_link_is_skipped_with_reason(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=2, linked=1)
    post(db, harness.waker, [("a1", learner(0), 5.0), ("a1", learner(1), 6.0)])
    await harness.engine.process_dirty()
    await harness.engine.deliver_due()
    row = ledger(db)[("a1", learner(1))]
    assert row.state is DeliveryState.SKIPPED
    assert row.reason_code == "no_person_link"
    assert row.reason_text is not None and "never launched gradesync" in row.reason_text
    assert harness.remote.sends == 1  # only the linked learner was sent


async def test_five_quick_attempts_coalesce_into_one_send(harness: Harness, db: Database) -> None:
    seed(db, learners=1)
    for score in (3.0, 4.0, 8.0, 6.0, 9.0):
        post(db, harness.waker, [("a1", learner(0), score)])
    await harness.engine.process_dirty()
    await harness.engine.deliver_due()
    assert harness.remote.sends == 1
    assert harness.remote.score_of(_item(), "sub-p000") == 9.0


async def test_an_older_value_never_overtakes_a_newer_one(harness: Harness, db: Database) -> None:
    """5 is in flight when 7 arrives: 7 goes next, with a later timestamp, and stays."""
    seed(db, learners=1)
    remote = harness.remote
    remote.hold = asyncio.Event()
    post(db, harness.waker, [("a1", learner(0), 5.0)])
    await harness.engine.process_dirty()
    first = asyncio.create_task(harness.engine.deliver_due())
    await asyncio.wait_for(remote.arrived.wait(), DEADLINE)
    post(db, harness.waker, [("a1", learner(0), 7.0)])
    await harness.engine.process_dirty()  # the key is leased: recomputed, not sent twice
    remote.hold.set()
    await first  # the pass sends 5, sees 7 is wanted now, and sends it next
    history = remote.history[(_item(), "sub-p000")]
    assert [s.score_given for s in history] == [5.0, 7.0]
    assert history[0].timestamp < history[1].timestamp
    assert remote.overlapping == []
    assert ledger(db)[("a1", learner(0))].state is DeliveryState.DELIVERED


async def test_a_pass_claims_only_when_something_may_be_due(harness: Harness, db: Database) -> None:
    """One claim for one row, not one after every send; rows computed during the pass (by
    this process) are claimed by it at once, while its other work is still out. The poll
    (a claim for rows other processes computed) is longer than the test: a slow pass must
    not add a claim of its own."""
    seed(db, learners=3, activities=("a1", "a2"))
    await harness.use(replace(FAST, poll=timedelta(hours=1)))
    d = harness.engine.deliverer
    claims: list[int] = []
    real = d.claim

    async def counting(scope: DeliveryScope, limit: int, **kw: Any) -> Any:
        out = await real(scope, limit, **kw)
        claims.append(len(out[0]))
        return out

    d.claim = counting  # type: ignore[method-assign]
    post(db, harness.waker, [("a1", learner(0), 5.0)])
    await harness.engine.process_dirty()
    assert (await harness.engine.deliver_due()).delivered == 1
    assert claims == [1]

    claims.clear()
    held = harness.remote.column_hold["a2"] = asyncio.Event()
    post(db, harness.waker, [("a2", learner(1), 6.0)])
    await harness.engine.process_dirty()
    passing = asyncio.create_task(harness.engine.deliver_due())
    await harness.until(lambda: harness.remote.column_calls == 2)  # a2's line item is held
    post(db, harness.waker, [("a1", learner(2), 7.0)])
    await harness.engine.process_dirty()
    a1 = "https://lms/courses/1/items/a1"
    await harness.remote.wait_for(lambda: harness.remote.score_of(a1, "sub-p002") == 7.0)
    held.set()
    assert (await passing).delivered == 2
    assert claims == [1, 1]


async def test_server_errors_back_off_then_deliver(harness: Harness, db: Database) -> None:
    seed(db, learners=1)
    harness.remote.fail_next(2, server_error())
    await harness.start()
    post(db, harness.waker, [("a1", learner(0), 4.0)])
    await harness.all_delivered(1)
    assert harness.remote.sends == 3
    with db.uow() as uow:
        log = uow.deliveries.for_key(LedgerKey(T, DEST, "a1", learner(0)))
    assert [e["outcome"] for e in reversed(log)] == ["retrying", "retrying", "delivered"]
    assert log[-1]["remote_status"] == 502


async def test_retry_after_is_honoured_for_the_whole_destination(
    harness: Harness, db: Database
) -> None:
    # A manual clock: the Retry-After ends when the test says, not when a slow machine
    # happens to get there (a real 0.6 s window made this test flaky under load).
    seed(db, learners=3, config={"concurrency": 1})
    clock = ManualClock()
    engine = Engine(db.uow, clock, harness.factory, FAST)
    try:
        harness.remote.fail_next(1, slow_down(30))
        post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(3)])
        await engine.process_dirty()
        await engine.deliver_due()
        # the 429 gated the destination: the other two were not sent, nothing was rejected
        assert harness.remote.sends == 1
        assert states(db) == {"retrying": 1, "pending": 2}
        with db.uow() as uow:
            dest = uow.destinations.get(T, DEST)
        assert dest is not None and dest.paused_until == clock.now() + timedelta(seconds=30)
        assert dest.pause_reason is not None and "slow down" in dest.pause_reason
        assert dest.pause_cause is PauseCause.SLOW_DOWN
        clock.advance(timedelta(seconds=29))
        assert (await engine.deliver_due()).sent == 0  # nothing goes out before Retry-After
        clock.advance(timedelta(seconds=1))
        await engine.deliver_due()
        assert states(db) == {"delivered": 3}
        row = ledger(db)[("a1", learner(0))]
        assert row.tries == 0  # slowing down is not a failed try
    finally:
        await engine.aclose()


async def test_rejections_are_not_retried_and_keep_the_remote_words(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=2)
    harness.remote.fail_person("sub-p001", unknown_user())
    post(db, harness.waker, [("a1", learner(0), 5.0), ("a1", learner(1), 6.0)])
    await harness.engine.process_dirty()
    await harness.engine.deliver_due()
    row = ledger(db)[("a1", learner(1))]
    assert row.state is DeliveryState.REJECTED
    assert row.reason_code == "unknown_user"
    assert row.remote_status == 422
    assert row.remote_message == "User not found in course or is not a student"
    assert row.reason_text is not None and "course's link" in row.reason_text
    sends = harness.remote.sends
    await harness.engine.process_dirty()
    await harness.engine.deliver_due()
    assert harness.remote.sends == sends  # not retried until the facts change
    assert ledger(db)[("a1", learner(0))].state is DeliveryState.DELIVERED


async def test_a_column_not_synced_by_design_is_skipped_not_rejected(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=2, activities=("a1", "a2"))
    harness.remote.column_failures["a2"] = not_synced()
    post(db, harness.waker, [(a, learner(i), 5.0) for i in range(2) for a in ("a1", "a2")])
    await harness.engine.process_dirty()
    stats = await harness.engine.deliver_due()
    assert (stats.delivered, stats.skipped, stats.rejected, stats.retrying) == (2, 2, 0, 0)
    assert stats.sent == 2  # nothing of a2 was sent
    for i in range(2):
        row = ledger(db)[("a2", learner(i))]
        assert row.state is DeliveryState.SKIPPED and row.reason_code == "not_selected_for_sis"
        assert row.reason_text is not None and "not selected for SIS passback" in row.reason_text
        assert "Tick 'Sync to SIS'" in row.reason_text
        with db.uow() as uow:
            assert uow.deliveries.for_key(LedgerKey(T, DEST, "a2", learner(i))) == []
    assert not any(item.endswith("/a2") for item in harness.remote.columns)
    governor = harness.engine.deliverer.governor
    d = governor.destinations[(T, DEST)]
    lim = governor.limits_for(d)
    assert lim.breaker.failures == 0 and lim.gate_until is None  # says nothing about health
    # the safety net: a NOT_SYNCED reaching the failure handler is a skip too
    outcome = outcome_of_failure(governor, not_synced(), d, lim)
    assert isinstance(outcome, Reason) and outcome.code == "not_selected_for_sis"
    # once the column is synced (an admin ticked it), recomputing the keys sends them
    del harness.remote.column_failures["a2"]
    with db.uow() as uow:
        uow.dirty.mark_many([(T, COURSE, "a2", learner(i)) for i in range(2)], datetime.now(UTC))
        uow.commit()
    await harness.engine.process_dirty()
    again = await harness.engine.deliver_due()
    assert (again.delivered, again.skipped) == (2, 0)
    assert all(ledger(db)[("a2", learner(i))].state is DeliveryState.DELIVERED for i in range(2))


async def test_a_column_being_created_holds_up_only_its_own_rows(
    harness: Harness, db: Database
) -> None:
    """The LMS is slow to create a2's line item: a1's grades, claimed in the same batch, are
    sent meanwhile, and a2's follow once its line item exists."""
    seed(db, learners=3, activities=("a1", "a2"))
    held = harness.remote.column_hold["a2"] = asyncio.Event()
    post(db, harness.waker, [(a, learner(i), 5.0 + i) for i in range(3) for a in ("a2", "a1")])
    await harness.engine.process_dirty()
    delivering = asyncio.create_task(harness.engine.deliver_due())
    a1 = "https://lms/courses/1/items/a1"
    await harness.remote.wait_for(
        lambda: all(harness.remote.score_of(a1, f"sub-{learner(i)}") is not None for i in range(3))
    )
    assert harness.remote.sends == 3 and not delivering.done()
    held.set()
    stats = await asyncio.wait_for(delivering, DEADLINE)
    assert (stats.claimed, stats.delivered) == (6, 6)
    assert harness.remote.score_of("https://lms/courses/1/items/a2", "sub-p002") == 7.0


async def test_a_new_column_is_created_once_by_passes_that_meet_it_at_once(
    harness: Harness, db: Database
) -> None:
    """Claims of one row each: the second finds the first still creating the line item,
    waits for it and uses its link; the link is in the database when the pass returns."""
    from dataclasses import replace

    seed(db, learners=2)
    engine = Engine(db.uow, SystemClock(), harness.factory, replace(FAST, claim_batch=1))
    try:
        held = harness.remote.column_hold["a1"] = asyncio.Event()
        post(db, None, [("a1", learner(i), 5.0) for i in range(2)])
        await engine.process_dirty()
        delivering = asyncio.create_task(engine.deliver_due())
        # both rows claimed (one claim each), the first creating the line item
        limits = engine.deliverer.governor.limits
        await harness.until(
            lambda: harness.remote.column_calls == 1 and limits[(T, DEST)].waiting == 2
        )
        held.set()
        assert (await asyncio.wait_for(delivering, DEADLINE)).delivered == 2
        assert harness.remote.column_calls == 1
        with db.uow() as uow:
            link = uow.links.item(T, DEST, "a1")
        assert link is not None and link.remote_id == _item()
    finally:
        await engine.aclose()


async def test_circuit_breaker_pauses_and_resumes_by_itself(harness: Harness, db: Database) -> None:
    seed(db, learners=6, config={"concurrency": 1})
    clock = ManualClock()  # the cool-down ends when the test says (see above)
    engine = Engine(db.uow, clock, harness.factory, FAST)
    try:
        remote = harness.remote
        remote.fail_next(3, server_error())  # threshold is 3 in FAST
        post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(6)])
        await engine.process_dirty()
        await engine.deliver_due()
        assert remote.sends == 3  # the breaker opened: the other three were held back
        with db.uow() as uow:
            dest = uow.destinations.get(T, DEST)
        assert dest is not None and dest.paused_until is not None
        assert dest.pause_reason is not None and "Circuit breaker" in dest.pause_reason
        assert dest.pause_cause is PauseCause.CIRCUIT_OPEN
        assert (await engine.deliver_due()).sent == 0  # still cooling down
        clock.advance(FAST.breaker.cooldown)
        await engine.deliver_due()  # one probe, it succeeds, the rest follow
        assert states(db) == {"delivered": 6}
        assert remote.sends == 9
        assert _unpaused(db)
    finally:
        await engine.aclose()


async def _breaker_opened(harness: Harness, db: Database, engine: Engine) -> DestinationLimits:
    """Three grades the LMS answers with server errors (FAST's threshold) open the breaker of
    the seeded destination: its limits."""
    harness.remote.fail_next(3, server_error())
    post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(3)])
    await engine.process_dirty()
    await engine.deliver_due()
    lim = engine.deliverer.governor.limits[(T, DEST)]
    assert lim.breaker.state.value == "open"
    return lim


async def test_a_probe_cancelled_in_flight_leaves_the_next_send_to_probe(
    harness: Harness, db: Database
) -> None:
    """The breaker's one probe is cancelled while the LMS answers (its pass stopped: the
    database went away, the worker stops one pass): the next send probes. Before, the probe
    stayed out, so every later grade to the destination was held back until the process
    restarted."""
    seed(db, learners=4, config={"concurrency": 1})
    clock = ManualClock()
    engine = Engine(db.uow, clock, harness.factory, FAST)
    try:
        remote = harness.remote
        lim = await _breaker_opened(harness, db, engine)
        clock.advance(FAST.breaker.cooldown)
        remote.hold = asyncio.Event()  # the probe reaches the LMS and waits for its answer
        delivering = asyncio.create_task(engine.deliver_due())
        await remote.wait_for(lambda: remote.sends == 4 and remote.in_flight == 1)
        assert lim.breaker.probing
        delivering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await delivering
        remote.hold = None

        post(db, harness.waker, [("a1", learner(3), 6.0)])  # a new grade, not leased
        await engine.process_dirty()
        # before, this pass never ended: the new grade was owed the probe, and held back
        await asyncio.wait_for(engine.deliver_due(), DEADLINE)
        assert ledger(db)[("a1", learner(3))].state is DeliveryState.DELIVERED
        assert lim.breaker.state.value == "closed"
    finally:
        await engine.aclose()


async def test_failures_of_single_learners_never_open_the_breaker(
    harness: Harness, db: Database
) -> None:
    """Learners the LMS fails on one by one (per key: the LMS works for the others) are
    retried a few times and then rejected with the remedy; the breaker stays closed and
    everyone else's grade goes out."""
    seed(db, learners=8, config={"concurrency": 1})
    clock = ManualClock()
    engine = Engine(db.uow, clock, harness.factory, FAST)
    failing = [learner(i) for i in range(5)]  # more than the breaker's threshold (3)
    try:
        remote = harness.remote
        for person in failing:
            remote.fail_person(
                f"sub-{person}",
                RemoteFailure(
                    FailureClass.RETRY_LATER,
                    "learner_server_error",
                    "Server Error (500)",
                    status=500,
                    remedy="have the learner open the tool again",
                    per_key=True,
                ),
            )
        post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(8)])
        await engine.process_dirty()
        await engine.deliver_due()
        assert states(db) == {"delivered": 3, "retrying": 5}
        assert _unpaused(db)
        for _ in range(FAST.per_key_tries - 1):
            clock.advance(FAST.backoff.cap_seconds * 2)
            await engine.deliver_due()
        rows = ledger(db)
        assert states(db) == {"delivered": 3, "rejected": 5}
        for person in failing:
            row = rows[("a1", person)]
            assert row.tries == FAST.per_key_tries
            assert row.reason_code == "retries_exhausted" and row.reason_text is not None
            assert "have the learner open the tool again" in row.reason_text
        lim = engine.deliverer.governor.limits_for(
            engine.deliverer.governor.destinations[(T, DEST)]
        )
        assert lim.breaker.failures == 0 and _unpaused(db)
    finally:
        await engine.aclose()


def _unpaused(db: Database) -> bool:
    with db.uow() as uow:
        dest = uow.destinations.get(T, DEST)
    return dest is not None and dest.paused_until is None


async def test_concurrency_limit_per_destination(harness: Harness, db: Database) -> None:
    seed(db, learners=12, config={"concurrency": 3})
    remote = harness.remote
    remote.hold = asyncio.Event()
    post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(12)])
    await harness.engine.process_dirty()
    task = asyncio.create_task(harness.engine.deliver_due())
    await remote.wait_for(lambda: remote.in_flight == 3)
    remote.hold.set()
    await task
    assert remote.max_in_flight == 3
    assert remote.sends == 12


async def test_rate_limit_per_destination(
    harness: Harness, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bucket of 10 tokens refilling at 10/s lets the column and 8 scores go at once (a
    column's write is a request like a send); of 8 more, 1 goes and the rest wait for
    tokens, which come only as the (manual) clock moves."""
    clock = ManualClock()
    granted, waited = [0], asyncio.Event()

    class Limiter(RateLimiter):
        def try_acquire(self) -> float:
            wait = super().try_acquire()
            if wait > 0:
                waited.set()
            else:
                granted[0] += 1
            return wait

    monkeypatch.setattr(
        "gradesync.services.delivery.governor.RateLimiter", partial(Limiter, clock=clock.monotonic)
    )
    seed(db, learners=8, config={"concurrency": 8, "rate_per_second": 10})
    post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(8)])
    await harness.engine.process_dirty()
    await harness.engine.deliver_due()
    assert harness.remote.sends == 8 and harness.remote.column_calls == 1
    assert not waited.is_set() and granted[0] == 9
    post(db, harness.waker, [("a1", learner(i), 6.0) for i in range(8)])
    await harness.engine.process_dirty()
    second = asyncio.create_task(harness.engine.deliver_due())
    await wait_for_async(waited.is_set, "a send waiting for a token")
    assert granted[0] == 10 and not second.done()
    clock.advance(0.7)  # seven more tokens
    await asyncio.wait_for(second, DEADLINE)
    assert granted[0] == 17 and harness.remote.sends == 16
    assert states(db) == {"delivered": 8}


def _paused_labels(db: Database) -> list[tuple[str, str]]:
    """(kind, reason) of the `gradesync_destination_paused` samples /metrics would serve."""
    return [
        (s.labels["kind"], s.labels["reason"])
        for family in LedgerCollector(db.engine).collect()
        if family.name == "gradesync_destination_paused"
        for s in family.samples
        if s.value  # not the 0 of a destination not paused
    ]


async def test_misconfigured_destination_is_paused(harness: Harness, db: Database) -> None:
    """Flaky before: with a real 0.4 s pause, a slow pass (full suite, SQLite fsyncs) outlived
    the pause and sent again before the assertions. A manual clock ends it on cue. The pause
    is stored with its cause, which labels it on /metrics (not read back from its words)."""
    from gradesync.services.destination import FailureClass, RemoteFailure

    seed(db, learners=2, config={"concurrency": 1})
    clock = ManualClock()
    # an hour's pause: /metrics reads it against the real time, which must not pass its end
    settings = replace(FAST, misconfigured_pause=timedelta(hours=1))
    engine = Engine(db.uow, clock, harness.factory, settings)
    try:
        harness.remote.fail_next(
            1,
            RemoteFailure(
                FailureClass.MISCONFIGURED, "no_grade_scope", "scope not granted", status=401
            ),
        )
        post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(2)])
        await engine.process_dirty()
        await engine.deliver_due()
        assert harness.remote.sends == 1
        with db.uow() as uow:
            dest = uow.destinations.get(T, DEST)
        assert dest is not None and dest.pause_reason is not None
        assert dest.pause_reason.startswith("Misconfigured")
        assert dest.pause_cause is PauseCause.MISCONFIGURED
        assert _paused_labels(db) == [("timed", "misconfigured")]
        row = ledger(db)[("a1", learner(0))]
        assert row.state is DeliveryState.RETRYING and row.reason_code == "no_grade_scope"
        assert (await engine.deliver_due()).sent == 0  # paused
        clock.advance(settings.misconfigured_pause)  # the pause ends by itself; the probe works
        await engine.deliver_due()
        assert states(db) == {"delivered": 2}
    finally:
        await engine.aclose()


@pytest.mark.parametrize(
    "said", ["token: client_id/client_secret: not valid", "The key was refused."]
)
async def test_a_misconfiguration_s_pause_reason_ends_the_destination_s_words_with_a_stop(
    harness: Harness, db: Database, said: str
) -> None:
    """The pause reason ran the destination's words into gradesync's sentence ("... not
    valid gradesync tries again by itself ..."): they end with one full stop, never two."""
    from gradesync.services.destination import FailureClass, RemoteFailure

    seed(db, learners=1, config={"concurrency": 1})
    engine = Engine(db.uow, ManualClock(), harness.factory, FAST)
    try:
        harness.remote.fail_next(
            1, RemoteFailure(FailureClass.MISCONFIGURED, "bad_credentials", said, status=401)
        )
        post(db, harness.waker, [("a1", learner(0), 5.0)])
        await engine.process_dirty()
        await engine.deliver_due()
        with db.uow() as uow:
            dest = uow.destinations.get(T, DEST)
        assert dest is not None and dest.pause_reason is not None
        words = said.rstrip(".")
        assert dest.pause_reason == (
            f"Misconfigured: {words}. gradesync tries again by itself at the end of the pause, "
            "or when an admin resumes the destination."
        ), dest.pause_reason
    finally:
        await engine.aclose()


async def test_a_pause_reason_names_no_command(harness: Harness, db: Database) -> None:
    """A destination paused by a misconfiguration kept the adapter's remedy in its pause
    reason, `gradesync sis add ...` included, which `GET /destinations/{id}` and the
    diagnosis show every reader alike. The pause reason says what happened; the row keeps
    the remedy as its code and ids, never the command line's words, and each reader reads
    it in its own words (`remedies.for_reader`)."""
    from gradesync.domain.remedies import Reader, Remedy, for_reader
    from gradesync.services.destination import FailureClass, RemoteFailure

    seed(db, learners=1, config={"concurrency": 1})
    engine = Engine(db.uow, ManualClock(), harness.factory, FAST)
    try:
        harness.remote.fail_next(
            1,
            RemoteFailure(
                FailureClass.MISCONFIGURED,
                "bad_credentials",
                "The SIS connection has no client id or client secret.",
                fix=Remedy("sis_credentials"),  # the destination: the row's
            ),
        )
        post(db, harness.waker, [("a1", learner(0), 5.0)])
        await engine.process_dirty()
        await engine.deliver_due()
        with db.uow() as uow:
            dest = uow.destinations.get(T, DEST)
        assert dest is not None and dest.pause_reason is not None
        assert "The SIS connection has no client id or client secret." in dest.pause_reason
        assert "gradesync sis" not in dest.pause_reason, dest.pause_reason
        row = ledger(db)[("a1", learner(0))]
        assert row.reason_text is not None and "gradesync sis" not in row.reason_text
        assert '"code": "sis_credentials"' in row.reason_text, row.reason_text
        cli = for_reader(row.reason_code, row.reason_text, Reader.CLI, DEST)
        assert cli == (
            "The SIS connection has no client id or client secret. — Check the SIS client id "
            f"and secret: gradesync sis add {DEST} --client-id ID --client-secret SECRET"
        )
        api = for_reader(row.reason_code, row.reason_text, Reader.API, DEST)
        assert f"(`PUT /api/v1/sis/connections/{DEST}` with `client_id`" in api, api
    finally:
        await engine.aclose()


async def test_resuming_a_misconfigured_destination_sends_what_it_held_at_once(
    harness: Harness, db: Database
) -> None:
    """An admin fixes the destination and resumes it: the held grades go without waiting
    for the misconfiguration pause to run out (the clock never moves here)."""
    from gradesync.services import destination_admin
    from gradesync.services.destination import FailureClass, RemoteFailure

    seed(db, learners=3, config={"concurrency": 1})
    clock = ManualClock()
    # each pass reads the destinations afresh, as a woken worker's pass would after 1 s
    engine = Engine(db.uow, clock, harness.factory, replace(FAST, destinations_ttl=timedelta(0)))
    try:
        harness.remote.fail_next(
            1,
            RemoteFailure(
                FailureClass.MISCONFIGURED, "no_grade_scope", "scope not granted", status=401
            ),
        )
        post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(3)])
        await engine.process_dirty()
        await engine.deliver_due()
        assert (await engine.deliver_due()).sent == 0  # paused: nothing goes
        destination_admin.resume(db.uow, clock, harness.waker, T, DEST)
        await engine.deliver_due()
        assert states(db) == {"delivered": 3}
        with db.uow() as uow:
            dest = uow.destinations.get(T, DEST)
        assert dest is not None and dest.paused_until is None and dest.pause_reason is None
        assert dest.pause_cause is None
    finally:
        await engine.aclose()


async def test_pending_work_is_swept_on_start(harness: Harness, db: Database) -> None:
    """Facts committed while no worker ran (or before a crash) are picked up on start."""
    seed(db, learners=3)
    post(db, None, [("a1", learner(i), 5.0 + i) for i in range(3)])  # nobody woken
    with db.uow() as uow:
        assert uow.dirty.count() == 3
    await harness.start()
    await harness.all_delivered(3)
    with db.uow() as uow:
        assert uow.dirty.count() == 0
    assert harness.remote.score_of(_item(), "sub-p002") == 7.0


async def test_wake_is_immediate(harness: Harness, db: Database) -> None:
    """A posted attempt is sent at once: the workers are woken, they do not wait to look.
    Their poll interval is far longer than the test waits, so only a wake-up can send."""
    seed(db, learners=2)
    await harness.use(replace(FAST, poll=timedelta(hours=1)))
    await harness.start()
    # the first attempt may be found by the sweep on start; the second cannot be
    post(db, harness.waker, [("a1", learner(0), 5.0)])
    await harness.remote.wait_for(lambda: harness.remote.sends == 1, "the first send")
    post(db, harness.waker, [("a1", learner(1), 6.0)])
    await harness.remote.wait_for(lambda: harness.remote.sends == 2, "the woken send")
    assert harness.remote.score_of(_item(), f"sub-{learner(1)}") == 6.0


async def test_claims_of_a_killed_process_do_not_block_a_restart(
    harness: Harness, db: Database
) -> None:
    """Rows leased by a process that died mid-send are sent again: at once on SQLite (the
    serving process is the only worker), after the lease on PostgreSQL."""
    from datetime import UTC, datetime, timedelta

    seed(db, learners=2)
    post(db, None, [("a1", learner(i), 5.0) for i in range(2)])
    await harness.engine.process_dirty()
    now = datetime.now(UTC)
    with db.uow() as uow:
        rows = uow.ledger.claimable(now, 10)
        # the dead process held them with a short lease; its timestamps were stamped
        uow.ledger.lease([(f.row.key, now) for f in rows], "dead:1", now + timedelta(seconds=1))
        uow.commit()
    assert len(rows) == 2
    await harness.start()
    await harness.all_delivered(2)
    for i in range(2):
        stored = harness.remote.results[(_item(), f"sub-{learner(i)}")]
        assert stored.timestamp > now  # never at or before what the dead process stamped


async def test_no_claim_transaction_while_every_destination_has_enough_claimed(
    harness: Harness, db: Database
) -> None:
    """The deliver loop asks for more after each send; while every destination already
    has enough rows claimed (or is paused), that costs no transaction and no query."""
    seed(db, learners=3)
    post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(3)])
    await harness.engine.process_dirty()
    d = harness.engine.deliverer
    await d.governor.refresh_destinations(force=True)
    lim = d.governor.limits_for(d.governor.destinations[(T, DEST)])
    opened: list[int] = []
    real = d.uow_factory

    def counting() -> Any:
        opened.append(1)
        return real()

    d.uow_factory = d.governor.uow_factory = counting
    lim.waiting = 4 * lim.concurrency  # saturated: enough claimed to keep it busy
    claimed, _, more = await d.claim(DeliveryScope(), 100)
    assert claimed == [] and opened == []
    assert more  # rows were held back: the loop asks again once a send is done
    lim.waiting = 0
    claimed, _, more = await d.claim(DeliveryScope(), 100)
    assert len(claimed) == 3 and len(opened) == 1
    assert not more  # fewer than asked for, nothing held back: nothing left to find


async def test_a_stop_does_not_hang_on_a_database_that_does_not_answer(caplog: Any) -> None:
    """Outcomes that cannot be written are let go after the grace period (their leases run
    out and the rows are sent again): a stopping worker never waits on them for ever."""
    import threading

    from gradesync.services.clock import SystemClock
    from gradesync.services.delivery import Settlement, SettleWriter

    entered, release = threading.Event(), threading.Event()

    def hung() -> Any:  # a connection that never answers, until the test lets it go
        entered.set()
        release.wait()
        raise ConnectionError("database gone")

    grace = replace(FAST, stop_grace=timedelta(seconds=0.2))
    writer = SettleWriter(hung, SystemClock(), grace, "w:1")
    writer.put(Settlement(LedgerKey(T, DEST, "a1", learner(0)), COURSE, None, SystemClock().now()))
    try:
        await asyncio.wait_for(writer.stop(), DEADLINE)  # a hang fails the test, not the run
        assert entered.is_set()
        assert "stopping with 1 delivery outcomes unwritten" in caplog.text
    finally:
        release.set()


async def test_outcomes_gather_for_one_transaction_until_a_batch_is_full(db: Database) -> None:
    """Group commit: outcomes arriving one by one go in one transaction. With a gathering
    window far longer than the test's deadline, only a full batch can start the write."""
    from gradesync.services.delivery import Settlement, SettleWriter

    opened: list[int] = []

    def counting() -> Any:
        opened.append(1)
        return db.uow()

    settings = replace(FAST, settle_gather=timedelta(seconds=600), settle_batch=5)
    writer = SettleWriter(counting, SystemClock(), settings, "w:1")
    for i in range(4):
        writer.put(
            Settlement(LedgerKey(T, DEST, "a1", learner(i)), COURSE, None, SystemClock().now())
        )
        await asyncio.sleep(0.01)  # the writer runs between the outcomes
        assert opened == [], "a transaction started before the batch was full"
    writer.put(Settlement(LedgerKey(T, DEST, "a1", learner(4)), COURSE, None, SystemClock().now()))
    await asyncio.wait_for(writer.flush(), DEADLINE)
    assert opened == [1]
    # a flush (a pass that has sent everything) does not wait for more to gather
    writer.put(Settlement(LedgerKey(T, DEST, "a1", learner(5)), COURSE, None, SystemClock().now()))
    await asyncio.sleep(0.01)
    assert opened == [1]
    await asyncio.wait_for(writer.flush(), DEADLINE)
    assert opened == [1, 1]
    # without a window (0), the first outcome is written at once
    eager = SettleWriter(
        counting, SystemClock(), replace(settings, settle_gather=timedelta(0)), "w:1"
    )
    eager.put(Settlement(LedgerKey(T, DEST, "a1", learner(9)), COURSE, None, SystemClock().now()))
    await wait_for_async(lambda: len(opened) == 3, "the outcome written without a flush")
    await writer.stop()
    await eager.stop()


def _misconfigured() -> RemoteFailure:
    return RemoteFailure(
        FailureClass.MISCONFIGURED, "no_grade_scope", "the token grants no score scope", status=403
    )


@pytest.mark.parametrize(
    ("answer", "pause"),
    [
        (partial(slow_down, 1.0), timedelta(seconds=1)),
        (_misconfigured, FAST.misconfigured_pause),
    ],
    ids=["slow_down", "misconfigured"],
)
async def test_a_probe_that_pauses_the_destination_leaves_the_next_send_to_probe(
    harness: Harness, db: Database, answer: Any, pause: timedelta
) -> None:
    """The breaker's probe is answered with a request to slow down, or a misconfiguration:
    the destination is paused, and once the pause ends the next send probes. Before, the
    probe stayed out (nothing recorded it on the breaker), so every later grade to the
    destination was claimed and let go again, never sent, until the process restarted."""
    seed(db, learners=3, config={"concurrency": 1})
    clock = ManualClock()
    engine = Engine(db.uow, clock, harness.factory, FAST)
    try:
        remote = harness.remote
        lim = await _breaker_opened(harness, db, engine)
        clock.advance(FAST.breaker.cooldown)
        remote.fail_next(1, answer())
        await asyncio.wait_for(engine.deliver_due(), DEADLINE)
        assert remote.sends == 4  # the probe, paused by its answer
        clock.advance(pause)
        # before, this pass never ended: the probe was still out, so nothing went
        await asyncio.wait_for(engine.deliver_due(), DEADLINE)
        assert states(db) == {"delivered": 3}
        assert lim.breaker.state.value == "closed"
    finally:
        await engine.aclose()


async def test_a_column_write_that_fails_as_the_breakers_probe_opens_it_again(
    harness: Harness, db: Database
) -> None:
    """After the breaker's cool-down, a column made ahead of its first grade is the first
    request: the breaker's probe. It fails with a server error: the breaker opens again and
    the destination is paused for every process, as when a score's send is the probe.
    Before, the failure was recorded nowhere: the next send probed at once."""
    from gradesync.domain.model import Activity
    from gradesync.services.ingest import IngestBatch, ingest

    seed(db, learners=3, config={"concurrency": 1})
    clock = ManualClock()
    engine = Engine(db.uow, clock, harness.factory, FAST)
    try:
        remote = harness.remote
        lim = await _breaker_opened(harness, db, engine)
        first_pause = lim.gate_until
        clock.advance(FAST.breaker.cooldown)

        remote.column_failures["a2"] = server_error()
        batch = IngestBatch(activities=[Activity(T, "a2", COURSE, "Quiz a2", 10.0)])
        ingest(db.uow, SystemClock(), harness.waker, T, batch)
        await engine.process_dirty()
        await asyncio.wait_for(engine.columns_ahead_done(), DEADLINE)
        assert remote.column_calls == 2  # a1's with its first grades, then a2's: the probe

        assert lim.breaker.state.value == "open" and not lim.breaker.probing
        assert first_pause is not None and lim.gate_until is not None
        assert lim.gate_until > first_pause
        await engine.deliverer._background.wait()
        with db.uow() as uow:
            dest = uow.destinations.get(T, DEST)
        assert dest is not None and dest.paused_until == lim.gate_until
        assert dest.pause_cause is PauseCause.CIRCUIT_OPEN
        assert dest.pause_reason is not None and "502 Bad Gateway" in dest.pause_reason
    finally:
        await engine.aclose()


async def _probe_next(db: Database) -> tuple[Governor, Destination, DestinationLimits]:
    """A governor over the seeded destination, whose breaker opened on server errors and
    has cooled down: the next request is its probe."""
    seed(db)
    clock = ManualClock()
    governor = Governor(db.uow, clock, FAST, BackgroundWrites())
    await governor.refresh_destinations(force=True)
    d = governor.destinations[(T, DEST)]
    lim = governor.limits[(T, DEST)]
    for _ in range(FAST.breaker.threshold):
        outcome_of_failure(governor, server_error(), d, lim)
    assert lim.breaker.state.value == "open"
    clock.advance(FAST.breaker.cooldown)
    return governor, d, lim


@pytest.mark.parametrize(
    ("failure", "after"),
    [
        (server_error, "open"),  # the destination still fails: a cool-down again
        (partial(slow_down, 5.0), "half_open"),  # paused by the caller; the next probes
        (unknown_user, "closed"),  # refused on its merits: the destination works
        (not_synced, "half_open"),  # nothing asked: the next request probes
        (lambda: ValueError("a bug"), "open"),  # nothing classified it: a failure
    ],
    ids=["server_error", "slow_down", "rejected", "not_synced", "unclassified"],
)
async def test_a_request_that_is_the_breakers_probe_records_its_failure(
    db: Database, failure: Any, after: str
) -> None:
    """A column's write or a run's read-back (`Governor.request`) let through as the
    breaker's probe records how it ended on the breaker, as a score's send does; one
    cancelled holds the probe no longer. Before, any failure only gave the probe back, the
    breaker half-open for the next request whatever the destination had answered."""
    governor, d, lim = await _probe_next(db)
    raised = failure()
    with pytest.raises(type(raised)):
        async with governor.request(d):
            assert lim.breaker.probing
            raise raised
    assert lim.breaker.state.value == after and not lim.breaker.probing
    await governor.aclose()


@pytest.mark.parametrize(
    "failure",
    [server_error, lambda: ValueError("a bug")],
    ids=["server_error", "unclassified"],
)
async def test_a_probe_requests_failure_is_counted_once_when_its_caller_classifies_it(
    db: Database, failure: Any
) -> None:
    """A column's write that is the breaker's probe fails: the request records it on the
    breaker as it ends, then its caller classifies the failure for the column's rows (the
    pass's `outcome_of_failure`, `unexpected_failure` for one no adapter classified). The
    failure is counted once: the breaker is open, with no failure counted towards the next
    opening. Before, the caller counted it again on the open breaker."""
    from gradesync.services.delivery.failures import unexpected_failure

    governor, d, lim = await _probe_next(db)
    raised = failure()
    try:
        async with governor.request(d):
            raise raised
    except RemoteFailure as f:
        outcome_of_failure(governor, f, d, lim)
    except ValueError as exc:
        unexpected_failure(governor, exc, d, lim)
    reopened = lim.breaker.open_until
    assert lim.breaker.state.value == "open" and lim.breaker.failures == 0
    assert reopened == governor.clock.now() + 2 * FAST.breaker.cooldown  # the second opening's
    await governor.aclose()


async def test_a_request_cancelled_as_the_breakers_probe_leaves_the_next_to_probe(
    db: Database,
) -> None:
    """A column's write or a read-back holding the breaker's probe is cancelled before its
    answer (its run or pass stopped): the next request probes."""
    governor, d, lim = await _probe_next(db)
    asked = asyncio.Event()

    async def unanswered() -> None:
        async with governor.request(d):
            asked.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(unanswered())
    await asyncio.wait_for(asked.wait(), DEADLINE)
    assert lim.breaker.probing
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert lim.breaker.state.value == "half_open" and not lim.breaker.probing
    async with governor.request(d):
        assert lim.breaker.probing  # the next request is the probe
    assert lim.breaker.state.value == "closed"
    await governor.aclose()
