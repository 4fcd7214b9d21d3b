"""LTI 1.1 -> LTI 1.3: the lti1p1 claim is verified, then a course's delivered grades carry
over so that the engine, recomputing for the new destination, finds nothing to resend."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.destinations.lti11 import build
from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.errors import InvalidInput
from gradesync.domain.ledger import Delivered, Rejected, after_delivery, reconcile
from gradesync.domain.model import (
    Activity,
    Attempt,
    Course,
    CourseLink,
    DeliveryState,
    Destination,
    DestinationKind,
    Enrollment,
    ItemLink,
    LedgerKey,
    Person,
    PersonLink,
    Role,
    ScoreForm,
)
from gradesync.domain.policy import DesiredResult, PolicyInput, desired_result, resolve_settings
from gradesync.domain.reasons import Reason
from gradesync.lti.lti11_launch import read_launch
from gradesync.services.clock import SystemClock
from gradesync.services.compute import compute_activity, compute_dirty
from gradesync.services.destination import FailureClass, RemoteFailure, ResultTarget
from gradesync.services.ingest import IngestBatch, ingest
from gradesync.services.lti import lti11
from gradesync.services.lti.launch import Lti13Launch, record_launch
from gradesync.services.lti.migration import (
    LTI1P1_CLAIM,
    consumer_key_signature,
    migrate_course_from_lti11,
    verify_lti1p1_claim,
)
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory
from tests.lti11.conftest import SECRET, register_consumer
from tests.support.races import AfterFirstRead

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
KEY = "consumer-legacy"
AGS_CAPS = Capabilities(score_form=ScoreForm.POINTS, comments=True)  # what an AGS platform takes
# capabilities need no connection: the client is built without one
LTI11_CAPS = build(
    Destination("t1", "x", DestinationKind.LTI11_OUTCOMES, "x"),
    DestinationContext(http=cast(httpx.AsyncClient, None)),
).capabilities


def id_token(secret: str = SECRET, **override: Any) -> dict[str, Any]:
    """An LTI 1.3 id token's claims with the migration claim, signed the way the LTI 1.3
    migration spec says (computed here independently of the code under test)."""
    claims: dict[str, Any] = {
        "iss": "https://lms.example.edu",
        "aud": "client-13",
        "exp": 1741597200,
        "nonce": "n-0b7e",
        "sub": "sub-u1",
        "https://purl.imsglobal.org/spec/lti/claim/deployment_id": "dep-1",
    }
    claims.update(override)
    base = "&".join(
        [
            KEY,
            claims["https://purl.imsglobal.org/spec/lti/claim/deployment_id"],
            claims["iss"],
            claims["aud"],
            str(claims["exp"]),
            claims["nonce"],
        ]
    )
    sign = base64.b64encode(hmac.new(secret.encode(), base.encode(), hashlib.sha256).digest())
    claims[LTI1P1_CLAIM] = {
        "user_id": "u1",
        "oauth_consumer_key": KEY,
        "oauth_consumer_key_sign": sign.decode(),
    }
    return claims


def _compute(db: Database, dest: str, activity_id: str, person: str, caps: Capabilities) -> Any:
    """What policy wants at a destination for one key, assembled from stored facts."""
    with db.uow() as uow:
        tenant, course = uow.tenants.get("t1"), uow.courses.get("t1", "c1")
        activity = uow.activities.get("t1", activity_id)
        assert tenant and course and activity
        return desired_result(
            PolicyInput(
                policy=resolve_settings(tenant.policy, course.policy, activity.policy),
                course=course,
                activity=activity,
                enrollment=uow.enrollments.get("t1", "c1", person),
                attempts=uow.attempts.for_key("t1", activity_id, person),
                due_override=None,
                capabilities=caps,
                now=NOW,
            )
        )


def _attempt(event: str, activity: str, person: str, score: float, **kw: Any) -> Attempt:
    return Attempt("t1", event, activity, person, score, 10.0, NOW - timedelta(days=2), **kw)


def _deliver_lti11(db: Database, activity: str, person: str, *, rejected: bool = False) -> None:
    """Run the ledger transitions the engine runs: reconcile, send, record the answer."""
    outcome = _compute(db, "lms11", activity, person, LTI11_CAPS)
    assert isinstance(outcome, DesiredResult)
    key = LedgerKey("t1", "lms11", activity, person)
    with db.uow() as uow:
        row = reconcile(uow.ledger.get(key), key, outcome, NOW)
        assert row is not None and row.state is DeliveryState.PENDING
        answer = (
            Rejected(Reason("unknown_user", "not a student"))
            if rejected
            else Delivered(remote_status=200)
        )
        uow.ledger.save(after_delivery(row, row.desired_hash or "", answer, NOW), "c1")
        uow.commit()


@pytest.fixture
def course(db: Database) -> Database:
    """A course synced over LTI 1.1 for a while, and its new LTI 1.3 platform."""
    register_consumer(db, KEY, destination_id="lms11")
    with db.uow() as uow:
        uow.courses.upsert(Course("t1", "c1", "Biology"))
        for a in ("act-1", "act-2"):
            uow.activities.upsert(Activity("t1", a, "c1", f"Quiz {a}", 10.0))
        for p in ("u1", "u2", "u3"):
            uow.people.upsert(Person("t1", p, p.upper()))
            uow.enrollments.upsert(Enrollment("t1", "c1", p))
        for attempt in (
            _attempt("e1", "act-1", "u1", 7.0, comment="Well done"),
            _attempt("e2", "act-1", "u2", 5.0),
            _attempt("e3", "act-1", "u3", 9.0),
            _attempt("e4", "act-2", "u1", 10.0 / 3),
        ):
            uow.attempts.add(attempt, NOW)
        uow.links.save_course(
            CourseLink("t1", "lms11", "c1", "c1", {"outcome_service_url": "http://127.0.0.1/o"})
        )
        for a in ("act-1", "act-2"):  # the LTI 1.1 links the activities were launched from
            uow.links.save_item(ItemLink("t1", "lms11", a, f"rl-{a}"))
        uow.destinations.upsert(
            Destination("t1", "lms13", DestinationKind.LTI13_AGS, "LMS (LTI 1.3)", config={"x": 1}),
            NOW,
        )
        uow.commit()
    _deliver_lti11(db, "act-1", "u1")
    _deliver_lti11(db, "act-1", "u2")
    _deliver_lti11(db, "act-1", "u3", rejected=True)
    _deliver_lti11(db, "act-2", "u1")
    # u2 improved after the last LTI 1.1 send: the LMS holds 0.5, policy now wants 8/10
    with db.uow() as uow:
        uow.attempts.add(_attempt("e5", "act-1", "u2", 8.0), NOW)
        uow.commit()
    return db


def _migrate(db: Database, token: dict[str, Any], **kw: Any) -> Any:
    with db.uow() as uow:
        result = migrate_course_from_lti11(
            uow,
            tenant_id="t1",
            lti13_destination_id="lms13",
            course_id="c1",
            lti1p1_claim=token[LTI1P1_CLAIM],
            now=NOW,
            id_token=token,
            capabilities=kw.pop("capabilities", AGS_CAPS),
        )
        uow.commit()
    return result


def test_the_spec_example_signature() -> None:
    # The worked example of the LTI 1.3 migration claim (1EdTech, LTI core 1.3 appendix).
    assert (
        consumer_key_signature(
            "179248902",
            "my-lti11-secret",
            deployment_id="689302",
            issuer="https://lmsvendor.com",
            client_id="PM48OJSfGDTAzAo",
            exp=1551290856,
            nonce="172we8671fd8z",
        )
        == "lWd54kFo5qU7xshAna6v8BwoBm6tmUjc6GTax6+12ps="
    )


def test_claim_verification_binds_the_id_token() -> None:
    token = id_token()
    claim = token[LTI1P1_CLAIM]
    assert verify_lti1p1_claim(claim, token, SECRET)
    assert not verify_lti1p1_claim(claim, token, "another-secret-entirely")
    assert not verify_lti1p1_claim(claim, {**token, "nonce": "other"}, SECRET)
    assert not verify_lti1p1_claim(claim, {**token, "aud": "client-99"}, SECRET)
    # aud as a list: the client id is azp
    listed = id_token(aud="client-13")
    assert verify_lti1p1_claim(
        listed[LTI1P1_CLAIM], {**listed, "aud": ["client-13", "x"], "azp": "client-13"}, SECRET
    )
    with pytest.raises(InvalidInput) as err:
        verify_lti1p1_claim({"oauth_consumer_key": KEY}, token, SECRET)
    assert "oauth_consumer_key_sign" in str(err.value)


def test_unchanged_grades_carry_over_and_are_not_resent(course: Database) -> None:
    result = _migrate(course, id_token())

    assert result.migrated and result.lti11_destination_id == "lms11"
    assert result.lti11_user_id == "u1"
    # u1/act-1 (0.7, now with a comment the new LMS can take) and u1/act-2 (1/3) carry over;
    # u2 changed since, u3 was rejected: those go through the new destination
    assert (result.carried_over, result.to_send, result.already_present) == (2, 2, 0)

    for activity, person in (("act-1", "u1"), ("act-2", "u1")):
        key = LedgerKey("t1", "lms13", activity, person)
        with course.uow() as uow:
            row = uow.ledger.get(key)
        assert row is not None and row.state is DeliveryState.DELIVERED
        # the engine recomputing this key for the LTI 1.3 destination: nothing to send
        wanted = _compute(course, "lms13", activity, person, AGS_CAPS)
        assert reconcile(row, key, wanted, NOW + timedelta(minutes=5)) is None
    with course.uow() as uow:
        for activity, person in (("act-1", "u2"), ("act-1", "u3")):
            assert uow.ledger.get(LedgerKey("t1", "lms13", activity, person)) is None
        link = uow.links.course("t1", "lms11", "c1")
        assert link is not None and link.data["migrated_to"] == "lms13"
        # the LTI 1.1 history stays
        old = uow.ledger.get(LedgerKey("t1", "lms11", "act-1", "u1"))
        assert old is not None and old.state is DeliveryState.DELIVERED
        # each LTI 1.3 column is looked up by its LTI 1.1 link: the LMS's column for it
        columns = uow.links.items("t1", "lms13", ["act-1", "act-2"])
    assert {a: i.data.get("resourceLinkId") for a, i in columns.items()} == {
        "act-1": "rl-act-1",
        "act-2": "rl-act-2",
    }


def test_a_grade_whose_lti11_link_is_unknown_is_not_carried_over(course: Database) -> None:
    """Without its LTI 1.1 link, where the LMS shows the grade is unknown: it is sent again
    rather than marked as held by a column that may not hold it."""
    with course.uow() as uow:
        uow.links.delete_item("t1", "lms11", "act-2")
        uow.commit()

    result = _migrate(course, id_token())

    assert (result.carried_over, result.to_send) == (1, 3)
    with course.uow() as uow:
        assert uow.ledger.get(LedgerKey("t1", "lms13", "act-2", "u1")) is None


def test_a_second_launch_changes_nothing(course: Database) -> None:
    first = _migrate(course, id_token())
    with course.uow() as uow:
        rows = uow.ledger.get_many("t1", "lms13", "c1")

    again = _migrate(course, id_token(nonce="n-second"))

    assert first.migrated and again.migrated and "already moved" in (again.reason or "")
    with course.uow() as uow:
        assert uow.ledger.get_many("t1", "lms13", "c1") == rows


def test_a_bad_signature_moves_nothing(course: Database) -> None:
    forged = id_token(secret="guessed-secret-000000")

    result = _migrate(course, forged)

    assert not result.migrated and "does not verify" in (result.reason or "")
    with course.uow() as uow:
        assert uow.ledger.get_many("t1", "lms13", "c1") == {}
        link = uow.links.course("t1", "lms11", "c1")
        assert link is not None and "migrated_to" not in link.data


def test_unknown_consumer_or_course_moves_nothing(course: Database) -> None:
    token = id_token()
    stranger = {**token, LTI1P1_CLAIM: {**token[LTI1P1_CLAIM], "oauth_consumer_key": "nope"}}
    assert "no LTI 1.1 consumer" in (_migrate(course, stranger).reason or "")
    with course.uow() as uow:
        result = migrate_course_from_lti11(
            uow,
            tenant_id="t1",
            lti13_destination_id="lms13",
            course_id="never-launched",
            lti1p1_claim=token[LTI1P1_CLAIM],
            now=NOW,
            id_token=token,
        )
    assert not result.migrated and "never launched" in (result.reason or "")


def test_target_must_be_an_lti13_platform(course: Database) -> None:
    token = id_token()
    with course.uow() as uow, pytest.raises(InvalidInput) as err:
        migrate_course_from_lti11(
            uow,
            tenant_id="t1",
            lti13_destination_id="lms11",
            course_id="c1",
            lti1p1_claim=token[LTI1P1_CLAIM],
            now=NOW,
            id_token=token,
        )
    assert "lti13_destination_id" in str(err.value)


async def test_lti11_stops_sending_for_a_migrated_course(course: Database) -> None:
    _migrate(course, id_token())
    with course.uow() as uow:
        dest = uow.destinations.get("t1", "lms11")
        link = uow.links.course("t1", "lms11", "c1")
    assert dest is not None and link is not None
    async with httpx.AsyncClient() as http:
        client = build(dest, DestinationContext(http=http))
        target = ResultTarget(
            link,
            ItemLink("t1", "lms11", "act-1", "rl-1"),
            PersonLink("t1", "lms11", "u1", "u1", "c1", {"sourcedids": {"act-1": "s"}}),
        )
        with pytest.raises(RemoteFailure) as err:
            await client.put_result(target, replace_score(0.5), NOW)
    assert (err.value.failure, err.value.code) == (FailureClass.REJECTED, "course_migrated")


def replace_score(score: float) -> DesiredResult:
    return DesiredResult(
        score, 1.0, "FullyGraded", "Completed", None, False, False, False, NOW, "", None
    )


@pytest.mark.parametrize(
    "caps", [None, replace(AGS_CAPS, comments=False), Capabilities(ScoreForm.PERCENT)]
)
def test_carry_over_in_any_score_form(course: Database, caps: Capabilities | None) -> None:
    result = _migrate(course, id_token(), capabilities=caps)
    assert result.migrated and (result.carried_over, result.to_send) == (2, 2)
    key = LedgerKey("t1", "lms13", "act-2", "u1")
    with course.uow() as uow:
        row = uow.ledger.get(key)
    wanted = _compute(course, "lms13", "act-2", "u1", caps or Capabilities())
    assert row is not None and reconcile(row, key, wanted, NOW) is None


def _upgraded_launch(db: Database, platform_id: str, user: str, nonce: str) -> Lti13Launch:
    """The LMS launching an old LTI 1.1 link (no custom parameters) over LTI 1.3 through
    `platform_id`, with the signed migration claim."""
    with db.uow() as uow:
        platform = uow.destinations.get("t1", platform_id)
    assert platform is not None
    claims = id_token(nonce=nonce, sub=f"sub-{user}")
    claims[LTI1P1_CLAIM]["user_id"] = user  # not part of the signature
    return Lti13Launch(
        platform=platform,
        claims=claims,
        nonce=nonce,
        nonce_expires=NOW + timedelta(hours=1),
        deep_linking=False,
        deployment_id="dep-1",
        sub=f"sub-{user}",
        person_id=f"sub-{user}",
        roles=[],
        role=Role.LEARNER,
        name=None,
        email=None,
        sis_id=None,
        context={"id": "c1", "title": "Biology"},
        custom_course_id=None,
        custom_activity_id=None,
        resource_link_id="rl-act-1",
        endpoint=None,
        ignored_endpoint=None,
        tool_platform=None,
    )


@pytest.mark.parametrize("other_platform", ["lms13", "lms13-b"])
def test_two_launches_at_once_move_the_course_once(course: Database, other_platform: str) -> None:
    """Learners opening the upgraded links at once: the second launch moves the course while
    the first is moving it, right after the first read the LTI 1.1 course link unmoved. It
    waits for the first and finds the course moved. Through the same platform the launch's
    hold of the LTI 1.3 course link already made it wait; through a second registration of
    the LMS (its own LTI 1.3 link) it read the link unmoved too on PostgreSQL, carried the
    grades over again, and the first's commit then named the first platform while the
    second's answer said the course had moved to it."""
    with course.uow() as uow:  # a second LTI 1.3 registration of the same LMS
        uow.destinations.upsert(
            Destination("t1", "lms13-b", DestinationKind.LTI13_AGS, "LMS (LTI 1.3, key 2)"),
            NOW,
        )
        uow.commit()
    second = _upgraded_launch(course, other_platform, "u2", "n-second")

    def capabilities(profile: str) -> Capabilities:
        return AGS_CAPS

    racing = AfterFirstRead(
        course,
        "links",
        "items",
        lambda: record_launch(course.uow, None, second, NOW, capabilities_of=capabilities),
        nth=2,  # the LTI 1.1 links, read right after the course link (the first: the link's)
    )
    first = record_launch(
        racing, None, _upgraded_launch(course, "lms13", "u1", "n-first"), NOW,
        capabilities_of=capabilities,
    )  # fmt: skip
    waited = racing.second is not None and racing.second.blocked
    then = racing.finish()

    assert first.migration is not None and then.migration is not None
    assert (first.migration["migrated"], first.migration["carried_over"]) == (True, 2)
    assert then.migration["reason"] == "already moved to 'lms13'"
    assert then.migration["carried_over"] == 0
    assert then.migration["migrated"] is (other_platform == "lms13")
    with course.uow() as uow:
        link = uow.links.course("t1", "lms11", "c1")
        assert link is not None and link.data["migrated_to"] == "lms13"
        carried = uow.ledger.get_many("t1", "lms13", "c1")
        assert sorted(carried) == [("act-1", "u1"), ("act-2", "u1")]
        assert all(r.state is DeliveryState.DELIVERED for r in carried.values())
        assert uow.ledger.get_many("t1", "lms13-b", "c1") == {}
    assert waited or course.is_sqlite  # SQLite: the second's transaction began after


