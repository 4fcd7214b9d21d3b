"""The LTI 1.1 Outcomes adapter against the sandbox LMS over real HTTP: replace, read,
delete, and every failure class (signature refused inside HTTP 200, unknown result id,
concluded course, 5xx, throttling, resets, timeouts), plus refusals made before sending."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from gradesync.adapters.destinations.lti11 import Lti11Client, build
from gradesync.adapters.destinations.registry import DestinationContext, build_client
from gradesync.domain.model import (
    CourseLink,
    Destination,
    DestinationKind,
    ItemLink,
    PersonLink,
    ScoreForm,
)
from gradesync.domain.policy import Column, DesiredResult, column_hash
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services.destination import FailureClass, RemoteFailure, ResultTarget
from tests.lti11.conftest import (
    SECRET,
    Gradesync,
    LmsCourse,
    lms_course,
    lms_scores,
    lti11_requests,
    post_launch,
    register_consumer,
    signed_launch,
)
from tests.support.gates import WatchingGate

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TOOL_URL = "https://tool.example.com/lti11/launch"  # the sandbox only signs for it


def result(
    score: float | None, maximum: float = 1.0, *, comment: str | None = None
) -> DesiredResult:
    return DesiredResult(
        score_given=score,
        score_maximum=maximum,
        grading_progress="FullyGraded",
        activity_progress="Completed",
        comment=comment,
        late=False,
        missing=False,
        excused=score is None,
        scored_at=NOW,
        basis="test",
        attempt_event_id="ev-1",
    )


def consumer(key: str, *, secret: str = SECRET, **config: Any) -> Destination:
    return Destination(
        tenant_id="t1",
        id="lms11",
        kind=DestinationKind.LTI11_OUTCOMES,
        name="Sandbox LMS",
        config={"consumer_key": key, "allowed_hosts": ["127.0.0.1"], **config},
        secret={"consumer_secret": secret},
    )


def target_from_launch(form: dict[str, Any], activity: str = "act-1") -> ResultTarget:
    """The links a launch leaves behind, built straight from the LMS's launch form."""
    p = form["params"]
    url, sid, user, course = (
        p["lis_outcome_service_url"],
        p["lis_result_sourcedid"],
        p["user_id"],
        p["context_id"],
    )
    return ResultTarget(
        course=CourseLink("t1", "lms11", course, course, {"outcome_service_url": url}),
        item=ItemLink(
            "t1",
            "lms11",
            activity,
            p["resource_link_id"],
            data={"sourcedids": {user: sid}, "outcome_service_url": url},
        ),
        person=PersonLink(
            "t1",
            "lms11",
            user,
            user,
            course,
            {"sourcedids": {activity: sid}, "outcome_urls": {activity: url}},
        ),
    )


def launch(lms: RunningSandbox, c: LmsCourse, link: str = "rl-1", who: int = 0) -> ResultTarget:
    return target_from_launch(signed_launch(lms, c, c.learners[who], link, TOOL_URL))


async def test_launch_then_replace_read_delete_end_to_end(
    lms: RunningSandbox, gradesync: Gradesync, context: DestinationContext
) -> None:
    """The learner launches gradesync from the LMS; the grade goes back to that column."""
    c = lms_course(lms)
    register_consumer(gradesync.db, c.consumer_key)
    learner = c.learners[0]
    assert post_launch(signed_launch(lms, c, learner, "rl-hw", gradesync.launch_url)).is_success
    with gradesync.db.uow() as uow:
        dest = uow.destinations.get("t1", "lms11")
        course_link = uow.links.course("t1", "lms11", c.course)
        item = uow.links.item("t1", "lms11", "rl-hw")
        person = uow.links.person("t1", "lms11", learner, c.course)
    assert dest and course_link and item and person
    client = build_client(dest, context)  # the registry maps lti11_outcomes here
    assert isinstance(client, Lti11Client)

    receipt = await client.put_result(ResultTarget(course_link, item, person), result(0.75), NOW)

    assert receipt.status == 200 and receipt.payload["operation"] == "replaceResult"
    assert receipt.payload["score"] == "0.75"
    held = lms_scores(lms, c.course, "rl-hw")[learner]
    assert held["scoreGiven"] == pytest.approx(7.5) and held["scoreMaximum"] == 10
    assert held["source"] == "lti11"

    read = await client.read_results(course_link, item)
    assert [(r.remote_person_id, r.score_given) for r in read] == [(learner, 0.75)]

    deleted = await client.put_result(ResultTarget(course_link, item, person), result(None), NOW)
    assert deleted.payload["operation"] == "deleteResult"
    assert lms_scores(lms, c.course, "rl-hw")[learner]["scoreGiven"] is None
    read = await client.read_results(course_link, item)
    assert [(r.remote_person_id, r.score_given) for r in read] == [(learner, None)]


