"""When a process refreshes the planner's statistics of the ledger it grows: after the first
rows, then each time the rows written double."""

from __future__ import annotations

from gradesync.services.ledger_statistics import LedgerStatistics


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
