"""A run's counts in the order a person reads them, wherever they are listed in words (`gradesync
runs list|show`, `sync --wait`, the console's run pages): what arrived first, then what the run
worked through, then what waits or was left out, then the problems. Stored, they are in the
order the run's stages wrote them (the read-back's `differs` before `sent`); sorted by name,
`differs` came first too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

V = TypeVar("V")

# the keys of docs/operations.md's table, and of `columns` (`written` ... `failed`)
READING_ORDER = (
    # what arrived
    "sent",
    "sent_so_far",
    "written",
    "unchanged",
    "verified",
    # what the run worked through
    "keys",
    "computed",
    "changed",
    "retried",
    "columns",
    "carried",
    "carried_to",
    # what waits, or was left out
    "pending",
    "retrying",
    "skipped",
    "not_synced",
    # the problems
    "rejected",
    "failed",
    "differs",
    "unverifiable",
    "overridden",
    "rescaled",
    "points_kept",
    "uncounted",
    "columns_failed",
    "column_failures",
    "destinations_deleted",
)
_RANK = {key: i for i, key in enumerate(READING_ORDER)}

# what a person looks for in a list of runs (a run's own page, and --json, give every count)
BRIEF = ("sent", "unchanged", "pending", "retrying", "skipped", "rejected", "differs")
# ... and a destination deleted under a run, a problem a list of runs shows too
DELETED = "destinations_deleted"
LISTED = (*BRIEF, DELETED)


def deleted_words(value: Mapping[str, int], names: Mapping[str, str] | None = None) -> str:
    """`destinations_deleted` (destination id -> what the run sent it before it went) in words:
    counted as destinations, each named as `names` labels it (its id without):
    `1 (Moodle (moodle): 5 sent before)`."""
    each = ", ".join(
        f"{(names or {}).get(d, d)}: {n} sent before" for d, n in sorted(value.items())
    )
    return f"{len(value)} ({each})"


def in_reading_order(counts: Mapping[str, V]) -> list[tuple[str, V]]:
    """The counts in READING_ORDER; keys it does not know (a reason code under `skipped` or
    `rejected`, a count added later) after them, by name."""
    return sorted(counts.items(), key=lambda kv: (_RANK.get(kv[0], len(_RANK)), kv[0]))
