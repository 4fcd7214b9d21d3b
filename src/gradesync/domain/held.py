"""What a gradebook holds of a grade gradesync sent, read from the grade's delivery log.

A grade "Kept in LMS" (gradesync sends nothing now, but sent a grade before) is still in the
gradebook: the one gradesync last delivered, unless a later readback found it changed there
(the override line keeps what the readback found). The ledger forgets the value when it stops
sending (its desired result is gone); the delivery log keeps both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from gradesync.domain.model import SIS_KINDS, DestinationKind, ItemLink
from gradesync.domain.overrides import OVERRIDE_SEEN

DELIVERED = "delivered"  # the delivery log's outcome of a send the gradebook took
# the log lines that say what the gradebook holds, newest wins
HOLDING_OUTCOMES = (DELIVERED, OVERRIDE_SEEN)


# ItemLink.data: the maximum a SIS line item was last written with (its resultValueMax)
LINE_ITEM_MAXIMUM = "line_item_maximum"


def logs_scale(kind: DestinationKind | str) -> bool:
    """LTI 1.1 takes a fraction of 1, on a column gradesync never writes: what it holds
    reads on the activity's points the fraction was computed on, so the delivery log keeps
    them with each line (`score_scale`). A SIS reads on its line item instead
    (`LINE_ITEM_MAXIMUM`), which gradesync rewrites when the points change."""
    return kind == DestinationKind.LTI11_OUTCOMES


def provisioned(link: ItemLink, kind: DestinationKind | str, maximum: float) -> ItemLink:
    """`link` as a column was just written through it with `maximum`: a SIS line item's
    `resultValueMax`, the scale of every score the SIS holds in it, whenever it was sent."""
    if kind not in SIS_KINDS or link.data.get(LINE_ITEM_MAXIMUM) == maximum:
        return link
    return replace(link, data={**link.data, LINE_ITEM_MAXIMUM: maximum})


def line_item_maximum(link: ItemLink | None) -> float | None:
    """The maximum a SIS line item was last written with, None when not known (a link
    written before gradesync kept it)."""
    return None if link is None else _number(link.data.get(LINE_ITEM_MAXIMUM))


@dataclass(frozen=True, slots=True)
class Held:
    """A score as the gradebook holds it. `score_maximum` is None when the gradebook's own
    column gives it (a SIS line item); LTI 1.1 holds a fraction of its column (maximum 1):
    `on_scale` says either on the activity's scale."""

    score_given: float | None  # None: it holds no score (removed, or excused)
    score_maximum: float | None
    read_back: bool  # found by reading the gradebook back, not only sent
    # LTI 1.1: the activity's points the fraction was sent on, or read back on (logged with
    # the line since migration 0025); None: not known, the activity's points now stand in
    scale: float | None = None

    def text(self) -> str:
        if self.score_given is None:
            return "no score"
        given = f"{self.score_given:g}"
        return given if self.score_maximum is None else f"{given} / {self.score_maximum:g}"

    def on_scale(
        self, kind: DestinationKind | str, points: float | None, line_item: float | None = None
    ) -> Held:
        """The score on the activity's scale, as an AGS gradebook's holds it: LTI 1.1 holds a
        fraction of 1 ("0.8 / 1" is "8 / 10" of a 10-point activity), on the points it was
        sent on (`scale`); a SIS result no maximum of its own, its line item's as it is now
        (`line_item`, `line_item_maximum`): made worth 20, the line item holds 9 / 20 of a
        9 typed on 10 points. `points`: the activity's points now, which stand in when the
        line or the link did not keep them; None when unknown (the score is kept as held)."""
        if kind in SIS_KINDS:
            points = line_item if line_item is not None else points
        elif self.scale is not None:
            points = self.scale  # what the gradebook took it on, whatever the points are now
        if points is None or points <= 0 or self.score_given is None:
            return self
        if kind == DestinationKind.LTI11_OUTCOMES and self.score_maximum == 1.0:
            # a fraction, rounded off its float noise (0.8 * 10 is 8.000000000000002)
            return replace(
                self, score_given=round(self.score_given * points, 9), score_maximum=points
            )
        if kind in SIS_KINDS and self.score_maximum is None:
            return replace(self, score_maximum=points)
        return self


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _sent(payload: Mapping[str, Any]) -> Held | None:
    """The score a delivered send carried, in each adapter's own body."""
    if "scoreMaximum" in payload or "scoreGiven" in payload:  # LTI 1.3 AGS score
        return Held(_number(payload.get("scoreGiven")), _number(payload.get("scoreMaximum")), False)
    if "operation" in payload:  # LTI 1.1 Outcomes: a fraction, or the grade removed
        if payload["operation"] != "replaceResult":
            return Held(None, None, False)
        return Held(_number(payload.get("score")), 1.0, False)
    result = payload.get("result")
    if isinstance(result, Mapping):  # OneRoster REST result
        return Held(_number(result.get("score")), None, False)
    if "score" in payload:  # OneRoster CSV row
        return Held(_number(payload.get("score")), None, False)
    return None


def held_score(line: Mapping[str, Any]) -> Held | None:
    """What the gradebook holds after this delivery log line (one of HOLDING_OUTCOMES), or
    None when the line does not say."""
    payload = line.get("payload") or {}
    if line.get("outcome") == OVERRIDE_SEEN:
        found = payload.get("read_back")
        if not isinstance(found, Mapping):
            return None
        given, maximum = _number(found.get("remote_given")), _number(found.get("remote_maximum"))
        return Held(given, maximum, True, _number(line.get("score_scale")))
    if line.get("outcome") == DELIVERED:
        sent = _sent(payload)
        scale = _number(line.get("score_scale"))
        return replace(sent, scale=scale) if sent is not None and scale is not None else sent
    return None


def newest_held(lines: Iterable[Mapping[str, Any]]) -> Held | None:
    """What the gradebook holds, from a grade's log lines newest first: the first line that
    says it (a send, or a readback that found an edit)."""
    for line in lines:
        if line.get("outcome") in HOLDING_OUTCOMES:
            return held_score(line)
    return None
