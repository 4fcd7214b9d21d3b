"""Why a destination is paused, as a code from a fixed set beside the text people read.

The text (stored as the destination's `pause_reason`, shown by the API, the console and the
CLI) says what happened in the remote's words, which may name a result, and differs with
every fault. Metrics and alerts need a label that is bounded and never names a learner
(docs/operations.md), and that stays the same while the pause lasts (an alert grouped by it
would restart otherwise): the cause. Whoever makes a pause stores its cause beside its text
(the destination's `pause_cause`), never to be read back from the text: a person may write
anything, including words that open like gradesync's own.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["PauseCause", "pause_text"]


class PauseCause(StrEnum):
    ADMIN = "admin"  # paused by a person (until resumed, or until a time)
    SLOW_DOWN = "slow_down"  # the remote's Retry-After
    MISCONFIGURED = "misconfigured"  # the destination's settings are wrong
    CIRCUIT_OPEN = "circuit_open"  # repeated failures opened the circuit breaker


_OPENINGS = {
    PauseCause.SLOW_DOWN: "The destination asked gradesync to slow down",
    PauseCause.MISCONFIGURED: "Misconfigured: ",
    PauseCause.CIRCUIT_OPEN: "Circuit breaker open",
}


def pause_text(cause: PauseCause, rest: str) -> str:
    """The text of a pause gradesync makes itself: the cause's opening, then `rest`."""
    return _OPENINGS[cause] + rest
