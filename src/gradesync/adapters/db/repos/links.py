"""Course, item and person links: how a destination knows our courses, columns and people."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import bindparam, delete, select, update

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.driver_rows import decoded_rows
from gradesync.adapters.db.mapping import (
    bulk_insert,
    from_row,
    insert_new,
    rows_of_arrays,
    to_row,
    upsert,
)
from gradesync.adapters.db.repos.base import SqlRepo
from gradesync.domain.columns import written_link
from gradesync.domain.model import CourseLink, ItemLink, PersonLink
from gradesync.services import ports

# ids per IN (...) list: far below SQLite's limit on bound parameters (32,766)
_IN_CHUNK = 500


@cache
def _links_by_persons() -> Any:
    """PostgreSQL: person links of :ids (one array) in any of :courses (another)."""
    c = t.person_links.c
    ids = rows_of_arrays("wanted", ("id", "ids", c.person_id.type))
    courses = rows_of_arrays("course", ("id", "courses", c.course_id.type))
    return (
        select(t.person_links)
        .join(ids, c.person_id == ids.c.id)
        .join(courses, c.course_id == courses.c.id)
        .where(c.tenant_id == bindparam("tenant"), c.destination_id == bindparam("destination"))
    )


_PERSON_COLUMNS = tuple(t.person_links.c)
_PERSON_FIELDS = itemgetter(
    *(
        [c.name for c in _PERSON_COLUMNS].index(n)
        for n in ("tenant_id", "destination_id", "person_id", "remote_id", "course_id", "data")
    )
)


def _person_links(result: Any) -> list[PersonLink]:
    """The whole person links `result` reads (`select(t.person_links)`), as `_person` makes
    them, from the driver's rows (`driver_rows`; `tests/integration/test_driver_rows.py`)."""
    out = []
    for v in decoded_rows(result, _PERSON_COLUMNS):
        tenant_id, destination_id, person_id, remote_id, course_id, data = _PERSON_FIELDS(v)
        out.append(
            PersonLink(tenant_id, destination_id, person_id, remote_id, course_id or None, data)
        )
    return out


