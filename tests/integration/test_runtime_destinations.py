"""The process's one destination context (HTTP pool and token cache): computing asks for
destination clients from its threads while the event loop does too, and both must get the
same context; a second one would be dropped with its pool's connections left open. A run
carried to its end here (`finish_run`) has a pool of its own: the shared one may serve
other requests meanwhile, and must not be closed under them."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from gradesync.adapters.destinations import http_pool
from gradesync.config import Settings
from gradesync.domain.model import Destination, RunScope, Trigger
from gradesync.runtime import Runtime
from gradesync.testing import (
    TEST_SECRET,
    DoubleClient,
    Remote,
    add_course,
    add_destination,
    add_tenant,
    post_attempts,
)


class _ArrivalLock:
    """A lock that counts the threads that come to it, before they wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.arrivals = threading.Semaphore(0)

    def __enter__(self) -> None:
        self.arrivals.release()
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_threads_asking_at_once_share_one_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = Runtime.create(Settings(data_dir=tmp_path, secret_key=TEST_SECRET), migrate=True)
    made = http_pool.shared_client
    entered: list[threading.Event] = [threading.Event(), threading.Event()]
    release = threading.Event()

    def held_open(**kw: Any) -> Any:
        # the first caller is held inside the making until the second has had its chance
        entered[sum(e.is_set() for e in entered)].set()
        assert release.wait(10)
        return made(**kw)

    monkeypatch.setattr(http_pool, "shared_client", held_open)
    lock = _ArrivalLock()
    # the runtime's own lock swapped for one that also counts arrivals: no public seam
    # offers a thread's arrival at a lock, and waiting a while for it would be a guess
    rt._destinations_lock = lock  # type: ignore[assignment]
    got: list[Any] = []
    first = threading.Thread(target=lambda: got.append(rt.destination_context()))
    second = threading.Thread(target=lambda: got.append(rt.destination_context()))
    try:
        first.start()
        assert entered[0].wait(10)
        second.start()
        # both at the lock: the first holds it while it makes the context, the second waits
        assert lock.arrivals.acquire(timeout=10) and lock.arrivals.acquire(timeout=10)
        release.set()
        first.join(10)
        second.join(10)
        assert len(got) == 2 and got[0] is got[1] is rt.destinations
        assert not entered[1].is_set()  # made once
    finally:
        release.set()
        rt.close()


def test_a_run_finished_here_leaves_the_shared_context_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = Runtime.create(Settings(data_dir=tmp_path, secret_key=TEST_SECRET), migrate=True)
    add_tenant(rt.uow, "t1")
    add_course(rt.uow, "t1", "c1", ("a1", "Quiz", 10.0), learners=["p1"])
    add_destination(rt.uow, "t1", "lms", links={"c1": "remote-c1"}, people={"p1": "sub-1"})
    post_attempts(rt.uow, None, "t1", [("a1", "p1", 7.0)])
    remote = Remote()
    shared: list[Any] = []
    given: list[Any] = []

    def client(destination: Destination, context: Any = None) -> DoubleClient:
        # another caller (an API request) takes the shared context while the run sends
        shared.append(rt.destination_context())
        given.append(context)
        return DoubleClient(destination, remote)

    monkeypatch.setattr(rt, "destination_client", client)
    try:
        run, _ = rt.ask_for_run(RunScope("t1", "lms", "c1"), Trigger.MANUAL, "test")
        done = asyncio.run(rt.finish_run(run, timeout=60))
        assert done.outcome == "succeeded", done
        assert shared and all(c is rt.destinations for c in shared)
        assert not rt.destinations.http.is_closed  # still serving the others
        assert given and all(c is not None and c is not rt.destinations for c in given)
        assert all(c.http.is_closed for c in given)  # the run's own, closed at its end
    finally:
        rt.close()
