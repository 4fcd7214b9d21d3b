"""Changed limits reach the sends already waiting on the old ones (a mistyped rate is
corrected without leaving grades behind it), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import timedelta
from functools import partial

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.model import CourseLink, DeliveryState, ItemLink
from gradesync.domain.policy import Column, column_hash
from gradesync.services import destination_admin
from gradesync.services.clock import SystemClock
from gradesync.services.delivery.background import BackgroundWrites
from gradesync.services.delivery.governor import (
    DestinationLimits,
    DestinationPaused,
    Governor,
    RateLimiter,
    limits_from_config,
)
from gradesync.services.destination import RemoteFailure
from gradesync.testing import DEADLINE, ManualClock, add_destination, wait_for_async
from gradesync.testing.double import server_error
from tests.engine.conftest import COURSE, DEST, FAST, Harness, T, learner, post, seed, states
from tests.support import limits
from tests.support.columns import FakeColumns, worker_provisioning

TYPO = 0.01  # a typo for 10 (the least rate taken): one token, then one every 100 s


def watch_waits(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """An event set when a send first waits for a rate limiter's token."""
    waited = asyncio.Event()
    limits.watch_waits(monkeypatch, waited)
    return waited


async def held_by_a_typo(harness: Harness, db: Database, waited: asyncio.Event) -> None:
    """Three grades for a destination limited to 0.01/s, its column made before the limit
    (a column's write takes a token too): one goes, two wait on the limit."""
    seed(db, learners=3, config={"concurrency": 4})
    await harness.start()
    post(db, harness.waker, [("a1", learner(0), 4.0)])
    await harness.remote.wait_for(lambda: harness.remote.sends == 1, "the column made")
    destination_admin.set_limits(db.uow, SystemClock(), T, DEST, {"rate_per_second": TYPO})
    governor = harness.engine.deliverer.governor
    await governor.refresh_destinations(force=True)
    assert governor.limits[(T, DEST)].rate.rate == TYPO
    post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(3)])
    await wait_for_async(waited.is_set, "a send waiting for a token")
    await harness.until(
        lambda: states(db) == {"delivered": 1, "pending": 2}, "one grade sent, two held"
    )
    assert harness.remote.sends == 2


@pytest.mark.parametrize("rate", [None, 1000.0], ids=["cleared", "raised"])
async def test_grades_held_by_a_rate_go_once_it_is_cleared_or_raised(
    harness: Harness, db: Database, monkeypatch: pytest.MonkeyPatch, rate: float | None
) -> None:
    waited = watch_waits(monkeypatch)
    await held_by_a_typo(harness, db, waited)
    destination_admin.set_limits(db.uow, SystemClock(), T, DEST, {"rate_per_second": rate})
    await harness.all_delivered(3)  # before: 100 s more each
    assert harness.remote.sends == 4


async def test_after_held_grades_and_an_open_breaker_everything_goes(
    harness: Harness, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Grades held by a rate, the rate cleared, the LMS failing until the breaker opens,
    then healthy again: the breaker's probe goes after its pause, and every grade (a new
    one too) is delivered. Before, the held sends counted as claimed rows, so no probe was
    ever claimed and the destination stopped receiving anything."""
    waited = watch_waits(monkeypatch)
    await held_by_a_typo(harness, db, waited)
    destination_admin.set_limits(db.uow, SystemClock(), T, DEST, {"rate_per_second": None})
    failing = [True]
    remote = harness.remote

    def outage(_: object) -> RemoteFailure | None:
        return server_error() if failing[0] else None

    remote.failures.append(outage)
    sends = remote.sends
    post(db, harness.waker, [("a1", learner(i), 6.0) for i in range(3)])
    governor = harness.engine.deliverer.governor
    await remote.wait_for(lambda: remote.sends >= sends + 3, "the breaker's threshold")
    await wait_for_async(
        lambda: governor.limits[(T, DEST)].breaker.state.value == "open", "the breaker open"
    )
    failing[0] = False  # the LMS is healthy again
    await harness.until(
        lambda: (
            states(db) == {DeliveryState.DELIVERED.value: 3}
            and all(_score(harness, i) == 6.0 for i in range(3))
        ),
        "every grade delivered after the breaker's pause",
    )
    post(db, harness.waker, [("a1", learner(0), 9.0)])  # a new grade goes too
    await remote.wait_for(lambda: _score(harness, 0) == 9.0, "the new grade delivered")


def _score(harness: Harness, i: int) -> float | None:
    return harness.remote.score_of("https://lms/courses/1/items/a1", f"sub-{learner(i)}")


async def test_a_send_held_by_a_rate_does_not_hold_up_other_destinations_retries(
    harness: Harness, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a send waits on one destination's slow rate, another destination's retry that
    falls due is still sent: the pass keeps claiming (at least every poll) instead of
    waiting for that send to end."""
    waited = watch_waits(monkeypatch)
    seed(db, learners=2, config={"concurrency": 4, "rate_per_second": TYPO})
    add_destination(
        db.uow,
        T,
        "other",
        name="Other LMS",
        links={COURSE: "https://other/courses/1"},
        people={learner(i): f"sub-{learner(i)}" for i in range(2)},
    )
    other = harness.factory.remote("other")
    other.fail_next(1, server_error())  # one send fails: retried after its backoff
    await harness.start()
    post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(2)])
    await wait_for_async(waited.is_set, "a send waiting for a token")
    await other.wait_for(
        lambda: all(
            other.score_of("https://other/courses/1/items/a1", f"sub-{learner(i)}") == 5.0
            for i in range(2)
        ),
        "the other destination's retry sent",
    )


