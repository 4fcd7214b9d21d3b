"""An LTI 1.1 launch fills in a learner's blank name, email and SIS id, and only those: a
value an import (POST /ingest, PUT /people) stores while the launch is recorded stays. The
launch reads the person, decides what is blank, and writes later; on PostgreSQL (read
committed) the import commits in between, here right after the launch's read of the person
(its own, or ingest's), and the launch's write then fills only what is blank as it writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.model import (
    Activity,
    Course,
    CourseLink,
    Destination,
    DestinationKind,
    Enrollment,
    Person,
)
from gradesync.lti.lti11_launch import read_launch
from gradesync.services.clock import SystemClock
from gradesync.services.ingest import IngestBatch, ingest
from gradesync.services.lti.lti11 import find_consumer, record_launch
from tests.lti11.conftest import register_consumer
from tests.support.races import AfterFirstRead

T = "t1"
KEY = "k-blanks"


def _import(db: Database, person: Person, *fields: str) -> None:
    """An import of `person` sending `fields` of it (as PUT /people sends what it is given)."""
    batch = IngestBatch(people=[person], sent={("people", person.id): frozenset({"id", *fields})})
    ingest(db.uow, SystemClock(), None, T, batch)


def _launch(racing: AfterFirstRead, now: datetime, **said: str) -> None:
    """u1's launch in course c-lms, saying of them `said` (form fields), recorded and
    committed in `racing`'s unit of work."""
    params = {
        "lti_message_type": "basic-lti-launch-request",
        "lti_version": "LTI-1p0",
        "user_id": "u1",
        "roles": "Learner",
        "context_id": "c-lms",
        "resource_link_id": "rl-1",
        "lis_result_sourcedid": "sid-u1",
        "lis_outcome_service_url": "https://lms.example.edu/outcomes",
        **said,
    }
    with racing() as uow:
        consumer = find_consumer(uow, KEY)
        assert consumer is not None
        record_launch(uow, consumer, read_launch(params, consumer), now)
        uow.commit()


def _finish(racing: AfterFirstRead) -> None:
    """The import ended; on PostgreSQL it committed between the launch's read and its write
    (waiting for no lock of the launch's), the interleaving these tests are about."""
    racing.finish()
    assert racing.second is not None and not racing.second.blocked


def _sis_course(db: Database) -> datetime:
    """The LTI 1.1 consumer, and course c-sis (activity a-sis) passing grades to a SIS;
    when it was made."""
    register_consumer(db, KEY, hosts=("lms.example.edu",))
    now = datetime.now(UTC)
    with db.uow() as uow:
        uow.destinations.upsert(Destination(T, "sis", DestinationKind.ONEROSTER_CSV, "SIS"), now)
        uow.courses.upsert(Course(T, "c-sis", "Biology"))
        uow.activities.upsert(Activity(T, "a-sis", "c-sis", "Quiz", 10))
        uow.links.save_course(CourseLink(T, "sis", "c-sis", "cls-1"))
        uow.commit()
    return now


def _person(db: Database) -> Person | None:
    with db.uow() as uow:
        return uow.people.get(T, "u1")


@pytest.mark.parametrize(
    ("read", "nth"),
    [
        ("get", 1),  # the launch's own read, deciding what it fills
        ("get_many", 2),  # ingest's read, merging (validation's is the first)
    ],
    ids=["launch_read", "ingest_read"],
)
def test_a_sis_id_an_import_sets_while_a_launch_fills_it_stays_and_marks_nothing_more(
    db: Database, read: str, nth: int
) -> None:
    """u1, a learner of c-sis (a course passing grades to a SIS), has no SIS id when the
    launch reads them; an import gives them S-IMPORT. The launch's S-LMS overwrote it, and
    its keys in c-sis were marked again, as for a SIS id the launch gave."""
    now = _sis_course(db)
    with db.uow() as uow:
        uow.people.upsert(Person(T, "u1", "Ada"))
        uow.enrollments.upsert(Enrollment(T, "c-sis", "u1"))
        uow.commit()
    racing = AfterFirstRead(
        db,
        "people",
        read,
        lambda: _import(db, Person(T, "u1", sis_id="S-IMPORT"), "sis_id"),
        nth=nth,
    )
    launched = now + timedelta(hours=1)  # tells the launch's marks from the import's
    _launch(
        racing,
        launched,
        lis_person_name_full="Ada Lovelace",
        lis_person_contact_email_primary="ada@lms.example.edu",
        lis_person_sourcedid="S-LMS",
    )
    _finish(racing)
    # the name was not blank: never filled; the email was, and is
    assert _person(db) == Person(T, "u1", "Ada", "ada@lms.example.edu", "S-IMPORT")
    if not db.is_sqlite:  # on SQLite the import runs after the launch, and gives its own
        with db.uow() as uow:
            marks = {d[:4]: d[4] for d in uow.dirty.peek(100)}
        assert marks[(T, "c-sis", "a-sis", "u1")] < launched  # the import's mark only


def test_a_person_an_import_makes_while_a_launch_makes_them_keeps_the_import_s_fields(
    db: Database,
) -> None:
    """u1 is not stored when the launch reads them; an import makes them, with a name and an
    email, before the launch writes them: those stay, and the SIS id the import left blank
    is the launch's."""
    register_consumer(db, KEY, hosts=("lms.example.edu",))
    made = Person(T, "u1", "Ada Lovelace", "ada@school.example.edu")
    racing = AfterFirstRead(
        db, "people", "get_many", lambda: _import(db, made, "name", "email"), nth=2
    )
    _launch(
        racing,
        datetime.now(UTC),
        lis_person_name_full="Ada L.",
        lis_person_contact_email_primary="ada@lms.example.edu",
        lis_person_sourcedid="S-LMS",
    )
    _finish(racing)
    assert _person(db) == Person(T, "u1", "Ada Lovelace", "ada@school.example.edu", "S-LMS")
    with db.uow() as uow:
        assert uow.enrollments.get(T, "c-lms", "u1") is not None


def test_a_sis_id_an_import_gives_a_person_it_makes_meanwhile_is_the_one_followed(
    db: Database,
) -> None:
    """u1 is not stored when the launch reads them; an import makes them with S-IMPORT and
    enrolls them in c-sis (passing grades to a SIS) before the launch writes them. The
    launch's S-LMS fills nothing, so it is no SIS id given: the keys are the import's to
    mark, not the launch's as for a SIS id it gave."""
    now = _sis_course(db)
    made = IngestBatch(
        people=[Person(T, "u1", "Ada", sis_id="S-IMPORT")],
        enrollments=[Enrollment(T, "c-sis", "u1")],
        sent={("people", "u1"): frozenset({"id", "name", "sis_id"})},
    )
    racing = AfterFirstRead(
        db, "people", "get_many", lambda: ingest(db.uow, SystemClock(), None, T, made), nth=2
    )
    launched = now + timedelta(hours=1)  # tells the launch's marks from the import's
    _launch(racing, launched, lis_person_sourcedid="S-LMS")
    _finish(racing)
    assert _person(db) == Person(T, "u1", "Ada", None, "S-IMPORT")
    if not db.is_sqlite:  # on SQLite the import runs after the launch, and gives its own
        with db.uow() as uow:
            marks = {d[:4]: d[4] for d in uow.dirty.peek(100)}
        assert marks[(T, "c-sis", "a-sis", "u1")] < launched  # the import's mark only
