"""A desired grade in words, as the console's grid, the diagnosis page, the doctor and the
grades API say it: "8 / 10", "0 / 10 missing" for a past-due zero, "no score" for work not
graded yet, and for an excused learner "excused", with what the gradebook gets for it where
it has no excused state of its own.

A SIS takes the excused flag (OneRoster's `exempt`). An LMS has none (LTI 1.3 AGS has no
such field; LTI 1.1 holds a score or nothing): the policy drops the flag there, so the row's
`excused` is false, and sends a result with no score (AGS: no `scoreGiven`, fully graded;
LTI 1.1: the grade removed). The learner's being excused is kept beside it in the desired
result (`learner_excused`, not sent and not hashed), so the grade is never worded as a bare
"no score" as if nothing were known.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gradesync.domain.model import SIS_KINDS, DestinationKind

FULLY_GRADED = "FullyGraded"


def learner_excused(desired: Mapping[str, Any]) -> bool:
    """The learner is excused: the flag the destination takes (a SIS's `excused`), or the
    fact kept where it takes none (`learner_excused`). A row written before that fact was
    kept says it by its shape: only an excused learner's result is fully graded with no
    score (`policy.desired_result`, rule 4; work not graded yet is Pending)."""
    if desired.get("excused") or desired.get("learner_excused"):
        return True
    return desired.get("score_given") is None and desired.get("grading_progress") == FULLY_GRADED


def excused_text(desired: Mapping[str, Any], kind: DestinationKind | str) -> str:
    """An excused learner's grade at a destination of `kind`: "excused" where the flag is
    sent, else what the gradebook gets instead, and why."""
    if desired.get("excused"):
        return "excused"
    where = "SIS" if kind in SIS_KINDS else "LMS"
    if kind == DestinationKind.LTI11_OUTCOMES:
        return f"excused (the {where}'s grade is removed: it has no excused state)"
    return f"excused (the {where} gets no score: it has no excused state)"


def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, int | float) else "?"


def desired_text(desired: Mapping[str, Any] | None, kind: DestinationKind | str) -> str | None:
    """'8 / 10' from a desired result (its JSON form, `ledger.desired_to_json`) at a
    destination of `kind`; '0 / 10 missing' for a past-due zero, an excused learner's words
    (`excused_text`), 'no score' for work not graded yet; None when nothing is to be sent."""
    if not desired:
        return None
    if learner_excused(desired):
        return excused_text(desired, kind)
    given, maximum = desired.get("score_given"), desired.get("score_maximum")
    if given is None:
        return "no score"
    text = f"{_num(given)} / {_num(maximum)}"
    return f"{text} missing" if desired.get("missing") else text