async def test_zero_and_full_marks_are_sent(
    lms: RunningSandbox, context: DestinationContext
) -> None:
    c = lms_course(lms, learners=2)
    client = build(consumer(c.consumer_key), context)
    zero, full = launch(lms, c, "rl-z", 0), launch(lms, c, "rl-z", 1)

    await client.put_result(zero, result(0.0), NOW)
    await client.put_result(full, result(10.0, 10.0), NOW)  # points form is scaled to 1.0

    scores = lms_scores(lms, c.course, "rl-z")
    assert scores[c.learners[0]]["scoreGiven"] == 0.0
    assert scores[c.learners[1]]["scoreGiven"] == pytest.approx(10.0)


async def test_comment_extension_only_when_switched_on(
    lms: RunningSandbox, context: DestinationContext
) -> None:
    c = lms_course(lms, learners=2)
    plain = build(consumer(c.consumer_key), context)
    chatty = build(consumer(c.consumer_key, comments=True), context)
    assert plain.capabilities.comments is False and chatty.capabilities.comments is True

    await plain.put_result(launch(lms, c, "rl-c", 0), result(0.5, comment="Good"), NOW)
    await chatty.put_result(launch(lms, c, "rl-c", 1), result(0.5, comment="Good"), NOW)

    scores = lms_scores(lms, c.course, "rl-c")
    assert scores[c.learners[0]]["comment"] is None
    assert scores[c.learners[1]]["comment"] == "Good"


async def test_out_of_range_score_is_refused_before_sending(
    lms: RunningSandbox, context: DestinationContext
) -> None:
    c = lms_course(lms)
    client = build(consumer(c.consumer_key), context)
    target = launch(lms, c)
    sent_before = lti11_requests(lms)

    for bad in (result(1.2), result(-0.1), result(12.0, 10.0), result(float("nan"))):
        with pytest.raises(RemoteFailure) as err:
            await client.put_result(target, bad, NOW)
        assert err.value.failure is FailureClass.REJECTED
        assert err.value.code == "score_out_of_range"

    assert lti11_requests(lms) == sent_before


async def test_wrong_secret_is_misconfigured_from_a_failure_inside_http_200(
    lms: RunningSandbox, context: DestinationContext
) -> None:
    c = lms_course(lms)
    client = build(consumer(c.consumer_key, secret="we-have-the-wrong-secret"), context)

    with pytest.raises(RemoteFailure) as err:
        await client.put_result(launch(lms, c), result(0.5), NOW)

    assert err.value.failure is FailureClass.MISCONFIGURED
    assert err.value.code == "bad_credentials"
    assert err.value.status == 200
    assert "oauth_signature" in err.value.message  # the LMS's own words are kept


async def test_unknown_sourcedid_and_concluded_course_are_rejected(
    lms: RunningSandbox, context: DestinationContext
) -> None:
    c = lms_course(lms)
    client = build(consumer(c.consumer_key), context)
    target = launch(lms, c)
    bogus = ResultTarget(
        target.course,
        target.item,
        PersonLink(
            "t1",
            "lms11",
            "p",
            "p",
            c.course,
            {"sourcedids": {"act-1": "no-such-result"}},
        ),
    )

    with pytest.raises(RemoteFailure) as unknown:
        await client.put_result(bogus, result(0.5), NOW)
    lms.admin.patch_course(c.course, concluded=True)
    with pytest.raises(RemoteFailure) as concluded:
        await client.put_result(target, result(0.5), NOW)

    assert (unknown.value.failure, unknown.value.code) == (
        FailureClass.REJECTED,
        "unknown_sourcedid",
    )
    assert (concluded.value.failure, concluded.value.code) == (
        FailureClass.REJECTED,
        "course_concluded",
    )
    assert "concluded" in concluded.value.message


