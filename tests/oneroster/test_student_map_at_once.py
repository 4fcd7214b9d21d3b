"""Two changes of which SIS student a learner is linked to, at once: the later one wins,
whichever it is. Each reads the learner's links and writes them; on PostgreSQL (read
committed) the other's change could commit between that read and the write, which then put
the student it had read back over it, in the course's own link (which wins in its course):
the learner's grades went to the student an admin had just mapped them away from."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Person
from gradesync.services import sis
from gradesync.services.ingest import IngestBatch, ingest
from gradesync.testing import ManualClock
from tests.support.races import AfterFirstRead

from .facts import NOW, map_to_class, seed_school


@pytest.fixture
def school(db: Database) -> Database:
    """Course c1 mapped to class cls-1; p1 (SIS id stu-1) picked by hand as student stu-7."""
    clock = ManualClock(NOW)
    seed_school(db, clock)
    sis.add_connection(
        db.uow, clock, tenant_id="t1", destination_id="sis", name="SIS",
        base_url="http://sis.example/", client_id="gs", client_secret="secret-1",
    )  # fmt: skip
    map_to_class(db, "sis")
    _map_student(db, "p1", "stu-7")()
    return db


def _map_student(db: Database, person: str, student: str) -> Callable[..., object]:
    def mapped(factory: object = None) -> object:
        return sis.map_student(
            factory or db.uow, tenant_id="t1", destination_id="sis", person_id=person,
            student_id=student, clock=ManualClock(NOW),
        )  # fmt: skip

    return mapped


def _map_course(db: Database) -> Callable[..., object]:
    def mapped(factory: object = None) -> object:
        return sis.map_course_students(
            factory or db.uow, tenant_id="t1", destination_id="sis", course_id="c1",
            clock=ManualClock(NOW),
        )  # fmt: skip

    return mapped


def _section_b_mapped(db: Database) -> None:
    """Section sec-b of c1 mapped to its own class cls-b, and the course's learners mapped:
    p3, of sec-b, linked to its class."""
    sis.map_class(
        db.uow, tenant_id="t1", destination_id="sis", course_id="c1", class_id="cls-b",
        section_id="sec-b",
    )  # fmt: skip
    _map_course(db)()


def _student_in_c1(db: Database, person: str) -> tuple[str, str | None]:
    """The student (and section class) `person`'s grades in c1 go to."""
    with db.uow() as uow:
        link = uow.links.people("t1", "sis", "c1")[person]
    return link.remote_id, link.data.get("class")


def _waited(db: Database, racing: AfterFirstRead) -> None:
    """On PostgreSQL the other change waited for the first's commit (its lock on the
    learner), rather than committing in between (on SQLite it always runs after)."""
    assert racing.second is not None and racing.second.blocked is not db.is_sqlite


def test_a_student_mapped_while_the_course_is_mapped_is_the_one_kept(school: Database) -> None:
    db = school
    # p1's link read (the first learner's), then p1 mapped by hand to stu-9
    racing = AfterFirstRead(db, "links", "person", _map_student(db, "p1", "stu-9"))
    _map_course(db)(racing)
    racing.finish()
    assert _student_in_c1(db, "p1") == ("stu-9", None)
    _waited(db, racing)


def test_a_course_mapped_while_a_student_is_mapped_takes_the_new_student(
    school: Database,
) -> None:
    db = school
    # p1's links read, then the course's learners mapped from what is stored
    racing = AfterFirstRead(db, "links", "person_links", _map_course(db))
    _map_student(db, "p1", "stu-9")(racing)
    racing.finish()
    assert _student_in_c1(db, "p1") == ("stu-9", None)
    _waited(db, racing)


def test_a_student_mapped_while_their_section_is_unmapped_is_the_one_kept(
    school: Database,
) -> None:
    db = school
    _section_b_mapped(db)
    assert _student_in_c1(db, "p3") == ("stu-3", "cls-b")
    # the course's learners' links read, then p3 (of sec-b) mapped by hand to stu-9
    racing = AfterFirstRead(db, "links", "people", _map_student(db, "p3", "stu-9"))
    sis.unmap_section(
        racing, tenant_id="t1", destination_id="sis", course_id="c1", section_id="sec-b",
        clock=ManualClock(NOW),
    )  # fmt: skip
    racing.finish()
    assert _student_in_c1(db, "p3") == ("stu-9", None)
    _waited(db, racing)


def test_a_sis_id_changed_while_the_course_is_mapped_is_the_one_followed(
    school: Database,
) -> None:
    db = school
    p2 = Person("t1", "p2", "P2", sis_id="stu-5")

    def imported() -> None:  # a roster import giving p2 (SIS id stu-2) the SIS id stu-5
        batch = IngestBatch(people=[p2], sent={("people", "p2"): frozenset({"id", "sis_id"})})
        ingest(db.uow, ManualClock(NOW), None, "t1", batch)

    # the learners' SIS ids read, and p1's link, then p2's SIS id changed by an import
    racing = AfterFirstRead(db, "links", "person", imported)
    _map_course(db)(racing)
    racing.finish()
    assert _student_in_c1(db, "p2") == ("stu-5", None)
    _waited(db, racing)


def test_a_section_unmapped_while_the_course_is_mapped_takes_its_learners_off_its_class(
    school: Database,
) -> None:
    db = school
    _section_b_mapped(db)

    def unmapped() -> object:
        return sis.unmap_section(
            db.uow, tenant_id="t1", destination_id="sis", course_id="c1", section_id="sec-b",
            clock=ManualClock(NOW),
        )  # fmt: skip

    # the course's link (its sections) read, then sec-b unmapped: read unlocked, p3 was
    # linked again to the class the section no longer has
    racing = AfterFirstRead(db, "links", "course", unmapped)
    _map_course(db)(racing)
    racing.finish()
    assert _student_in_c1(db, "p3") == ("stu-3", None)
    _waited(db, racing)