class _Lms(FakeColumns):
    """Creates a column, noting the requests in flight then under the limits in force and
    under the old ones."""

    def __init__(self, governor: Governor, old: DestinationLimits) -> None:
        self.governor, self.old = governor, old
        self.in_flight: list[tuple[int, int]] = []

    async def write(self, column: Column, link: ItemLink | None, *, force: bool) -> ItemLink:
        in_force = self.governor.limits[(T, DEST)]
        self.in_flight.append((in_force.in_flight, self.old.in_flight))
        return ItemLink(T, DEST, column.activity_id, "li-1", column_hash(column))


async def test_a_column_write_held_by_a_rate_goes_on_under_the_limits_that_replaced_it(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A column's write waiting on a mistyped rate when the admin corrects it takes its slot
    and token from the new limits, as a score's send does. Before, it went on at once under
    the old ones: the new limits' concurrency and rate did not count it."""
    waited = watch_waits(monkeypatch)
    seed(db, config={"concurrency": 4, "rate_per_second": TYPO})
    provisioner, background, governor = worker_provisioning(db.uow, FAST)
    await governor.refresh_destinations(force=True)
    d = governor.destinations[(T, DEST)]
    old = governor.limits[(T, DEST)]
    assert old.rate.try_acquire() == 0.0  # its one token: the next request waits 100 s
    lms = _Lms(governor, old)
    column = Column("Quiz a1", 10.0, None, None, "a1")
    course = CourseLink(T, DEST, COURSE, "https://lms/courses/1")
    write = asyncio.create_task(provisioner.ensure_column(lms, d, course, column, None))  # type: ignore[arg-type]
    await wait_for_async(waited.is_set, "the column's write waiting for a token")

    # one request at a time, one every 50 s
    destination_admin.set_limits(
        db.uow, SystemClock(), T, DEST, {"rate_per_second": 0.02, "concurrency": 1}
    )
    await governor.refresh_destinations(force=True)
    new = governor.limits[(T, DEST)]
    assert new is not old
    await asyncio.wait_for(write, 10)
    assert lms.in_flight == [(1, 0)], "the column was written outside the limits in force"
    assert new.rate.try_acquire() > 0, "the column's write took no token of the new rate"
    await background.wait()
    await governor.aclose()


async def test_a_request_naming_the_destination_as_it_was_keeps_the_limits_in_force(
    db: Database,
) -> None:
    """A run or a column waiting out a pause holds the destination as it was read before an
    admin changed its limits. A request it makes goes under the limits in force, and does
    not put the old ones back: before, each such request replaced the limits (twice, the
    old ones, then the new ones again), each time with empty slots and a full rate bucket,
    so a second request went out beside one in flight at a concurrency of 1."""
    seed(db, config={"concurrency": 4, "rate_per_second": 100})
    background = BackgroundWrites()
    governor = Governor(db.uow, SystemClock(), FAST, background)
    await governor.refresh_destinations(force=True)
    held_before = governor.destinations[(T, DEST)]
    destination_admin.set_limits(
        db.uow, SystemClock(), T, DEST, {"rate_per_second": 100, "concurrency": 1}
    )
    await governor.refresh_destinations(force=True)
    in_force = governor.limits[(T, DEST)]
    assert in_force.total_concurrency == 1

    release, entered = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with governor.request(governor.destinations[(T, DEST)]):
            entered.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await entered.wait()
    second = asyncio.create_task(governor.request(held_before).__aenter__())
    try:
        # it queues for the one slot in force, or (before) went out under limits of its own
        await wait_for_async(
            lambda: second.done() or in_force.semaphore._queued,
            "the second request queued or sent",
        )
        assert not second.done(), "a second request went out beside one in flight at 1"
        assert governor.limits[(T, DEST)] is in_force and in_force.replaced_by is None
    finally:
        release.set()
        await holder
        second.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await second
    await background.wait()
    await governor.aclose()


def test_a_rate_stored_below_the_minimum_sends_at_the_slowest_rate_allowed() -> None:
    """A rate stored before the minimum was checked (1e-320 never sends) is read as the
    slowest rate allowed, one request per 100 s."""
    assert limits_from_config({"rate_per_second": 1e-320}).rate.rate == 0.01
    assert limits_from_config({"rate_per_second": 0.5}).rate.rate == 0.5


async def test_a_rate_slower_than_a_lease_allows_still_sends_every_grade(
    harness: Harness, db: Database
) -> None:
    """A send that waits for its token longer than its lease allows lets the lease go, and
    spent the token: at a rate slower than one token per lease left (0.01/s, one per 100 s,
    where a send must start within 75 s of its claim) every token went to a send whose lease
    had run short too, and no grade was ever sent. The token now goes to the next send. Here:
    one token per 5 s where a send must start within 4 s of its claim."""
    seed(db, learners=3, config={"concurrency": 4, "rate_per_second": 0.2})
    await harness.use(
        replace(FAST, lease=timedelta(seconds=6), min_lease_left=timedelta(seconds=2))
    )
    await harness.start()
    post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(3)])
    await harness.all_delivered(3)
    assert harness.remote.sends == 3