@pytest.mark.parametrize(
    ("fault", "failure", "code"),
    [
        ("error", FailureClass.RETRY_LATER, "server_error"),
        ("throttle", FailureClass.SLOW_DOWN, "rate_limited"),
        ("reset", FailureClass.RETRY_LATER, "connection_failed"),
        ("timeout", FailureClass.RETRY_LATER, "timeout"),
    ],
)
async def test_transport_faults_are_classified(
    lms: RunningSandbox,
    context: DestinationContext,
    fault: str,
    failure: FailureClass,
    code: str,
) -> None:
    c = lms_course(lms)
    client = build(consumer(c.consumer_key, timeout_seconds=0.5), context)
    target = launch(lms, c)
    lms.admin.set_faults({"lti11": {"script": [fault], "timeout_seconds": 5}})
    try:
        with pytest.raises(RemoteFailure) as err:
            await client.put_result(target, result(0.5), NOW)
    finally:
        lms.admin.clear_faults()

    assert (err.value.failure, err.value.code) == (failure, code)
    if fault == "throttle":
        assert err.value.retry_after == 1.0
    # the fault was consumed; the same send now goes through (with the usual patience: the
    # short timeout above is only there to make the hung request fail fast)
    await build(consumer(c.consumer_key), context).put_result(target, result(0.5), NOW)
    assert lms_scores(lms, c.course, "rl-1")[c.learners[0]]["scoreGiven"] == pytest.approx(5.0)


async def test_canvas_style_403_rate_limit_is_slow_down(
    lms: RunningSandbox, context: DestinationContext
) -> None:
    c = lms_course(lms)
    client = build(consumer(c.consumer_key), context)
    target = launch(lms, c)
    lms.admin.set_faults(
        {
            "lti11": {
                "rate_limit_per_second": 0.001,
                "rate_limit_burst": 1,
                "rate_limit_response": "403",
            }
        }
    )
    try:
        await client.put_result(target, result(0.5), NOW)  # the burst token
        with pytest.raises(RemoteFailure) as err:
            await client.put_result(target, result(0.6), NOW)
    finally:
        lms.admin.clear_faults()
    assert (err.value.failure, err.value.code, err.value.status) == (
        FailureClass.SLOW_DOWN,
        "rate_limited",
        403,
    )


async def test_outcome_url_off_allowed_hosts_is_never_called(
    lms: RunningSandbox, context: DestinationContext
) -> None:
    c = lms_course(lms)
    dest = consumer(c.consumer_key)
    elsewhere = replace(dest, config={**dest.config, "allowed_hosts": ["lms.example.edu"]})
    client = build(elsewhere, context)
    sent_before = lti11_requests(lms)

    with pytest.raises(RemoteFailure) as err:
        await client.put_result(launch(lms, c), result(0.5), NOW)

    assert (err.value.failure, err.value.code) == (
        FailureClass.MISCONFIGURED,
        "outcome_host_not_allowed",
    )
    assert lti11_requests(lms) == sent_before


async def test_capabilities_columns_and_courses(context: DestinationContext) -> None:
    client = build(consumer("k"), context)
    caps = client.capabilities
    assert caps.score_form is ScoreForm.PERCENT and caps.percent_scale == 1.0
    assert (caps.extra_credit, caps.statuses, caps.pending_results) == (False, False, False)

    column = Column("Quiz 1", 10.0, None, None, "act-1")
    course = CourseLink("t1", "lms11", "c1", "c1", {"outcome_service_url": "http://127.0.0.1/x"})
    with pytest.raises(RemoteFailure) as no_link:
        await client.ensure_column(course, column, None)
    # per activity, not per consumer: other courses keep syncing
    assert (no_link.value.failure, no_link.value.code) == (FailureClass.REJECTED, "no_launch")
    link = ItemLink("t1", "lms11", "act-1", "rl-1")
    ensured = await client.ensure_column(course, column, link)
    assert ensured.remote_id == "rl-1" and ensured.details_hash == column_hash(column)

    from gradesync.domain.model import Course

    with pytest.raises(RemoteFailure) as no_course:
        await client.ensure_course(Course("t1", "c2", "Chemistry"), None)
    assert no_course.value.code == "no_launch"

    steps = await client.check()
    assert steps[0].passed and "consumer key 'k'" in steps[0].evidence


