"""The roster use case against the real database with a membership reader that answers as
an LMS would: what a full read that no longer lists a learner does, a differences link that
expired, a member two learners match, and a platform that refuses."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Destination, EnrollmentStatus, Person, RosterMatch
from gradesync.services.destination import FailureClass, RemoteFailure
from gradesync.services.roster import Member, Membership, RosterResult, refresh_roster
from gradesync.testing import ManualClock, seeding, unique
from tests.support.statements import statements

URL = "https://lms.example/api/lti/courses/ctx/memberships"


class Reader:
    """Answers each read from a script: a Membership, or a RemoteFailure to raise."""

    def __init__(self, *answers: Membership | RemoteFailure) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, bool]] = []

    async def read_members(self, url: str, *, differences: bool = False) -> Membership:
        self.asked.append((url, differences))
        answer = self.answers.pop(0)
        if isinstance(answer, RemoteFailure):
            raise answer
        return answer

    async def aclose(self) -> None:
        pass


def _world(db: Database, *learners: Person) -> tuple[str, str]:
    tenant = unique("t")
    seeding.add_tenant(db.uow, tenant)
    seeding.add_course(db.uow, tenant, "c1", ("a1", "Lab", 10.0))
    with db.uow() as u:
        for p in learners:
            u.people.upsert(replace(p, tenant_id=tenant))
        u.commit()
    seeding.add_destination(db.uow, tenant, "lms", links={"c1": "https://lms.example/items"})
    with db.uow() as u:
        link = u.links.course(tenant, "lms", "c1")
        assert link is not None
        u.links.save_course(replace(link, data={"nrps": {"context_memberships_url": URL}}))
        u.commit()
    return tenant, "lms"


async def _read(db: Database, tenant: str, reader: Reader, clock: ManualClock) -> RosterResult:
    def reader_for(_: Destination) -> Reader:
        return reader

    return await refresh_roster(db.uow, clock, None, reader_for, tenant, "lms", "c1")


async def test_a_learner_a_full_read_no_longer_lists_has_left(sqlite_db: Database) -> None:
    db = sqlite_db
    tenant, _ = _world(db, Person("", "cw-1", "Ada", sis_id="S1"))
    clock = ManualClock(datetime(2025, 3, 1, 9, tzinfo=UTC))
    listed = Membership([Member("lms-1", roles=("Learner",), sis_id="S1")], f"{URL}?since=1")
    gone = Membership([], f"{URL}?since=2")
    expired = RemoteFailure(FailureClass.REJECTED, "gone", "differences link expired")
    reader = Reader(listed, expired, gone)
    first = await _read(db, tenant, reader, clock)
    assert first.matched == 1
    with db.uow() as u:
        enrollment = u.enrollments.get(tenant, "c1", "cw-1")
        link = u.links.person(tenant, "lms", "cw-1")
    assert enrollment is not None and enrollment.status is EnrollmentStatus.ACTIVE
    assert link is not None and link.remote_id == "lms-1"
    assert link.data["matched_by"] == RosterMatch.SIS_ID.value

    clock.advance(86400)
    second = await _read(db, tenant, reader, clock)
    # the differences link had expired: the whole roster was read, and it lists nobody
    assert reader.asked == [(URL, False), (f"{URL}?since=1", True), (URL, False)]
    assert second.left == 1 and second.notes
    with db.uow() as u:
        left = u.enrollments.get(tenant, "c1", "cw-1")
    assert left is not None and left.status is EnrollmentStatus.DROPPED
    assert left.status_source == "nrps" and left.status_at == clock.now()


async def test_a_member_two_learners_match_is_left_alone(sqlite_db: Database) -> None:
    db = sqlite_db
    tenant, _ = _world(
        db, Person("", "cw-1", "Ada", sis_id="S1"), Person("", "cw-2", "Ada too", sis_id="S1")
    )
    reader = Reader(Membership([Member("lms-1", roles=("Learner",), sis_id="S1")], None))
    result = await _read(db, tenant, reader, ManualClock())
    assert (result.matched, result.unmatched) == (0, 1)
    with db.uow() as u:
        assert u.links.person(tenant, "lms", "cw-1") is None


async def test_a_refusing_platform_changes_nothing_and_says_why(sqlite_db: Database) -> None:
    db = sqlite_db
    tenant, _ = _world(db, Person("", "cw-1", "Ada", sis_id="S1"))
    refused = RemoteFailure(FailureClass.MISCONFIGURED, "no_scope", "scope not granted")
    result = await _read(db, tenant, Reader(refused), ManualClock())
    assert result.failure == "no_scope: scope not granted"
    with db.uow() as u:
        assert u.links.person(tenant, "lms", "cw-1") is None
        assert u.enrollments.get(tenant, "c1", "cw-1") is None


async def test_a_roster_read_again_costs_the_statements_of_one_member(sqlite_db: Database) -> None:
    """A nightly read of a course lists every learner again: their enrollments are read and
    compared in one statement, not one per member."""
    db = sqlite_db
    learners = [Person("", f"cw-{i}", f"Learner {i}", sis_id=f"S{i}") for i in range(200)]
    tenant, _ = _world(db, *learners)
    clock = ManualClock(datetime(2025, 3, 1, 9, tzinfo=UTC))
    members = [Member(f"lms-{i}", roles=("Learner",), sis_id=f"S{i}") for i in range(200)]
    reader = Reader(Membership(members, None), Membership(members, None))
    assert (await _read(db, tenant, reader, clock)).matched == 200
    first_seen = clock.now()
    clock.advance(86400)
    with statements(db) as seen:
        again = await _read(db, tenant, reader, clock)
    assert again.members == 200 and again.left == 0
    assert len(seen) <= 16, "\n".join(s.split("\n")[0][:90] for s in seen)
    with db.uow() as u:
        enrollment = u.enrollments.get(tenant, "c1", "cw-199")
    # listed again, still active: the time its status was set stays the first read's
    assert enrollment is not None and enrollment.status_at == first_seen
