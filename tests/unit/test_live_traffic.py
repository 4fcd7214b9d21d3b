"""While live grades flow, a run's computing pauses after each chunk as long as the chunk
took (at most a second), and not at all once they stop."""

from __future__ import annotations

from gradesync.services.live_traffic import LONGEST_PAUSE, RECENT, LiveTraffic


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bulk_work_pauses_only_while_live_grades_flow() -> None:
    clock = _Clock()
    live = LiveTraffic(clock)
    assert live.pause_after(0.3) == 0.0  # none yet
    live.computed()
    assert live.pause_after(0.3) == 0.3
    assert live.pause_after(5.0) == LONGEST_PAUSE
    clock.now += RECENT + 0.01
    assert live.pause_after(0.3) == 0.0  # they stopped: full speed again
    assert live.pauses == 2