async def test_bad_configuration_is_misconfigured_naming_the_field(
    context: DestinationContext,
) -> None:
    broken = Destination(
        tenant_id="t1",
        id="lms11",
        kind=DestinationKind.LTI11_OUTCOMES,
        name="x",
        config={"consumer_key": "k", "allowed_hosts": []},
        secret={"consumer_secret": SECRET},
    )
    client = build(broken, context)
    target = ResultTarget(
        CourseLink("t1", "lms11", "c", "c", {"outcome_service_url": "http://127.0.0.1/o"}),
        ItemLink("t1", "lms11", "a", "rl"),
        PersonLink("t1", "lms11", "p", "p", "c", {"sourcedids": {"a": "s"}}),
    )
    with pytest.raises(RemoteFailure) as err:
        await client.put_result(target, result(0.5), NOW)
    assert err.value.failure is FailureClass.MISCONFIGURED
    assert "config.allowed_hosts" in err.value.message
    steps = await client.check()
    assert not steps[0].passed and "allowed_hosts" in steps[0].evidence


async def test_read_results_reads_every_launched_learner(
    lms: RunningSandbox, context: DestinationContext
) -> None:
    c = lms_course(lms, learners=3)
    client = build(consumer(c.consumer_key), context)
    targets = [launch(lms, c, "rl-r", i) for i in range(3)]
    await client.put_result(targets[0], result(0.25), NOW)
    await client.put_result(targets[1], result(1.0), NOW)
    # the item link as launches leave it: every learner's result id, plus a stale one
    sourcedids = {t.person.remote_id: t.person.data["sourcedids"]["act-1"] for t in targets}
    item = replace(
        targets[0].item, data={**targets[0].item.data, "sourcedids": {**sourcedids, "gone": "x"}}
    )

    read = await client.read_results(targets[0].course, item)

    assert {r.remote_person_id: r.score_given for r in read} == {
        c.learners[0]: 0.25,
        c.learners[1]: 1.0,
        c.learners[2]: None,
    }


@pytest.mark.parametrize(("spare", "at_once"), [(0, 1), (2, 3)])
async def test_a_read_back_within_a_callers_limits_asks_as_many_at_once_as_it_has_slots(
    lms: RunningSandbox, context: DestinationContext, spare: int, at_once: int
) -> None:
    """Under a caller's gate (a run's read-back holds one of the LMS's slots) each
    readResult enters the gate, none outside it, and as many go at once as the caller's
    slot and those free beside it (`RequestGate.beside`) allow. They went eight at once on
    the caller's one slot and token."""
    c = lms_course(lms, learners=6)
    client = build(consumer(c.consumer_key), context)
    targets = [launch(lms, c, "rl-g", i) for i in range(6)]
    for t in targets:
        await client.put_result(t, result(0.5), NOW)
    sourcedids = {t.person.remote_id: t.person.data["sourcedids"]["act-1"] for t in targets}
    item = replace(targets[0].item, data={**targets[0].item.data, "sourcedids": sourcedids})
    gate = WatchingGate(spare=spare)
    lms.admin.set_faults({"lti11": {"latency_ms": 100}})  # long enough to overlap
    lms.admin.reset_counters()
    try:
        read = await client.read_results(targets[0].course, item, each_request=gate)
    finally:
        lms.admin.clear_faults()
    assert [r.remote_person_id for r in read] == sorted(sourcedids)
    assert {r.score_given for r in read} == {0.5}
    # every request the LMS answered went through the gate, as many at once as allowed
    # (counted at the client: the LMS counts a request until its handler has returned,
    # which can be after the client has its answer and sent the next)
    assert gate.entered == lms.admin.counters()["lti11"]["requests"] == 6
    assert gate.most == at_once