class LinkRepo(SqlRepo, ports.LinkRepo):
    def course(
        self, tenant_id: str, destination_id: str, course_id: str, *, for_update: bool = False
    ) -> CourseLink | None:
        c = t.course_links.c
        q = select(t.course_links).where(
            c.tenant_id == tenant_id,
            c.destination_id == destination_id,
            c.course_id == course_id,
        )
        # SQLite has no row locks: its transactions already hold the write lock
        row = self.conn.execute(q.with_for_update() if for_update else q).mappings().first()
        return from_row(CourseLink, row) if row else None

    def hold_course(self, tenant_id: str, destination_id: str, course_id: str) -> CourseLink:
        keys = [k.name for k in t.course_links.primary_key.columns]
        empty = CourseLink(tenant_id, destination_id, course_id, "")
        stmt, params = bulk_insert(self.conn, t.course_links, [to_row(empty)], conflict=keys)
        self.conn.execute(stmt, params)  # nothing when it exists, or waits for one being made
        held = self.course(tenant_id, destination_id, course_id, for_update=True)
        assert held is not None  # made above, or before: deleted only with its destination
        return held

    def courses_for_destination(self, tenant_id: str, destination_id: str) -> list[CourseLink]:
        c = t.course_links.c
        rows = self.conn.execute(
            select(t.course_links).where(
                c.tenant_id == tenant_id, c.destination_id == destination_id
            )
        ).mappings()
        return [from_row(CourseLink, r) for r in rows]

    def destinations_for_course(self, tenant_id: str, course_id: str) -> list[CourseLink]:
        return self.destinations_for_courses(tenant_id, [course_id])

    def destinations_for_courses(
        self, tenant_id: str, course_ids: Iterable[str]
    ) -> list[CourseLink]:
        c = t.course_links.c
        ids = sorted(set(course_ids))
        if not ids:  # no round trip for nothing
            return []
        rows = self.conn.execute(
            select(t.course_links).where(c.tenant_id == tenant_id, c.course_id.in_(ids))
        ).mappings()
        return [from_row(CourseLink, r) for r in rows]

    def save_course(self, link: CourseLink) -> None:
        upsert(self.conn, t.course_links, to_row(link))

    def item(
        self, tenant_id: str, destination_id: str, activity_id: str, *, for_update: bool = False
    ) -> ItemLink | None:
        if for_update:
            return self._item_for_update(tenant_id, destination_id, activity_id)
        c = t.item_links.c
        row = (
            self.conn.execute(
                select(t.item_links).where(
                    c.tenant_id == tenant_id,
                    c.destination_id == destination_id,
                    c.activity_id == activity_id,
                )
            )
            .mappings()
            .first()
        )
        return from_row(ItemLink, row) if row else None

    def items(
        self, tenant_id: str, destination_id: str, activity_ids: Iterable[str]
    ) -> dict[str, ItemLink]:
        c = t.item_links.c
        ids = sorted(set(activity_ids))
        if not ids:  # no round trip for nothing
            return {}
        rows = self.conn.execute(
            select(t.item_links).where(
                c.tenant_id == tenant_id,
                c.destination_id == destination_id,
                c.activity_id.in_(ids),
            )
        ).mappings()
        return {r["activity_id"]: from_row(ItemLink, r) for r in rows}

    def save_item(self, link: ItemLink) -> None:
        upsert(self.conn, t.item_links, to_row(link))

    def add_item(self, link: ItemLink) -> bool:
        return insert_new(self.conn, t.item_links, to_row(link))

    def save_written_item(
        self, link: ItemLink, began: Iterable[ItemLink], *, read: ItemLink | None
    ) -> bool:
        keys = [k.name for k in t.item_links.primary_key.columns]
        seen = list(began)
        # locked: a mark or a person's change waits for this save, or this save for it, and
        # what it stored meanwhile is kept but for the keys the write changed (`written_link`)
        stored = self._item_for_update(link.tenant_id, link.destination_id, link.activity_id)
        if stored is None:
            if self.add_item(link):
                return True
            # one was made meanwhile (a person's change): weighed as any stored link is
            stored = self._item_for_update(link.tenant_id, link.destination_id, link.activity_id)
        saved, as_written = written_link(stored, link, seen, read=read)
        if saved != stored:
            c = t.item_links.c
            self.conn.execute(
                update(t.item_links)
                .where(
                    c.tenant_id == link.tenant_id,
                    c.destination_id == link.destination_id,
                    c.activity_id == link.activity_id,
                )
                .values({k: v for k, v in to_row(saved).items() if k not in keys})
            )
        return as_written

    def _item_for_update(
        self, tenant_id: str, destination_id: str, activity_id: str
    ) -> ItemLink | None:
        c = t.item_links.c
        row = (
            self.conn.execute(
                select(t.item_links)
                .where(
                    c.tenant_id == tenant_id,
                    c.destination_id == destination_id,
                    c.activity_id == activity_id,
                )
                .with_for_update()
            )
            .mappings()
            .first()
        )
        return from_row(ItemLink, row) if row else None

    def update_item_data(
        self,
        tenant_id: str,
        destination_id: str,
        activity_id: str,
        changes: Mapping[str, Any],
    ) -> None:
        stored = self._item_for_update(tenant_id, destination_id, activity_id)
        if stored is None:
            return
        data = {**stored.data, **changes}
        data = {k: v for k, v in data.items() if v is not None}
        if data == stored.data:
            return
        c = t.item_links.c
        self.conn.execute(
            update(t.item_links)
            .where(
                c.tenant_id == tenant_id,
                c.destination_id == destination_id,
                c.activity_id == activity_id,
            )
            .values(data=data)
        )

    def mark_items_to_check(
        self, tenant_id: str, destination_id: str, activity_ids: Iterable[str], mark: str
    ) -> None:
        c = t.item_links.c
        ids = sorted(set(activity_ids))
        if not ids:
            return
        mine = (
            c.tenant_id == tenant_id,
            c.destination_id == destination_id,
            c.activity_id.in_(ids),
        )
        if self.postgres:
            # locked in id order first, as a change of links one by one takes them (an
            # UPDATE locks rows in the order its scan meets them): no deadlock between two
            self.conn.execute(
                select(c.activity_id)
                .where(*mine)
                .order_by(c.activity_id)
                .with_for_update(key_share=True)
            )
        self.conn.execute(update(t.item_links).where(*mine).values(details_hash=mark))

    def delete_item(self, tenant_id: str, destination_id: str, activity_id: str) -> None:
        c = t.item_links.c
        self.conn.execute(
            delete(t.item_links).where(
                c.tenant_id == tenant_id,
                c.destination_id == destination_id,
                c.activity_id == activity_id,
            )
        )

    def person(
        self, tenant_id: str, destination_id: str, person_id: str, course_id: str | None = None
    ) -> PersonLink | None:
        c = t.person_links.c
        rows = (
            self.conn.execute(
                select(t.person_links).where(
                    c.tenant_id == tenant_id,
                    c.destination_id == destination_id,
                    c.person_id == person_id,
                    c.course_id.in_([course_id or "", ""]),
                )
            )
            .mappings()
            .all()
        )
        best = sorted(rows, key=lambda r: r["course_id"] == "")
        return self._person(best[0]) if best else None

    def people(self, tenant_id: str, destination_id: str, course_id: str) -> dict[str, PersonLink]:
        c = t.person_links.c
        rows = self.conn.execute(
            select(t.person_links).where(
                c.tenant_id == tenant_id,
                c.destination_id == destination_id,
                c.course_id.in_([course_id, ""]),
            )
        ).mappings()
        out: dict[str, PersonLink] = {}
        for r in rows:  # a course-specific link wins over a general one
            if r["person_id"] not in out or r["course_id"]:
                out[r["person_id"]] = self._person(r)
        return out

    def people_for(
        self, tenant_id: str, destination_id: str, course_id: str, person_ids: Iterable[str]
    ) -> dict[str, PersonLink]:
        pairs = [(course_id, p) for p in person_ids]
        found = self.people_in_courses(tenant_id, destination_id, pairs)
        return {p: link for (_, p), link in found.items()}

    def people_in_courses(
        self, tenant_id: str, destination_id: str, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], PersonLink]:
        wanted = set(pairs)
        ids = sorted({p for _, p in wanted})
        courses = sorted({course for course, _ in wanted} | {""})
        general: dict[str, PersonLink] = {}
        own: dict[tuple[str, str], PersonLink] = {}
        for links in self._links_of(tenant_id, destination_id, courses, ids):
            for found in links:
                if found.course_id:
                    own[(found.course_id, found.person_id)] = found
                else:
                    general[found.person_id] = found
        # a course's own link wins over the general one
        out: dict[tuple[str, str], PersonLink] = {}
        for course, person in wanted:
            link = own.get((course, person)) or general.get(person)
            if link is not None:
                out[(course, person)] = link
        return out

    def _links_of(
        self, tenant_id: str, destination_id: str, courses: list[str], ids: list[str]
    ) -> Iterator[list[PersonLink]]:
        """The links of `ids` in `courses`, which include "" for the general links of no
        course. On PostgreSQL the ids go as one array joined to the table, a statement that
        neither grows with them nor needs expanding per call; on SQLite in chunks, within
        its limit on bound parameters. Every claim reads its people's links: their rows
        are taken as the driver gives them (`_person_links`)."""
        c = t.person_links.c
        if not ids:
            return
        if self.postgres:
            yield _person_links(
                self.conn.execute(
                    _links_by_persons(),
                    {
                        "tenant": tenant_id,
                        "destination": destination_id,
                        "courses": courses,
                        "ids": ids,
                    },
                )
            )
            return
        for i in range(0, len(ids), _IN_CHUNK):
            yield _person_links(
                self.conn.execute(
                    select(t.person_links).where(
                        c.tenant_id == tenant_id,
                        c.destination_id == destination_id,
                        c.course_id.in_(courses),
                        c.person_id.in_(ids[i : i + _IN_CHUNK]),
                    )
                )
            )

    @staticmethod
    def _person(row: Any) -> PersonLink:
        return from_row(PersonLink, row, course_id=row["course_id"] or None)

    def person_links(self, tenant_id: str, destination_id: str, person_id: str) -> list[PersonLink]:
        c = t.person_links.c
        rows = self.conn.execute(
            select(t.person_links).where(
                c.tenant_id == tenant_id,
                c.destination_id == destination_id,
                c.person_id == person_id,
            )
        ).mappings()
        return [self._person(r) for r in rows]

    def save_person(self, link: PersonLink) -> None:
        row = to_row(link)
        row["course_id"] = link.course_id or ""
        upsert(self.conn, t.person_links, row)
