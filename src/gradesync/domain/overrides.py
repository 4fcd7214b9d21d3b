"""Instructor overrides: a grade in the LMS that differs from what gradesync last sent.

An instructor may type a grade into the LMS gradebook over one gradesync delivered. Verify
reads the results back and `detect_overrides` compares them with the ledger. What happens
next is a per-course policy (`PolicySettings.keep_lms_edits`):

- keep the LMS edit (the default): the row stays delivered and is marked `overridden` with the
  evidence, so nothing is resent over the edit until the learner's grade changes;
- gradesync wins (Pearson's behaviour): the row becomes pending again and is resent with a
  score timestamp later than the edit, so the LMS applies it (the LTI timestamp rule refuses
  a score older than the grade it holds).

A grade held as sent on a column whose points were changed in the LMS is no override
(`detect_rescaled`): its column is written back and the grade sent again, once per rescale
(`rescale_entry`, kept on the column's link until a read-back finds it on those points); an LMS that
still reads it on its own points after that keeps them (`keeps_points`), and is told of, not
written to again on every verify.

Pure: facts in, rows to write out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from gradesync.domain.canonical import iso, parse_iso
from gradesync.domain.columns import RESCALE_KEY
from gradesync.domain.ledger import reopened
from gradesync.domain.model import DeliveryState, ItemLink, LedgerKey, LedgerRow

OVERRIDDEN = "overridden"  # ledger reason_code of a row whose LMS grade was edited
# ledger reason_code of a row sent again because its column's points were changed in the LMS
COLUMN_RESCALED = "column_rescaled"
# ledger reason_code and delivery log outcome (it fits deliveries.outcome) of a delivered row
# left on the points the LMS keeps for its column (`keeps_points`)
POINTS_KEPT = "points_kept"
# Delivery log outcome recorded when an override is found (fits deliveries.outcome).
OVERRIDE_SEEN = "overridden"

# Two scores are the same grade when their fractions of the maximum agree this closely (an
# LMS scales a percent to its own points and rounds).
TOLERANCE = 1e-4


@dataclass(frozen=True, slots=True)
class RemoteResult:
    """A result as the destination holds it now, matched to a gradesync person."""

    person_id: str
    score_given: float | None
    score_maximum: float | None
    comment: str | None = None
    timestamp: datetime | None = None
    maximum_said: bool = True  # False: the destination left it out (AGS's default 1)


@dataclass(frozen=True, slots=True)
class Override:
    key: LedgerKey
    sent_given: float | None
    sent_maximum: float
    remote_given: float | None
    remote_maximum: float | None
    remote_timestamp: datetime | None
    sent_at: datetime | None  # when gradesync delivered what it sent

    @property
    def cleared(self) -> bool:
        return self.remote_given is None

    def describe(self) -> str:
        sent = _fmt_score(self.sent_given, self.sent_maximum)
        when_sent = f" on {_when(self.sent_at)}" if self.sent_at else ""
        if self.cleared:
            now = "no grade (it was cleared in the LMS)"
        else:
            now = _fmt_score(self.remote_given, self.remote_maximum)
        edited = (
            f", changed in the LMS on {_when(self.remote_timestamp)}"
            if (self.remote_timestamp)
            else ""
        )
        return f"gradesync sent {sent}{when_sent}; the LMS now holds {now}{edited}."

    def as_json(self) -> dict[str, object]:
        return {
            "destination_id": self.key.destination_id,
            "activity_id": self.key.activity_id,
            "person_id": self.key.person_id,
            "sent_given": self.sent_given,
            "sent_maximum": self.sent_maximum,
            "remote_given": self.remote_given,
            "remote_maximum": self.remote_maximum,
            "remote_timestamp": iso(self.remote_timestamp) if self.remote_timestamp else None,
            "sent_at": iso(self.sent_at) if self.sent_at else None,
            "summary": self.describe(),
        }


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt_score(given: float | None, maximum: float | None) -> str:
    if given is None:
        return "no score"
    top = f"/{maximum:g}" if maximum is not None else ""
    return f"{given:g}{top}"


def same_grade(
    given: float | None, maximum: float | None, got: float | None, got_max: float | None
) -> bool:
    """Equal as fractions of their maxima (or equal as numbers when a maximum is unknown)."""
    if given is None or got is None:
        return given is None and got is None
    if maximum and got_max:
        return abs(given / maximum - got / got_max) <= TOLERANCE
    return abs(given - got) <= TOLERANCE


def _compared(
    remote: Mapping[str, RemoteResult], rows: Iterable[LedgerRow]
) -> Iterable[tuple[LedgerRow, float, float, RemoteResult]]:
    """(row, score sent, maximum sent, what the destination holds) for the rows gradesync
    believes are there (DELIVERED, desired == delivered, a score sent) that the read-back
    lists (some LMSs omit empty results: a learner not listed is not judged)."""
    for row in rows:
        if row.state is not DeliveryState.DELIVERED or row.desired is None:
            continue
        if row.delivered_hash is None or row.delivered_hash != row.desired_hash:
            continue
        given = row.desired.get("score_given")
        if given is None:
            continue  # excused or pending: there is no score to compare
        got = remote.get(row.key.person_id)
        if got is not None:
            yield row, float(given), float(row.desired.get("score_maximum") or 0.0), got


def _rescaled(given: float, maximum: float, got: RemoteResult) -> bool:
    """The score sent, held on other points the destination says: the column's points were
    changed in the LMS (a zero, or a maximum left out, says nothing of the column)."""
    return (
        got.maximum_said
        and got.score_given is not None
        and abs(got.score_given - given) <= TOLERANCE
        and got.score_maximum is not None
        and maximum > 0
        and abs(got.score_maximum - maximum) > TOLERANCE
        and not same_grade(given, maximum, got.score_given, got.score_maximum)
    )


@dataclass(frozen=True, slots=True)
class Rescaled:
    """A grade the LMS holds as gradesync sent it, on a column whose points were changed
    there (by hand, or by another tool): 9 of 10 sent reads 9 of 99. Nobody edited the
    grade; the column is gradesync's to put right, and the grade is sent again after it."""

    key: LedgerKey
    sent_given: float
    sent_maximum: float
    remote_maximum: float
    remote_timestamp: datetime | None = None

    def describe(self) -> str:
        return (
            f"The LMS column's points were changed to {self.remote_maximum:g} (gradesync wrote "
            f"{self.sent_maximum:g}), so the {self.sent_given:g} gradesync sent reads "
            f"{_fmt_score(self.sent_given, self.remote_maximum)}. gradesync puts the column's "
            "points back and sends the grade again."
        )


