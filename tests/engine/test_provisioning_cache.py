"""The provisioner's column cache spares asking the destination again until the database has
the link it wrote; a link a person changed since (an activity unticked for the SIS, or ticked
again with a hold) is not hidden behind the cache: the destination is asked again. The caches
hold the recent columns only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from gradesync.domain.model import CourseLink, Destination, DestinationKind, ItemLink
from gradesync.domain.policy import Column, column_hash
from gradesync.services.delivery import provisioning
from gradesync.services.delivery.recent import Recent
from gradesync.services.destination import FailureClass, RemoteFailure
from tests.support.columns import FakeColumns, worker_provisioning

from .conftest import FAST

DEST = Destination("t1", "sis", DestinationKind.ONEROSTER_REST, "SIS", {})
COURSE = CourseLink("t1", "sis", "c1", "cls-1")
COLUMN = Column("Quiz", 10.0, None, None, "a1")


class _Links:
    def save_item(self, link: ItemLink) -> None:
        pass

    def save_written_item(self, link: ItemLink, began: object, *, read: object) -> bool:
        return True


class _Destinations:
    def get(self, tenant_id: str, destination_id: str) -> Destination:
        return DEST  # not paused: what the provisioner's requests re-read


class _Uow:
    links = _Links()
    destinations = _Destinations()

    def commit(self) -> None:
        pass


@contextmanager
def _uow() -> Iterator[_Uow]:
    yield _Uow()


class _Sis(FakeColumns):
    """Provisions a ticked column; refuses an unticked one, as the OneRoster adapter does."""

    def __init__(self) -> None:
        self.asked = 0

    async def write(self, column: Column, link: ItemLink | None, *, force: bool) -> ItemLink:
        self.asked += 1
        if link is None or not link.data.get("sync_to_sis"):
            raise RemoteFailure(FailureClass.NOT_SYNCED, "not_selected_for_sis", "not ticked")
        return replace(link, details_hash=column_hash(column), data={**link.data, "li": "x"})


async def test_a_link_changed_by_a_person_is_not_hidden_by_the_cache() -> None:
    p, background, _ = worker_provisioning(_uow, FAST)
    sis: Any = _Sis()
    ticked = ItemLink("t1", "sis", "a1", "li-1", None, {"sync_to_sis": True})
    made, written = await p.ensure_column(sis, DEST, COURSE, COLUMN, ticked)
    assert written and sis.asked == 1
    # the claim's read still has the link as it was before the write: the cache answers
    again, written = await p.ensure_column(sis, DEST, COURSE, COLUMN, ticked)
    assert again == made and not written and sis.asked == 1

    # the column's details change before the database caught up: one more write, and the
    # stale read still finds it in the cache (no second column is created)
    renamed = replace(COLUMN, title="Quiz 1")
    _, written = await p.ensure_column(sis, DEST, COURSE, renamed, ticked)
    assert written and sis.asked == 2
    _, written = await p.ensure_column(sis, DEST, COURSE, renamed, ticked)
    assert not written and sis.asked == 2

    # a person unticks it: the destination is asked, and refuses
    unticked = replace(made, details_hash=None, data={**made.data, "sync_to_sis": False})
    try:
        await p.ensure_column(sis, DEST, COURSE, COLUMN, unticked)
    except RemoteFailure as f:
        assert f.failure is FailureClass.NOT_SYNCED
    else:
        raise AssertionError("an unticked column was served from the cache")
    assert sis.asked == 3
    await background.wait()


async def test_the_caches_keep_the_recent_columns_not_every_one_ever_served(
    monkeypatch: Any,
) -> None:
    """A vendor's thousands of courses: the process keeps the columns it is sending to now.
    One pushed out is asked of the destination again, never lost or doubled."""
    monkeypatch.setattr(provisioning, "CACHED", 3)
    p, background, _ = worker_provisioning(_uow, FAST)
    sis: Any = _Sis()
    links = {
        a: ItemLink("t1", "sis", a, f"li-{a}", None, {"sync_to_sis": True})
        for a in ("a1", "a2", "a3", "a4", "a5")
    }
    for a, link in links.items():
        await p.ensure_column(sis, DEST, COURSE, replace(COLUMN, activity_id=a), link)
    assert sis.asked == 5
    assert list(p._item_links) == [("t1", "sis", a) for a in ("a3", "a4", "a5")]
    assert not p._column_locks  # a column's lock goes when no pass holds it
    # a recent column is served from the cache; one pushed out is asked again
    await p.ensure_column(sis, DEST, COURSE, replace(COLUMN, activity_id="a5"), links["a5"])
    assert sis.asked == 5
    await p.ensure_column(sis, DEST, COURSE, replace(COLUMN, activity_id="a1"), links["a1"])
    assert sis.asked == 6
    await background.wait()


def test_recent_keeps_the_most_recently_used() -> None:
    r: Recent[str, int] = Recent(2)
    r["a"], r["b"] = 1, 2
    assert r.get("a") == 1  # read: now the most recent
    r["c"] = 3
    assert dict(r) == {"a": 1, "c": 3}
    assert r.get("b") is None and r.get("b", 0) == 0
