"""When a process refreshes the planner's statistics of the ledger it grows: after the first
rows, then each time the rows written double."""

from __future__ import annotations

import threading

import pytest

from gradesync.services.ledger_statistics import AttemptStatistics, LedgerStatistics
from gradesync.testing import wait_for


class _Ledger:
    def __init__(self) -> None:
        self.refreshed = 0

    def refresh_statistics(self) -> None:
        self.refreshed += 1


class _Uow:
    def __init__(self, ledger: _Ledger) -> None:
        self.ledger = ledger

    def __enter__(self) -> _Uow:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def commit(self) -> None:
        pass


def test_refreshes_come_as_the_rows_written_double() -> None:
    ledger = _Ledger()
    stats = LedgerStatistics(lambda: _Uow(ledger), first=1000)  # type: ignore[arg-type,return-value]
    due = [n for n in range(1, 20_001) if stats.due_after(1)]
    assert due == [1000, 2000, 4000, 8000, 16000]
    assert stats.catch_up()  # 4,000 written since the last refresh
    assert not stats.catch_up()
    stats.refresh()
    assert ledger.refreshed == 1


class _Ended(BaseException):
    """Ends a thread past the refresh's `except Exception` (as a greenlet's exit would)."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_refresh_thread_ended_early_is_not_taken_for_one_running() -> None:
    """Left set, the ended thread would hold back every later refresh, and closing would
    spin joining it for the whole bound."""
    stats = AttemptStatistics(lambda: _Uow(_Ledger()))  # type: ignore[arg-type,return-value]
    refreshes: list[threading.Thread] = []

    def refresh() -> None:
        refreshes.append(threading.current_thread())
        if len(refreshes) == 1:
            raise _Ended

    stats.refresh = refresh  # type: ignore[method-assign]
    stats.refresh_soon()
    wait_for(lambda: refreshes, "the first refresh started")
    refreshes[0].join(5.0)
    assert stats.wait(1.0), "no refresh runs: the thread ended"
    stats.refresh_soon()
    wait_for(lambda: len(refreshes) == 2, "the next refresh due started")
    assert stats.wait(5.0)


def test_closing_drops_the_refresh_queued_behind_the_running_one() -> None:
    """The one running ends (bounded by the wait); the one due behind it would start a new
    transaction while the engine is being disposed."""
    stats = AttemptStatistics(lambda: _Uow(_Ledger()))  # type: ignore[arg-type,return-value]
    running, release = threading.Event(), threading.Event()
    refreshes: list[int] = []

    def refresh() -> None:
        refreshes.append(1)
        running.set()
        release.wait()

    stats.refresh = refresh  # type: ignore[method-assign]
    stats.refresh_soon()
    wait_for(running.is_set, "the refresh started")
    stats.refresh_soon()  # due while it runs: queued behind it
    closed: list[bool] = []
    closer = threading.Thread(target=lambda: closed.append(stats.close(5.0)), daemon=True)
    closer.start()
    wait_for(lambda: stats._closed, "closing")
    release.set()
    closer.join(5.0)
    assert closed == [True]
    assert refreshes == [1]
