"""What a destination was called when a run was asked for or a grade was sent to it.

Runs and the delivery log outlive a deleted destination, and a destination made again under
the same id is another one: what happened before its deletion is the deleted one's, under
the name that one had (a run keeps it; each deletion records it), never the new one's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from gradesync.domain.model import DeletedDestination

DELETED_MARK = " (deleted)"


@dataclass(frozen=True, slots=True)
class NamedThen:
    name: str
    deleted: bool  # the destination it names was deleted since

    @property
    def shown(self) -> str:
        """As a page lists it: a deleted one says so, never passing for one still there."""
        return f"{self.name}{DELETED_MARK}" if self.deleted else self.name


def named_then(
    destination_id: str,
    at: datetime | None,
    current: Mapping[str, str],
    deletions: Iterable[DeletedDestination],
    *,
    kept: str | None = None,
) -> NamedThen:
    """The destination `destination_id` named at `at` (None: not known, before any
    deletion). Deleted at or after `at`: the one deleted first since, under `kept` (the
    name a run kept) or the name its deletion recorded. Otherwise the destination there now
    (`current`: id -> name). Neither (deleted before deletions were recorded): `kept`, else
    its id, marked deleted."""
    since = [d for d in deletions if d.id == destination_id and (at is None or d.deleted_at >= at)]
    if since:
        first = min(since, key=lambda d: d.deleted_at)
        return NamedThen(kept or first.name, True)
    if destination_id in current:
        return NamedThen(current[destination_id], False)
    return NamedThen(kept or destination_id, True)


def shared_names(names: Iterable[str]) -> frozenset[str]:
    """The names more than one destination has: alone, they do not say which one."""
    return frozenset(name for name, n in Counter(names).items() if n > 1)


def labelled(
    destination_id: str, named: NamedThen, shared: Collection[str] = (), *, marked: bool = True
) -> str:
    """A destination as the command line names it: by its name, with its id where the name
    alone does not say which one, because another destination has it too (`shared`) or
    this one was deleted (the id a filter such as `runs list --destination` takes):
    "Canvas", "Canvas (canvas-2)", "Moodle (moodle, deleted)". `marked=False`: a deleted
    one's label not marked deleted (where it is listed as deleted already)."""
    if named.deleted:
        # known by its id alone (deleted before deletions kept names): said once
        said = [] if named.name == destination_id else [destination_id]
        said += ["deleted"] if marked else []
        return f"{named.name} ({', '.join(said)})" if said else named.name
    return f"{named.name} ({destination_id})" if named.name in shared else named.name