def test_an_lti11_launch_while_the_course_moves_is_kept(course: Database) -> None:
    """An old link still launched over LTI 1.1 while an upgraded launch moves the course,
    committed after the move read the LTI 1.1 course link: on PostgreSQL the move wrote the
    link back as it read it, losing the LMS's new outcome service URL and course title. It
    now waits for the move, and keeps both that and the move's mark."""

    def lti11_launch() -> None:
        with course.uow() as uow:
            consumer = lti11.find_consumer(uow, KEY)
            assert consumer is not None
            params = {
                "lti_message_type": "basic-lti-launch-request",
                "lti_version": "LTI-1p0",
                "user_id": "u3",
                "roles": "Learner",
                "context_id": "c1",
                "context_title": "Biology II",
                "resource_link_id": "rl-act-2",
                "custom_activity_id": "act-2",
                "lis_result_sourcedid": "sid-u3",
                "lis_outcome_service_url": "http://127.0.0.1/outcomes-2",
            }
            lti11.record_launch(uow, consumer, read_launch(params, consumer), NOW)
            uow.commit()

    racing = AfterFirstRead(course, "links", "items", lti11_launch, nth=2)  # as above
    moved = record_launch(
        racing, None, _upgraded_launch(course, "lms13", "u1", "n-first"), NOW,
        capabilities_of=lambda profile: AGS_CAPS,
    )  # fmt: skip
    racing.finish()

    assert moved.migration is not None and moved.migration["migrated"] is True
    with course.uow() as uow:
        link = uow.links.course("t1", "lms11", "c1")
    assert link is not None and link.data["migrated_to"] == "lms13"
    assert link.data["outcome_service_url"] == "http://127.0.0.1/outcomes-2"
    assert link.data["context_title"] == "Biology II"