def detect_rescaled(
    remote: Mapping[str, RemoteResult], rows: Iterable[LedgerRow]
) -> list[Rescaled]:
    """Rows whose grade the destination holds as sent, on points changed there (`Rescaled`):
    not overrides (`detect_overrides` leaves them out)."""
    return [
        Rescaled(row.key, given, maximum, float(got.score_maximum or 0.0), got.timestamp)
        for row, given, maximum, got in _compared(remote, rows)
        if _rescaled(given, maximum, got)
    ]


@dataclass(frozen=True, slots=True)
class LastRescale:
    """The column's open rescale (`open_rescale`): when verify found it and put its points
    back, and the points the LMS held then."""

    at: datetime
    remote_maximum: float | None


def rescale_entry(found: Rescaled, now: datetime) -> dict[str, object]:
    """What the column's link keeps (under `RESCALE_KEY`) when verify puts its points back:
    one rescale, which bounds `keeps_points` until a read-back finds the column on its points."""
    return {"rescaled_to": found.remote_maximum, "at": iso(now)}


def open_rescale(item: ItemLink | None) -> LastRescale | None:
    """The rescale put back on the column and not yet read back on gradesync's points; None
    when there is none (never rescaled, or read back right since: `reads_on_points_sent`)."""
    entry = item.data.get(RESCALE_KEY) if item is not None else None
    if not isinstance(entry, Mapping) or not entry.get("at"):
        return None
    most = entry.get("rescaled_to")
    return LastRescale(parse_iso(str(entry["at"])), float(most) if most is not None else None)


def reads_on_points_sent(remote: Mapping[str, RemoteResult], rows: Iterable[LedgerRow]) -> bool:
    """Whether the read-back finds a grade on the points it was sent on (as sent, or changed
    by hand: either way the column's points are gradesync's again), so a rescale put back
    before is over."""
    return any(
        got.maximum_said
        and got.score_maximum is not None
        and abs(got.score_maximum - maximum) <= TOLERANCE
        for _, _, maximum, got in _compared(remote, rows)
    )


def keeps_points(found: Rescaled, delivered_at: datetime | None, last: LastRescale | None) -> bool:
    """Whether the LMS keeps its own points for the column: it was found rescaled to these
    same points and put back (`last`, the column's open rescale: gradesync wrote it back
    since, its mark is gone: the caller checks), no read-back has found it on its points since,
    and this grade, sent after, reads on them still. Writing the column and resending again
    would change nothing, on every verify for ever: the grade is left as the LMS holds it
    and a person is told (`kept_text`). A grade changed since counts too: it went to the
    column after its points were written back."""
    return (
        last is not None
        and last.remote_maximum is not None
        and abs(last.remote_maximum - found.remote_maximum) <= TOLERANCE
        and delivered_at is not None
        and delivered_at >= last.at
    )


def points_back(remote: Mapping[str, RemoteResult], rows: Iterable[LedgerRow]) -> list[LedgerKey]:
    """Rows left on the LMS's points (`points_kept`) whose grade it reads as sent again (the
    column's points were set back there): no longer a problem."""
    return [
        row.key
        for row, given, maximum, got in _compared(remote, rows)
        if row.reason_code == POINTS_KEPT
        and same_grade(given, maximum, got.score_given, got.score_maximum)
    ]


