"""How long a run's sending stage keeps waiting for its rows to settle.

A run waits `seconds` for retries, but only while nothing moves: a large backlog being
worked through, by the run's own pass or by another worker holding some of the rows, keeps
it waiting, and so do rows due while the destination takes other results (live grades go
before a run's); rows stuck behind failures do not. One patience serves the whole run: every
place it sends (the sending stage, verifying's resend, the rounds after verifying) draws on
it, and the time between (verifying reads results back) is not waiting. Pure: the caller
supplies the time.
"""

from __future__ import annotations


class Patience:
    def __init__(self, seconds: float, now: float) -> None:
        self.seconds = seconds
        self._deadline = now + seconds
        self._open: int | None = None
        self._kept: float | None = None  # the patience left while the run does other work

    def look(self, now: float, settled: int, open_rows: int, *, waiting_turn: bool = False) -> bool:
        """Record a look at the run's rows: `settled` by this pass since the last look,
        `open_rows` still due or held; `waiting_turn`: some are due now and the destination
        took other results since the last look (they wait their turn, not on a failure).
        True while it is worth waiting on."""
        progressed = (
            settled > 0 or waiting_turn or (self._open is not None and open_rows < self._open)
        )
        self._open = open_rows
        if progressed:
            self._deadline = now + self.seconds
            return True
        return now < self._deadline

    def hold_until(self, until: float) -> None:
        """Rows are held by a lease that ends at `until` (a worker that may have stopped):
        they cannot move before then, so waiting starts from there."""
        self._deadline = max(self._deadline, until + self.seconds)

    def stop(self, now: float) -> None:
        """The run stops sending for other work: what is left is kept for `resume`."""
        self._kept = self.left(now)

    def resume(self, now: float) -> None:
        """The run sends again: it has the patience it kept, counted from `now`."""
        if self._kept is not None:
            self._deadline, self._kept = now + self._kept, None

    def left(self, now: float) -> float:
        """Seconds of patience left (0 when run out); while stopped, what was kept."""
        if self._kept is not None:
            return self._kept
        return max(0.0, self._deadline - now)
