"""Whether a destination holds an activity's column (line item), and why it never will: what
the console's course and SIS pages, `doctor` and a SIS's validation say, from the rules the
engine applies (`policy.column_for`), so that none of them shows a column the destination
does not have."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

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


# ItemLink.data key verify owns: the points a read-back found the column rescaled to, and
# when, until a read-back finds it on gradesync's points again (`domain.overrides`). No
# column write changes it (an AGS write keeps only the line item's own fields, and a key a
# write leaves out is kept as stored: `written_link`).
RESCALE_KEY = "rescaled"


def _held(data: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    """Whether `data` holds `key`, and its value: a key left out is not one holding None."""
    return (key in data, data.get(key))


def written_link(
    stored: ItemLink | None,
    written: ItemLink,
    began: Iterable[ItemLink],
    *,
    read: ItemLink | None,
) -> tuple[ItemLink, bool]:
    """What to store for a column write (`written`) made from the link `read` (None: there
    was none), over what is `stored` now (the row locked); and whether it is stored as
    written. `began`: every link the writer read or wrote for the column (a process's
    saves of its writes run apart, so what is stored may be any of them).

    Only what the write changed is the write's to store: the keys whose value `written`
    sets or changes from `read`'s. Every other key stays as stored, whoever put it there
    and whichever way the write ends: a person's change saved since the write read the
    column (a SIS selection or hold, an LTI 1.1 launch adding a learner's result id, a
    launch naming the column's link, verify's `RESCALE_KEY`) is never saved over by the
    copy the write read, nor a key it left out dropped; no list of them is kept. A key the
    write changed is stored unless another changed it too since (the stored value is none
    the writer read or wrote): theirs wins.

    As written (its details hash; its line item) while the stored details hash is one of
    `began`'s; else a mark or a person's change came after the write read the column: its
    details hash stays, and what the write learned of the column (the line item it created,
    a SIS's line items and matches) is kept still, so that the next write does not look for
    it again. The line item it wrote replaces the stored one only where that is one it
    began from: a launch naming another one meanwhile wins, and keeps its data whole."""
    if stored is None:
        return written, True
    seen = [*began, *([] if read is None else [read])]
    ours = {"", *(b.remote_id for b in seen)}
    remote_id = written.remote_id if stored.remote_id in ours else stored.remote_id
    before = read.data if read is not None else {}
    # what a key of the link was in any link the writer read or wrote (None read: left out)
    bases = [*(b.data for b in began), before]
    data = dict(stored.data)
    # the write's keys describe the line item it wrote: none of them goes to another one a
    # launch named meanwhile (its label, points and line items are not the write's)
    changes = written.data.items() if remote_id == written.remote_id else ()
    for key, value in changes:
        if _held(before, key) == (True, value):
            continue  # as the write read it: not its change
        if _held(stored.data, key) in [_held(b, key) for b in bases]:
            data[key] = value
    if stored.details_hash in {b.details_hash for b in seen}:
        return replace(
            stored, remote_id=remote_id, details_hash=written.details_hash, data=data
        ), True
    return replace(stored, remote_id=remote_id, data=data), False


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