def cleared(row: LedgerRow, now: datetime) -> LedgerRow:
    """A row of `points_back`: delivered as it was, its problem gone."""
    return replace(row, reason_code=None, reason_text=None, remote_message=None, updated_at=now)


def kept_text(found: Rescaled) -> str:
    """What a row left on the LMS's points says (the remedy is the cause's, said apart)."""
    return (
        f"The LMS keeps its own points ({found.remote_maximum:g}) for this column: gradesync "
        f"wrote its points back ({found.sent_maximum:g}) and sent the grade again, and the "
        f"{found.sent_given:g} it sent still reads "
        f"{_fmt_score(found.sent_given, found.remote_maximum)}. gradesync leaves the column as "
        "the LMS holds it and does not send the grade again for it."
    )


def apply_kept(row: LedgerRow, found: Rescaled, now: datetime) -> LedgerRow | None:
    """The row to write for a grade left on the LMS's points (DELIVERED, reason
    `points_kept`), or None when it is recorded so already: recorded once, not every run."""
    text = kept_text(found)
    if row.reason_code == POINTS_KEPT and row.reason_text == text:
        return None
    held = f"The LMS holds {_fmt_score(found.sent_given, found.remote_maximum)}"
    return replace(
        row, reason_code=POINTS_KEPT, reason_text=text, remote_message=held, updated_at=now
    )


def detect_overrides(
    remote: Mapping[str, RemoteResult], rows: Iterable[LedgerRow]
) -> list[Override]:
    """Rows whose delivered grade the destination no longer holds: the grade was edited or
    cleared there (a result present without a score). A grade held as sent on a column whose
    points changed is not one (`detect_rescaled`)."""
    found: list[Override] = []
    for row, given, maximum, got in _compared(remote, rows):
        if same_grade(given, maximum, got.score_given, got.score_maximum):
            continue
        if _rescaled(given, maximum, got):
            continue
        found.append(
            Override(
                key=row.key,
                sent_given=given,
                sent_maximum=maximum,
                remote_given=got.score_given,
                remote_maximum=got.score_maximum,
                remote_timestamp=got.timestamp,
                sent_at=row.delivered_at,
            )
        )
    return found


def override_text(override: Override, keep_lms_edits: bool) -> str:
    if keep_lms_edits:
        return (
            f"Overridden in the LMS: {override.describe()} This course keeps LMS edits, so "
            "gradesync does not resend over it until the learner's grade changes; a repair "
            "resync sends gradesync's grade again."
        )
    return (
        f"Overridden in the LMS: {override.describe()} This course is set to 'gradesync "
        "wins', so gradesync's grade is resent with a newer timestamp."
    )


def apply_override(
    row: LedgerRow, override: Override, keep_lms_edits: bool, now: datetime
) -> LedgerRow | None:
    """The row to write for a found override, or None when it is already recorded.

    Keep the LMS edit: DELIVERED, reason `overridden` (what we sent and what the LMS holds).
    gradesync wins: PENDING with the same reason, and `last_timestamp` moved up to the edit's
    timestamp so the resend carries a later one (see `ledger.next_score_timestamp`)."""
    text = override_text(override, keep_lms_edits)
    remote = f"The LMS holds {_fmt_score(override.remote_given, override.remote_maximum)}"
    if override.remote_timestamp is not None:
        remote += f" (timestamp {iso(override.remote_timestamp)})"
    if keep_lms_edits:
        if row.reason_code == OVERRIDDEN and row.reason_text == text:
            return None
        return replace(
            row, reason_code=OVERRIDDEN, reason_text=text, remote_message=remote, updated_at=now
        )
    return replace(
        reopened(row, now, reason_code=OVERRIDDEN, reason_text=text),
        remote_message=remote,
        last_timestamp=later_timestamp(row.last_timestamp, override.remote_timestamp),
    )


def later_timestamp(last: datetime | None, remote: datetime | None) -> datetime | None:
    """The newest of our last score timestamp and the LMS's, so the next score timestamp
    (strictly after `last_timestamp`) is also after whatever the LMS holds."""
    if remote is None:
        return last
    if last is None or remote > last:
        return remote
    return last


def repaired(row: LedgerRow, remote_timestamp: datetime | None, now: datetime) -> LedgerRow | None:
    """A repair resync of one row: pending again with a fresh timestamp, even when unchanged.

    Rows with nothing to send (skipped: policy says no grade) are left alone: a repair resends
    gradesync's grade, it never invents one. The row keeps its desired result; the send's
    timestamp will be after both the last one gradesync sent and the LMS's own."""
    if row.desired is None or row.desired_hash is None:
        return None
    if row.state is DeliveryState.SKIPPED:
        return None
    # An LMS clock ahead of ours must not make the repair look older than the grade it fixes:
    # the next timestamp is strictly after this one, whatever our clock says.
    stamp = later_timestamp(row.last_timestamp, remote_timestamp)
    return replace(reopened(row, now), last_timestamp=stamp)
