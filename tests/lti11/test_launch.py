"""LTI 1.1 launches: the sandbox LMS signs the form, gradesync's app verifies and records it,
over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from oauthlib.oauth1 import SIGNATURE_TYPE_BODY, Client
from sqlalchemy import func, select, text

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.database import Database
from gradesync.domain.model import (
    Activity,
    Course,
    DeliveryState,
    EnrollmentStatus,
    LedgerKey,
    LedgerRow,
    Role,
)
from gradesync.lti.lti11_launch import LAUNCH_PATH, read_launch, role_from_lti11
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services import auth
from gradesync.services.clock import SystemClock
from gradesync.services.ingest import IngestBatch, ingest
from gradesync.services.lti.lti11 import find_consumer, record_launch
from gradesync.testing import wait_for
from tests.lti11.conftest import (
    SECRET,
    Gradesync,
    lms_course,
    post_launch,
    register_consumer,
    signed_launch,
)
from tests.support.logs import configured
from tests.support.races import AfterFirstRead


def _counts(g: Gradesync) -> dict[str, int]:
    with g.db.engine.connect() as conn:
        return {
            name: int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)
            for name, table in {
                "people": t.people,
                "courses": t.courses,
                "enrollments": t.enrollments,
                "course_links": t.course_links,
                "item_links": t.item_links,
                "person_links": t.person_links,
                "launches": t.launches,
            }.items()
        }


def _sign(params: dict[str, str], url: str, key: str, secret: str, **oauth: Any) -> dict[str, str]:
    """Sign a launch form ourselves (for parameters the sandbox LMS does not send)."""
    client = Client(key, client_secret=secret, signature_type=SIGNATURE_TYPE_BODY, **oauth)
    _, _, body = client.sign(
        url,
        http_method="POST",
        body={k: v for k, v in params.items() if not k.startswith("oauth_")},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    from urllib.parse import parse_qsl

    return dict(parse_qsl(body, keep_blank_values=True))


def test_learner_launch_records_facts_and_links(lms: RunningSandbox, gradesync: Gradesync) -> None:
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    with gradesync.db.uow() as uow:  # the courseware's activity the link names
        uow.courses.upsert(Course("t1", c.course, f"Biology {c.course}"))
        uow.activities.upsert(Activity("t1", "rl-quiz1", c.course, "Quiz 1", 10.0))
        uow.commit()
    learner = c.learners[0]
    form = signed_launch(lms, c, learner, "rl-quiz1", gradesync.launch_url)

    response = post_launch(form)

    assert response.status_code == 200, response.text
    assert "will be sent to the course gradebook" in response.text
    sourcedid = form["params"]["lis_result_sourcedid"]
    outcome_url = form["params"]["lis_outcome_service_url"]
    with gradesync.db.uow() as uow:
        person = uow.people.get("t1", learner)
        assert person is not None and person.name == learner.title()
        assert person.email == f"{learner}@example.edu"
        course = uow.courses.get("t1", c.course)
        assert course is not None and course.title == f"Biology {c.course}"
        enrollment = uow.enrollments.get("t1", c.course, learner)
        assert enrollment is not None
        assert (enrollment.role, enrollment.status) == (Role.LEARNER, EnrollmentStatus.ACTIVE)
        course_link = uow.links.course("t1", "lms11", c.course)
        assert course_link is not None and course_link.remote_id == c.course
        assert course_link.data["outcome_service_url"] == outcome_url
        item = uow.links.item("t1", "lms11", "rl-quiz1")
        assert item is not None and item.remote_id == "rl-quiz1"
        assert item.data["sourcedids"] == {learner: sourcedid}
        plink = uow.links.person("t1", "lms11", learner, c.course)
        assert plink is not None and plink.course_id == c.course
        assert plink.data["sourcedids"] == {"rl-quiz1": sourcedid}
        assert plink.data["outcome_urls"] == {"rl-quiz1": outcome_url}


def test_instructor_launch_and_second_learner_merge(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    c = lms_course(lms, learners=2)
    register_consumer(gradesync.db, c.consumer_key)
    forms = [signed_launch(lms, c, u, "rl-essay", gradesync.launch_url) for u in c.learners]
    teacher = signed_launch(lms, c, c.instructor, "rl-essay", gradesync.launch_url)

    assert [post_launch(f).status_code for f in [*forms, teacher]] == [200, 200, 200]

    with gradesync.db.uow() as uow:
        enrollment = uow.enrollments.get("t1", c.course, c.instructor)
        assert enrollment is not None and enrollment.role is Role.INSTRUCTOR
        assert uow.links.person("t1", "lms11", c.instructor, c.course) is None
        item = uow.links.item("t1", "lms11", "rl-essay")
        assert item is not None
        # both learners' result ids are kept: the second launch did not overwrite the first
        assert item.data["sourcedids"] == {
            u: f["params"]["lis_result_sourcedid"] for u, f in zip(c.learners, forms, strict=True)
        }


def test_custom_activity_id_maps_the_link_to_an_activity(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    form = signed_launch(lms, c, c.learners[0], "rl-77", gradesync.launch_url)
    params = dict(form["params"], custom_activity_id="chapter-3-quiz")
    params = _sign(params, gradesync.launch_url, c.consumer_key, SECRET)

    response = post_launch({"url": gradesync.launch_url, "params": params})

    assert response.status_code == 200, response.text
    with gradesync.db.uow() as uow:
        item = uow.links.item("t1", "lms11", "chapter-3-quiz")
        assert item is not None and item.remote_id == "rl-77"
        assert uow.links.item("t1", "lms11", "rl-77") is None
        plink = uow.links.person("t1", "lms11", c.learners[0], c.course)
        assert plink is not None and "chapter-3-quiz" in plink.data["sourcedids"]


def test_a_link_naming_an_unknown_activity_promises_no_grade(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    """Grades of the courseware's activities are refused `no_launch` while the only link
    names an activity gradesync does not have: the page said they would be sent. It says
    which activity the link names and what the teacher sets, to the learner and the teacher."""
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    learner = post_launch(signed_launch(lms, c, c.learners[0], "rl-pq1", gradesync.launch_url))
    teacher = post_launch(signed_launch(lms, c, c.instructor, "rl-pq1", gradesync.launch_url))

    for response in (learner, teacher):
        assert response.status_code == 200, response.text
        page = response.text.replace("&#x27;", "'")
        assert "will be sent" not in page, page
        assert "activity 'rl-pq1'" in page and "not know" in page, page
        assert "activity_id custom parameter" in page, page
    assert "Tell your teacher" in learner.text
    assert "Signed in as instructor" in teacher.text


def test_a_link_naming_another_courses_activity_is_refused(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    """Grades of a link bound to another course's activity could never reach this course's
    gradebook: the learner is told so, and nothing is recorded."""
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    with gradesync.db.uow() as uow:
        uow.courses.upsert(Course("t1", "bio-101", "Biology 101"))
        uow.activities.upsert(Activity("t1", "cells", "bio-101", "Cells", 10.0))
        uow.commit()
    form = signed_launch(lms, c, c.learners[0], "rl-78", gradesync.launch_url)
    params = dict(form["params"], custom_activity_id="cells")
    params = _sign(params, gradesync.launch_url, c.consumer_key, SECRET)
    before = _counts(gradesync)

    response = post_launch({"url": gradesync.launch_url, "params": params})

    assert response.status_code == 400, response.text
    assert "custom_activity_id" in response.text and "[other_course]" in response.text
    assert "bio-101" in response.text and "will be sent" not in response.text
    assert _counts(gradesync) == before
    # the same link without the custom parameter is its own activity in this course
    plain = signed_launch(lms, c, c.learners[0], "rl-78", gradesync.launch_url)
    assert post_launch(plain).status_code == 200


def test_wrong_secret_is_refused_and_changes_nothing(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    c = lms_course(lms)  # the LMS signs with SECRET
    register_consumer(gradesync.db, c.consumer_key, secret="not-the-lms-secret-at-all")
    before = _counts(gradesync)

    response = post_launch(signed_launch(lms, c, c.learners[0], "rl-1", gradesync.launch_url))

    assert response.status_code == 401
    assert "oauth_signature" in response.text and "[mismatch]" in response.text
    assert "not-the-lms-secret" not in response.text
    assert _counts(gradesync) == before


def test_tampered_form_is_refused(lms: RunningSandbox, gradesync: Gradesync) -> None:
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    form = signed_launch(lms, c, c.learners[0], "rl-1", gradesync.launch_url)
    form["params"]["roles"] = "Instructor"  # elevate after signing

    response = post_launch(form)

    assert response.status_code == 401 and "oauth_signature" in response.text


def test_replayed_launch_is_refused(lms: RunningSandbox, gradesync: Gradesync) -> None:
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    form = signed_launch(lms, c, c.learners[0], "rl-1", gradesync.launch_url)

    assert post_launch(form).status_code == 200
    before = _counts(gradesync)
    replay = post_launch(form)

    assert replay.status_code == 401
    assert "oauth_nonce" in replay.text and "[replayed]" in replay.text
    assert _counts(gradesync) == before


def test_refused_launches_are_counted_by_the_destination_diagnosis(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    """`doctor --destination` (here its API) counts refused LTI 1.1 launches as it does LTI
    1.3 ones; the record keeps the rule and the field, not the form's learner or secrets. A
    signature that does not verify with the consumer's secret fails the check, in the
    consumer's words (no platform or deployment), a replayed launch is another refusal."""
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    form = signed_launch(lms, c, c.learners[0], "rl-1", gradesync.launch_url)
    assert post_launch(form).status_code == 200
    assert post_launch(form).status_code == 401  # replayed
    forged = _sign(form["params"], gradesync.launch_url, c.consumer_key, "a-guessed-secret-00")
    assert post_launch({"url": gradesync.launch_url, "params": forged}).status_code == 401

    rt = gradesync.runtime
    key = auth.create_key(rt.db.uow, rt.clock, "t1", "doctor", ("admin",)).token
    diagnosis = httpx.get(
        gradesync.base_url + "/api/v1/destinations/lms11/diagnosis",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10.0,
    )

    assert diagnosis.status_code == 200, diagnosis.text
    (check,) = [k for k in diagnosis.json()["checks"] if k["code"] == "launches_accepted"]
    assert not check["passed"] and "platform" not in check["name"], check
    assert "1 launch refused (mismatch)" in check["evidence"], check
    assert "oauth_signature" in check["evidence"], check
    assert "`PUT /api/v1/lti11/consumers/lms11`" in check["remedy"], check
    with gradesync.db.uow() as uow:
        kept = uow.launches.refusals(tenant_id="t1")
    assert sorted(r.code for r in kept) == ["mismatch", "replayed"]
    assert {r.destination_id for r in kept} == {"lms11"}
    stored = repr(kept)
    assert c.learners[0] not in stored and SECRET not in stored
    assert form["params"]["oauth_signature"] not in stored


