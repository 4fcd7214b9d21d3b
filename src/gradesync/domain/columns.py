"""Whether a destination holds an activity's column (line item), and why it never will: what
the console's course and SIS pages, `doctor` and a SIS's validation say, from the rules the
engine applies (`policy.column_for`), so that none of them shows a column the destination
does not have."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from gradesync.domain.capabilities import Capabilities
from gradesync.domain.errors import FieldProblem
from gradesync.domain.model import SIS_KINDS, Activity, DestinationKind, ItemLink
from gradesync.domain.policy import NoResult, ResolvedPolicy, column_for
from gradesync.domain.reasons import Reason, ReasonCode

# the activity's own facts that keep every grade of it from every gradebook for as long as
# they hold (not a person's switch: sync turned off, not published yet)
NEVER_SENT = frozenset(
    {ReasonCode.PRACTICE_ITEM, ReasonCode.BELOW_MINIMUM_POINTS, ReasonCode.FRACTIONAL_POINTS}
)
_FIELDS = {
    ReasonCode.PRACTICE_ITEM: "kind",
    ReasonCode.BELOW_MINIMUM_POINTS: "points_possible",
    ReasonCode.FRACTIONAL_POINTS: "points_possible",
}


_CHECK = "check:"
_LOOK = "look:"


def check_mark(run_id: str) -> str:
    """The details hash a run (a remaster, or one carrying a remaster's columns) puts on
    each column it writes whatever its details: never a real hash, so the first write to
    the column after it, a grade's or the run's own, is forced and clears it. One run's mark
    is never another's, so a process's memory of a column it wrote never takes it for new."""
    return f"{_CHECK}{run_id}"


def marked_to_check(item: ItemLink | None) -> bool:
    """Whether a run's mark (`check_mark`) still waits on this column."""
    return item is not None and (item.details_hash or "").startswith(_CHECK)


def look_mark(token: str) -> str:
    """The details hash a person's change (a launch linking the column again, a SIS
    selection, alignment or class) puts on a column to have it looked at again: never a
    real hash, so the next write compares the column with what is wanted and writes it
    where it differs (unforced, unlike a run's mark). `token` is new for each change: one
    equal to an earlier mark would be taken by a process's memory of the column for the
    link it read then, and a write begun before it would save over it."""
    return f"{_LOOK}{token}"


def to_look_at(item: ItemLink) -> bool:
    """Whether the column waits for its first write, or for a look a person's change asked
    for (`look_mark`): no details are known to be there."""
    return item.details_hash is None or item.details_hash.startswith(_LOOK)


# ItemLink.data keys a person's change sets: a SIS selection and its hold (`sync_to_sis`,
# `held`, `selected_at`), an LTI 1.3 launch or a move from LTI 1.1 naming the column's link
# (`resourceLinkId`, `lineitems`), an LTI 1.1 launch's outcome service. A column write keeps
# them as it read them, so what is stored is theirs when the write was refused (`written_link`).
PERSONS_KEYS = frozenset(
    {
        "sync_to_sis",
        "held",
        "selected_at",
        "resourceLinkId",
        "lineitems",
        "resource_link_id",
        "course_id",
        "resource_link_title",
        "outcome_service_url",
        "sourcedids",
        "outcome_urls",
    }
)
# ItemLink.data key verify owns: the points a read-back found the column rescaled to, and
# when, until a read-back finds it on gradesync's points again (`domain.overrides`). No
# column write sets it (an AGS write keeps only the line item's own fields): it is always
# kept as stored.
RESCALE_KEY = "rescaled"


def written_link(
    stored: ItemLink | None, written: ItemLink, began: Iterable[ItemLink]
) -> tuple[ItemLink, bool]:
    """What to store for a column write (`written`) that read or wrote the links `began`,
    over what is `stored` now; and whether it is stored as written. As written while the
    stored details hash is one of `began`'s; else a mark or a person's change came after
    the write read the column: its details hash and the person's keys stay, and what the
    write learned of the column (the line item it created, a SIS's line items and matches)
    is kept still, so that the next write does not look for it again. The line item it
    wrote replaces the stored one only where that is one it began from: a launch naming
    another one meanwhile wins."""
    if stored is None:
        return written, True
    keep = {k: v for k, v in stored.data.items() if k == RESCALE_KEY}
    if stored.details_hash in {b.details_hash for b in began}:
        mine = {k: v for k, v in written.data.items() if k != RESCALE_KEY}
        return replace(written, data=mine | keep), True
    owned = PERSONS_KEYS | {RESCALE_KEY}
    mine = {k: v for k, v in written.data.items() if k not in owned}
    theirs = {k: v for k, v in stored.data.items() if k in owned}
    began_ids = {"", *(b.remote_id for b in began)}
    remote_id = written.remote_id if stored.remote_id in began_ids else stored.remote_id
    return replace(stored, remote_id=remote_id, data=mine | theirs), False


def columns_made(kind: DestinationKind | str) -> bool:
    """Whether gradesync writes the destination's columns (line items): a column gone there
    is made again by the next write. LTI 1.1 passes a grade to the LMS's own column only."""
    return kind != DestinationKind.LTI11_OUTCOMES


def column_written(kind: DestinationKind | str, item: ItemLink | None) -> bool:
    """Whether the destination holds the column `item` links to. A SIS's link is made when
    the activity is ticked, with the line item's sourcedId chosen ahead; the line item
    exists once gradesync has written it (the classes it is in are kept then). An LMS's
    link names a column the LMS made or gradesync created."""
    if item is None or not item.remote_id:
        return False
    if kind in SIS_KINDS:
        return bool(item.data.get("line_items"))
    return True


def no_column(
    activity: Activity, policy: ResolvedPolicy | Reason, capabilities: Capabilities | Reason
) -> Reason | None:
    """Why no column is made for `activity` at a destination that takes `capabilities` (a
    practice item, under the minimum points, sync turned off, ...), or None: one is."""
    if isinstance(policy, Reason):
        return policy
    caps = capabilities if isinstance(capabilities, Capabilities) else Capabilities()
    column = column_for(activity, policy, caps)
    return column.reason if isinstance(column, NoResult) else None


def never_sent_problem(
    activity: Activity, policy: ResolvedPolicy, capabilities: Capabilities
) -> FieldProblem | None:
    """A ticked activity none of whose grades can be sent, as it is (a practice item, worth
    less than the minimum points, or points the destination cannot take), as a problem
    naming the field to change and the reason's code; None when its grades can be sent."""
    # whether it is published or synced at all is a person's switch, said elsewhere
    why = no_column(replace(activity, published=True, sync_enabled=True), policy, capabilities)
    if why is None or why.code not in NEVER_SENT:
        return None
    field = _FIELDS[ReasonCode(why.code)]
    return FieldProblem(field, why.code, f"Not synced: none of its grades is sent. {why.text}")