@pytest.mark.parametrize("computed_before", [False, True])
async def test_a_grade_computed_while_the_course_moves_is_sent(
    course: Database, computed_before: bool
) -> None:
    """The course already synced to the LTI 1.3 platform (a new link there was launched
    first), and u1 improves on act-1 (0.7 in the LMS, over LTI 1.1) while u3's upgraded
    launch moves the course: the new grade is computed and committed right after the move
    read the facts the old one came from. On PostgreSQL the move then wrote its carried-over
    row over the new one, as delivered with the old grade, and 9/10 never went. Now a row it
    finds is locked before the facts are read (the computation waits for the move, then
    recomputes over the carried row), and one it does not find is only ever inserted (a row
    computed meanwhile stays as computed)."""
    with course.uow() as uow:
        uow.links.save_course(CourseLink("t1", "lms13", "c1", "ctx-c1", {"context": {"id": "c1"}}))
        uow.links.save_person(PersonLink("t1", "lms13", "u1", "sub-u1", "c1"))
        uow.commit()
    factory = DoubleFactory()
    factory.remote("lms13").capabilities = AGS_CAPS
    factory.remote("lms11").capabilities = LTI11_CAPS
    engine = Engine(course.uow, SystemClock(), factory)
    key = LedgerKey("t1", "lms13", "act-1", "u1")
    if computed_before:  # computed there too and not sent yet: 0.7, pending
        compute_activity(
            course.uow,
            SystemClock(),
            engine.clients.capabilities,
            tenant_id="t1",
            destination_id="lms13",
            course_id="c1",
            activity_id="act-1",
            person_ids=["u1"],
        )
        with course.uow() as uow:
            row = uow.ledger.get(key)
        assert row is not None and row.state is DeliveryState.PENDING

    def improve() -> None:
        better = _attempt("e6", "act-1", "u1", 9.0)
        ingest(course.uow, SystemClock(), None, "t1", IngestBatch(attempts=[better]))
        compute_dirty(course.uow, SystemClock(), engine.clients.capabilities)

    racing = AfterFirstRead(course, "attempts", "for_activities", improve)
    moved = record_launch(
        racing, None, _upgraded_launch(course, "lms13", "u3", "n-move"), NOW,
        capabilities_of=lambda profile: AGS_CAPS,
    )  # fmt: skip
    assert racing.second is not None
    waited = racing.second.blocked
    racing.finish()

    assert moved.migration is not None and moved.migration["migrated"] is True
    with course.uow() as uow:
        row = uow.ledger.get(key)
        kept = uow.ledger.get(LedgerKey("t1", "lms13", "act-2", "u1"))
    assert row is not None and row.state is DeliveryState.PENDING
    assert row.desired is not None and row.desired["score_given"] == 9.0
    assert kept is not None and kept.state is DeliveryState.DELIVERED  # carried over still
    # computed in between, u1's act-1 row is the engine's to send, not carried over
    between = not computed_before and not course.is_sqlite
    counts = (moved.migration["carried_over"], moved.migration["to_send"])
    assert counts == ((1, 3) if between else (2, 2))
    # a row found is held by the move: the computation waits; none found, nothing to wait for
    assert waited is (computed_before and not course.is_sqlite)

    try:
        await engine.process_dirty()
        await engine.deliver_due()
    finally:
        await engine.aclose()
    sent = {k: s.score_given for k, s in factory.remote("lms13").results.items()}
    assert [score for (_, who), score in sent.items() if who == "sub-u1"] == [9.0]