def test_stale_timestamp_and_unknown_key_are_refused(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    form = signed_launch(lms, c, c.learners[0], "rl-1", gradesync.launch_url)
    stale = _sign(
        form["params"],
        gradesync.launch_url,
        c.consumer_key,
        SECRET,
        timestamp=str(int(time.time()) - 900),
    )
    stranger = _sign(form["params"], gradesync.launch_url, "nobody-knows-me", SECRET)

    old = post_launch({"url": gradesync.launch_url, "params": stale})
    unknown = post_launch({"url": gradesync.launch_url, "params": stranger})

    assert old.status_code == 401 and "oauth_timestamp" in old.text and "[window]" in old.text
    assert unknown.status_code == 401 and "oauth_consumer_key" in unknown.text


def test_outcome_url_off_the_allowed_hosts_is_refused(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key, hosts=("lms.example.edu",))
    before = _counts(gradesync)

    response = post_launch(signed_launch(lms, c, c.learners[0], "rl-1", gradesync.launch_url))

    assert response.status_code == 400
    assert "lis_outcome_service_url" in response.text and "[host_not_allowed]" in response.text
    assert _counts(gradesync) == before


def test_missing_resource_link_is_refused_naming_the_field(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    form = signed_launch(lms, c, c.learners[0], "rl-1", gradesync.launch_url)
    params = {k: v for k, v in form["params"].items() if k != "resource_link_id"}
    params = _sign(params, gradesync.launch_url, c.consumer_key, SECRET)
    before = _counts(gradesync)

    response = post_launch({"url": gradesync.launch_url, "params": params})

    assert response.status_code == 400
    assert "resource_link_id" in response.text and "[required]" in response.text
    assert _counts(gradesync) == before


def test_every_problem_of_the_form_is_named_by_its_field(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    form = signed_launch(lms, c, c.learners[0], "rl-1", gradesync.launch_url)
    both_missing = {
        k: v for k, v in form["params"].items() if k not in ("context_id", "resource_link_id")
    }
    nul_user = dict(form["params"], user_id="ada\x00x")
    nul_name = dict(form["params"], lis_person_name_full="Ada\x00Lovelace")
    before = _counts(gradesync)

    missing, user, name = (
        post_launch(
            {
                "url": gradesync.launch_url,
                "params": _sign(params, gradesync.launch_url, c.consumer_key, SECRET),
            }
        )
        for params in (both_missing, nul_user, nul_name)
    )

    assert missing.status_code == 400
    assert "context_id: is required" in missing.text
    assert "resource_link_id: is required" in missing.text
    assert user.status_code == 400 and "user_id: must not contain a NUL" in user.text
    assert "[nul_character]" in user.text and "people[" not in user.text
    assert name.status_code == 400 and "lis_person_name_full:" in name.text
    assert "[nul_character]" in name.text and "people[" not in name.text
    assert _counts(gradesync) == before


def test_over_long_name_and_titles_are_refused_all_at_once_never_cut(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    form = signed_launch(lms, c, c.learners[0], "rl-1", gradesync.launch_url)
    params = dict(
        form["params"],
        lis_person_name_full="N" * 1025,
        context_title="T" * 2000,
        resource_link_title="L" * 1100,
        lis_person_contact_email_primary="e" * 300 + "@example.edu",
    )
    before = _counts(gradesync)

    response = post_launch(
        {
            "url": gradesync.launch_url,
            "params": _sign(params, gradesync.launch_url, c.consumer_key, SECRET),
        }
    )

    assert response.status_code == 400
    for field in (
        "lis_person_name_full",
        "context_title",
        "resource_link_title",
        "lis_person_contact_email_primary",
    ):
        assert f"{field}: is " in response.text, field
    assert response.text.count("[too_long]") == 4
    assert _counts(gradesync) == before

    # at the limit, the launch is taken and the name stored whole
    at_limit = dict(form["params"], lis_person_name_full="N" * 1024, context_title="T" * 1024)
    response = post_launch(
        {
            "url": gradesync.launch_url,
            "params": _sign(at_limit, gradesync.launch_url, c.consumer_key, SECRET),
        }
    )
    assert response.status_code == 200, response.text
    with gradesync.db.uow() as uow:
        person = uow.people.get("t1", c.learners[0])
        course = uow.courses.get("t1", form["params"]["context_id"])
    assert person is not None and person.name == "N" * 1024
    assert course is not None and course.title == "T" * 1024


def test_a_long_result_id_is_kept_whole_and_an_email_to_the_rfc_limit(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    """`lis_result_sourcedid` has no length limit: LMSs send long ones (Moodle's is a JSON
    object with a SHA-256 signature; Blackboard's and Sakai's are long encoded blobs), and a
    result id cut or refused would lose the learner's grade. An email is at most 254
    characters (RFC 5321), so a launch with a longer one is refused as docs/lti11.md says."""
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    learner = c.learners[0]
    form = signed_launch(lms, c, learner, "rl-long", gradesync.launch_url)
    moodle = json.dumps(
        {
            "data": {"instanceid": "1234", "userid": "56789", "typeid": "7", "launchid": 1},
            "hash": "ab" * 32,
        }
    )
    sourcedid = moodle + "|" + "x" * 2000
    email = "e" * 242 + "@example.edu"  # 254 characters
    params = dict(form["params"], lis_result_sourcedid=sourcedid)
    params["lis_person_contact_email_primary"] = email
    signed = _sign(params, gradesync.launch_url, c.consumer_key, SECRET)
    response = post_launch({"url": gradesync.launch_url, "params": signed})
    assert response.status_code == 200, response.text
    with gradesync.db.uow() as uow:
        item = uow.links.item("t1", "lms11", "rl-long")
        person = uow.people.get("t1", learner)
    assert item is not None and item.data["sourcedids"] == {learner: sourcedid}
    assert person is not None and person.email == email

    before = _counts(gradesync)
    params["lis_person_contact_email_primary"] = "e" * 244 + "@example.edu"  # 256
    signed = _sign(params, gradesync.launch_url, c.consumer_key, SECRET)
    response = post_launch({"url": gradesync.launch_url, "params": signed})
    assert response.status_code == 400
    assert "lis_person_contact_email_primary: is 256 characters long" in response.text
    assert "[too_long]" in response.text and "lis_result_sourcedid" not in response.text
    assert _counts(gradesync) == before


def test_json_body_is_not_a_launch(gradesync: Gradesync) -> None:
    import httpx

    response = httpx.post(gradesync.launch_url, json={"user_id": "x"}, timeout=30.0)
    assert response.status_code == 415


def test_role_mapping() -> None:
    assert role_from_lti11("Learner", graded=True) is Role.LEARNER
    assert role_from_lti11("urn:lti:role:ims/lis/Learner,Instructor", graded=True) is (
        Role.INSTRUCTOR
    )
    assert role_from_lti11("urn:lti:role:ims/lis/TeachingAssistant/Grader", graded=False) is (
        Role.TEACHING_ASSISTANT
    )
    # institution roles only count without a context role
    assert role_from_lti11("urn:lti:instrole:ims/lis/Administrator,Learner", graded=True) is (
        Role.LEARNER
    )
    assert role_from_lti11("urn:lti:instrole:ims/lis/Administrator", graded=False) is (
        Role.ADMINISTRATOR
    )
    assert role_from_lti11("Mentor", graded=False) is Role.OBSERVER
    assert role_from_lti11("", graded=True) is Role.LEARNER
    assert role_from_lti11("SomethingNew", graded=False) is Role.OBSERVER


def _launch_params(user: str, sourcedid: str) -> dict[str, str]:
    return {
        "lti_message_type": "basic-lti-launch-request",
        "lti_version": "LTI-1p0",
        "user_id": user,
        "roles": "Learner",
        "context_id": "c-rush",
        "resource_link_id": "rl-rush",
        "lis_result_sourcedid": sourcedid,
        "lis_outcome_service_url": "https://lms.example.edu/outcomes",
    }


@pytest.mark.postgres
def test_concurrent_launches_of_one_link_do_not_lose_result_ids(postgres_db: Database) -> None:
    """Two launches of one link in overlapping transactions: the second waits for the first
    and keeps its entry (without the row lock it would overwrite it from a stale read)."""
    register_consumer(postgres_db, "k-rush", hosts=("lms.example.edu",))
    now = datetime.now(UTC)

    def record(user: str) -> None:
        with postgres_db.uow() as uow:
            consumer = find_consumer(uow, "k-rush")
            assert consumer is not None
            record_launch(
                uow, consumer, read_launch(_launch_params(user, f"sid-{user}"), consumer), now
            )
            uow.commit()

    record("u1")  # the item link exists, committed
    first = postgres_db.uow().__enter__()
    consumer = find_consumer(first, "k-rush")
    assert consumer is not None
    launch = read_launch(_launch_params("u2", "sid-u2"), consumer)
    record_launch(first, consumer, launch, now)  # not committed yet
    second = threading.Thread(target=record, args=("u3",))
    second.start()
    # wait until the second launch is blocked on the first one's lock (or has ended)
    with postgres_db.engine.connect() as probe:

        def state() -> str | None:
            waiting = probe.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            ).scalar()
            probe.rollback()
            if waiting:
                return "waiting"
            return None if second.is_alive() else "ended"

        outcome = wait_for(state, "the second launch to wait for the first's lock")
    assert outcome == "waiting", "the second launch did not wait for the first"
    first.commit()
    first.__exit__(None, None, None)
    second.join(timeout=10)
    assert not second.is_alive()

    with postgres_db.uow() as uow:
        item = uow.links.item("t1", "lms11", "rl-rush")
    assert item is not None
    assert item.data["sourcedids"] == {"u1": "sid-u1", "u2": "sid-u2", "u3": "sid-u3"}


def test_a_course_made_while_its_first_launch_is_recorded_keeps_its_fields(db: Database) -> None:
    """The launch reads the course (absent: it makes it, titled from `context_title`) and an
    import makes it after ingest's read, before the launch writes: the import's title and
    time zone stay (the launch's write of an absent course sets nothing on one made
    meanwhile)."""
    register_consumer(db, "k-first", hosts=("lms.example.edu",))
    made = Course("t1", "c-rush", "Biology 101", time_zone="Europe/Paris")
    racing = AfterFirstRead(
        db,
        "courses",
        "get_many",  # the second: ingest's own read of the course (validation's is first)
        lambda: ingest(db.uow, SystemClock(), None, "t1", IngestBatch(courses=[made])),
        nth=2,
    )
    with racing() as uow:
        consumer = find_consumer(uow, "k-first")
        assert consumer is not None
        params = {**_launch_params("u1", "sid-u1"), "context_title": "LMS biology"}
        record_launch(uow, consumer, read_launch(params, consumer), datetime.now(UTC))
        uow.commit()
    racing.finish()
    assert racing.second is not None and not racing.second.blocked
    with db.uow() as uow:
        assert uow.courses.get("t1", "c-rush") == made
        assert uow.enrollments.get("t1", "c-rush", "u1") is not None


def test_a_launch_reopens_results_that_were_waiting_for_it(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    c = lms_course(lms, learners=2)
    register_consumer(gradesync.db, c.consumer_key)
    first, second = c.learners
    now = datetime.now(UTC)

    def rejected(
        person: str,
        code: str,
        activity: str = "rl-wait",
        state: DeliveryState = DeliveryState.REJECTED,
    ) -> LedgerRow:
        return LedgerRow(
            key=LedgerKey("t1", "lms11", activity, person),
            state=state,
            desired_hash="h-" + person,
            desired={"score_given": 0.5},
            reason_code=code,
            reason_text="waiting",
            tries=1,
            updated_at=now,
        )

    with gradesync.db.uow() as uow:
        uow.courses.upsert(Course("t1", c.course, "Biology"))
        uow.ledger.save_many(
            [
                (rejected(first, "no_sourcedid"), c.course),
                (rejected(second, "unknown_user"), c.course),
                # the course was never launched: the engine keeps these waiting (course-wide)
                (rejected(second, "no_launch", "other-act", DeliveryState.RETRYING), c.course),
            ]
        )
        uow.commit()
    wakes = gradesync.waker.keys

    assert post_launch(signed_launch(lms, c, first, "rl-wait", gradesync.launch_url)).is_success

    with gradesync.db.uow() as uow:
        mine = uow.ledger.get(LedgerKey("t1", "lms11", "rl-wait", first))
        other = uow.ledger.get(LedgerKey("t1", "lms11", "rl-wait", second))
        course_wide = uow.ledger.get(LedgerKey("t1", "lms11", "other-act", second))
        dirty = uow.dirty.peek(100)
    assert mine is not None and mine.state is DeliveryState.PENDING and mine.tries == 0
    assert other is not None and other.state is DeliveryState.REJECTED  # not cured by this
    assert course_wide is not None and course_wide.state is DeliveryState.PENDING
    assert ("t1", c.course, "rl-wait", first) in [d[:4] for d in dirty]
    assert gradesync.waker.keys == wakes + 1


def test_a_launch_logged_at_debug_holds_no_learner_data(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    """`GRADESYNC_LOG_LEVEL=DEBUG` adds a few libraries' lines, never a launch's parameters:
    oauthlib's debug lines print the whole signature base string (name, email, sourcedids)
    when it signs a launch (the sandbox LMS, in this process) and when one fails to verify."""
    good, bad = lms_course(lms), lms_course(lms)
    register_consumer(gradesync.db, good.consumer_key)
    secret = "not-the-lms-secret-at-all"
    register_consumer(gradesync.db, bad.consumer_key, secret=secret, destination_id="lms11-b")
    with configured("DEBUG") as stream:
        forms = [
            signed_launch(lms, c, c.learners[0], "rl-quiz1", gradesync.launch_url)
            for c in (good, bad)
        ]
        assert [post_launch(f).status_code for f in forms] == [200, 401]
        logging.getLogger("gradesync.test").debug("gradesync's own debug lines are kept")
    logged = stream.getvalue()
    assert "gradesync's own debug lines are kept" in logged
    assert f'"POST {LAUNCH_PATH}" 401' in logged, logged
    fields = (
        "lis_person_name_full",
        "lis_person_contact_email_primary",
        "lis_person_sourcedid",
        "lis_result_sourcedid",
    )
    for form in forms:
        learner = {k: v for k in fields if (v := form["params"].get(k))}
        assert len(learner) >= 3, form["params"]  # the sandbox sends no lis_person_sourcedid
        for key, value in learner.items():
            assert value not in logged and quote(value, safe="") not in logged, key


@pytest.mark.parametrize("bad", ["res\x00ult-7", "res\x0bult-7", "result-7\x1b[0m"])
def test_a_result_id_with_a_control_character_is_not_kept_and_the_learner_is_told(
    lms: RunningSandbox, gradesync: Gradesync, bad: str
) -> None:
    """A `lis_result_sourcedid` with a NUL (PostgreSQL stores none) or another control
    character (no XML request can carry it) was kept as the learner's result id: a NUL made
    the launch fail, another made every grade request for the learner invalid. The launch
    goes on as one with no result id, and says why no grade can be returned."""
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    learner = c.learners[0]
    form = signed_launch(lms, c, learner, "rl-bad", gradesync.launch_url)
    params = dict(form["params"], lis_result_sourcedid=bad, roles="")
    signed = _sign(params, gradesync.launch_url, c.consumer_key, SECRET)

    response = post_launch({"url": gradesync.launch_url, "params": signed})

    assert response.status_code == 200, response.text
    assert "lis_result_sourcedid" in response.text and "control character" in response.text
    assert "no grade can be returned" in response.text
    with gradesync.db.uow() as uow:
        item = uow.links.item("t1", "lms11", "rl-bad")
        enrollment = uow.enrollments.get("t1", c.course, learner)
        plink = uow.links.person("t1", "lms11", learner, c.course)
        [launch] = uow.launches.records_for_person("t1", learner)
    assert item is not None and "sourcedids" not in item.data
    assert plink is None or "sourcedids" not in plink.data
    # no role given: a launch the LMS expects a grade for is still a learner's
    assert enrollment is not None and enrollment.role is Role.LEARNER
    assert "lis_result_sourcedid" not in launch.claims

    # a result id an earlier launch gave stays in use
    assert post_launch(form).status_code == 200
    again = post_launch(
        {
            "url": gradesync.launch_url,
            "params": _sign(params, gradesync.launch_url, c.consumer_key, SECRET),
        }
    )
    assert again.status_code == 200 and "no grade can be returned" in again.text
    with gradesync.db.uow() as uow:
        item = uow.links.item("t1", "lms11", "rl-bad")
    assert item is not None
    assert item.data["sourcedids"] == {learner: form["params"]["lis_result_sourcedid"]}