async def test_a_send_that_finds_the_destination_paused_gives_its_rate_token_back(
    harness: Harness, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send takes its slot and its rate token, then re-reads the pause and finds that an
    admin paused the destination meanwhile: the row waits, and the token goes back to the
    bucket. Before, the token was spent on nothing: at a slow rate the grade then waited a
    token's time after the resume (here, for ever: the rate's clock stands still)."""
    clock = ManualClock()  # the rate's: no token comes back by itself
    monkeypatch.setattr(
        "gradesync.services.delivery.governor.RateLimiter",
        partial(RateLimiter, clock=clock.monotonic),
    )
    # three tokens: the column's write, the first grade's send, the second's
    seed(db, learners=2, config={"concurrency": 1, "rate_per_second": 3})
    remote = harness.remote
    post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(2)])
    await harness.engine.process_dirty()
    remote.hold = asyncio.Event()  # the first send waits for its answer, holding the slot
    delivering = asyncio.create_task(harness.engine.deliver_due())
    await remote.wait_for(lambda: remote.in_flight == 1, "the first send in flight")
    destination_admin.pause(db.uow, SystemClock(), T, DEST, actor="ada")
    remote.hold.set()  # the slot goes to the second send: it takes the last token
    stats = await asyncio.wait_for(delivering, DEADLINE)
    assert stats.delivered == 1 and stats.gated == 1 and remote.sends == 1

    destination_admin.resume(db.uow, SystemClock(), harness.waker, T, DEST)
    await harness.engine.deliverer.governor.refresh_destinations(force=True)  # resumed
    await asyncio.wait_for(harness.engine.deliver_due(), DEADLINE)  # before: no token
    assert states(db) == {"delivered": 2} and remote.sends == 2


async def test_a_request_refused_by_a_pause_gives_its_rate_token_back(db: Database) -> None:
    """A column's write or a read-back that finds the destination paused raises
    `DestinationPaused` having asked nothing, and its rate token goes back to the bucket.
    Before, it was spent: at 0.01/s the first request after the resume waited 100 s."""
    seed(db, config={"concurrency": 4, "rate_per_second": TYPO})
    background = BackgroundWrites()
    governor = Governor(db.uow, SystemClock(), FAST, background)
    await governor.refresh_destinations(force=True)
    d = governor.destinations[(T, DEST)]
    destination_admin.pause(db.uow, SystemClock(), T, DEST, actor="ada")
    with pytest.raises(DestinationPaused):
        async with governor.request(d):
            raise AssertionError("a paused destination was asked")
    destination_admin.resume(db.uow, SystemClock(), None, T, DEST)
    async with asyncio.timeout(DEADLINE):  # before: 100 s for the next token
        async with governor.request(d) as lim:
            assert lim.in_flight == 1
    await background.wait()
    await governor.aclose()
