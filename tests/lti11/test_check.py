"""`destinations check` of an LTI 1.1 consumer: a learner's grade read back from the LMS
(readResult, signed like a grade), so a wrong secret shows before the first grade; and no
test result, which LTI 1.1 could only write over a learner's grade."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import Destination, PersonLink
from gradesync.sandbox.testing import RunningSandbox
from tests.lti11.conftest import (
    Gradesync,
    LmsCourse,
    lms_course,
    lti11_requests,
    post_launch,
    register_consumer,
    signed_launch,
)


async def _check(g: Gradesync, **options: object) -> list[tuple[str, bool, str]]:
    steps = await g.runtime.check_destination("t1", "lms11", **options)  # type: ignore[arg-type]
    return [(s.name, s.passed, s.evidence) for s in steps]


def _set_secret(g: Gradesync, secret: str) -> None:
    with g.db.uow() as uow:
        d = uow.destinations.get("t1", "lms11")
        assert isinstance(d, Destination)
        uow.destinations.upsert(
            replace(d, secret={**d.secret, "consumer_secret": secret}), datetime.now(UTC)
        )
        uow.commit()


async def test_check_reads_a_grade_back_and_a_wrong_secret_fails_it(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    # before any learner opened an activity there is nothing to read: said, not passed
    form = signed_launch(lms, c, c.instructor, "rl-quiz1", gradesync.launch_url)
    assert post_launch(form).status_code == 200
    before = await _check(gradesync)
    assert before[-1][:2] == ("A learner's grade reads back", False), before

    form = signed_launch(lms, c, c.learners[0], "rl-quiz1", gradesync.launch_url)
    assert post_launch(form).status_code == 200
    asked = lti11_requests(lms)
    steps = await _check(gradesync)
    assert all(passed for _, passed, _ in steps), steps
    assert steps[-1][0] == "A learner's grade reads back"
    assert f"learner {c.learners[0]!r} in activity" in steps[-1][2], steps
    assert lti11_requests(lms) == asked + 1  # the LMS was asked once, signed

    _set_secret(gradesync, "not-the-consumer-secret")
    failed = await _check(gradesync)
    assert failed[-1][:2] == ("A learner's grade reads back", False), failed
    assert "signature" in failed[-1][2].lower() or "credential" in failed[-1][2].lower()


async def test_each_step_of_an_lti11_check_names_what_it_found_in_a_code(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    """An LMS's check steps had no `code` (a SIS's had): a program read their names."""

    async def codes() -> list[str | None]:
        return [s.code for s in await gradesync.runtime.check_destination("t1", "lms11")]

    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    own = ["configured", "outcome_url_per_launch", "course_launched"]
    form = signed_launch(lms, c, c.instructor, "rl-quiz1", gradesync.launch_url)
    assert post_launch(form).status_code == 200
    assert await codes() == [*own, "no_learner_launched"]
    form = signed_launch(lms, c, c.learners[0], "rl-quiz1", gradesync.launch_url)
    assert post_launch(form).status_code == 200
    assert await codes() == [*own, "grade_read_back"]
    _set_secret(gradesync, "not-the-consumer-secret")
    [*_, refused] = await codes()
    assert refused == "bad_credentials"  # the code of the LMS's refusal


async def test_a_test_result_is_refused_for_lti11_naming_the_option(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    asked = lti11_requests(lms)
    with pytest.raises(InvalidInput) as refused:
        await _check(gradesync, send_test=True)
    assert [(p.field, p.rule) for p in refused.value.problems] == [("send_test", "not_supported")]
    assert lti11_requests(lms) == asked


async def test_a_test_result_and_an_unknown_course_are_named_together(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    with pytest.raises(InvalidInput) as refused:
        await _check(gradesync, send_test=True, course_id="nope")
    assert [(p.field, p.rule) for p in refused.value.problems] == [
        ("send_test", "not_supported"),
        ("course_id", "unknown_course"),
    ]


async def _launch_all(lms: RunningSandbox, g: Gradesync, c: LmsCourse, link: str) -> None:
    for learner in c.learners:
        assert post_launch(signed_launch(lms, c, learner, link, g.launch_url)).status_code == 200


async def test_the_check_reads_back_one_learner_however_many_launched(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    c = lms_course(lms, learners=5)
    register_consumer(gradesync.db, c.consumer_key)
    await _launch_all(lms, gradesync, c, "rl-quiz1")
    await _launch_all(lms, gradesync, c, "rl-quiz2")
    asked = lti11_requests(lms)
    steps = await _check(gradesync)
    assert all(passed for _, passed, _ in steps), steps
    assert lti11_requests(lms) == asked + 1  # one readResult, not one per learner
    # a learner named is the one read back, still with one request
    named = c.learners[3]
    steps = await _check(gradesync, course_id=c.course, learner_id=named)
    assert steps[-1][1] and f"learner {named!r}" in steps[-1][2], steps
    assert lti11_requests(lms) == asked + 2


def _stale_result_id(g: Gradesync, c: LmsCourse, learner: str) -> str:
    """Make gradesync hold a result id for `learner` that the LMS does not know (as after
    the LMS reset the course): the one gradesync sends and reads with."""
    with g.db.uow() as uow:
        link = uow.links.person("t1", "lms11", learner, c.course)
        assert isinstance(link, PersonLink)
        stale = {aid: f"stale-{aid}" for aid in link.data["sourcedids"]}
        uow.links.save_person(replace(link, data={**link.data, "sourcedids": stale}))
        uow.commit()
    return next(iter(stale.values()))


async def test_a_result_id_the_lms_does_not_know_is_named_not_read_as_nobody_launched(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    c = lms_course(lms, learners=2)
    register_consumer(gradesync.db, c.consumer_key)
    await _launch_all(lms, gradesync, c, "rl-quiz1")
    who = c.learners[1]
    stale = _stale_result_id(gradesync, c, who)
    asked = lti11_requests(lms)
    name, passed, evidence = (await _check(gradesync, course_id=c.course, learner_id=who))[-1]
    assert (name, passed) == ("A learner's grade reads back", False)
    assert f"The LMS does not know learner {who!r}'s result id" in evidence, evidence
    assert f"sourcedId {stale!r}" in evidence and "not recognised" in evidence, evidence
    assert "No learner has opened" not in evidence
    assert lti11_requests(lms) == asked + 1


async def test_a_learner_the_lms_no_longer_counts_a_student_is_named(
    lms: RunningSandbox, gradesync: Gradesync
) -> None:
    c = lms_course(lms, learners=2)
    register_consumer(gradesync.db, c.consumer_key)
    await _launch_all(lms, gradesync, c, "rl-quiz1")
    who = c.learners[0]
    lms.admin.unenroll(c.course, who)
    name, passed, evidence = (await _check(gradesync, course_id=c.course, learner_id=who))[-1]
    assert (name, passed) == ("A learner's grade reads back", False)
    assert f"The LMS does not count learner {who!r} as a student" in evidence, evidence
    assert "No learner has opened" not in evidence
