"""The AGS destination client against the sandbox LMS over real HTTP: find before create,
updates, scores with the query string kept, paging, read back, tokens, and every failure
class with the platform's own words."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from gradesync.adapters.destinations.ags import AgsClient
from gradesync.adapters.destinations.registry import DestinationContext, build_client
from gradesync.domain.model import CourseLink, ItemLink, PersonLink
from gradesync.domain.policy import Column, DesiredResult
from gradesync.sandbox.config import SandboxConfig
from gradesync.sandbox.testing import RunningSandbox, running_sandbox
from gradesync.services.destination import FailureClass, RemoteFailure, ResultTarget
from tests.lti.conftest import Gradesync, connect, unique
from tests.support.gates import WatchingGate

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Env:
    lms: RunningSandbox
    client: AgsClient
    course: CourseLink
    ctx: str
    learners: list[str]

    def target(self, item: ItemLink, learner: str) -> ResultTarget:
        person = PersonLink(self.course.tenant_id, self.course.destination_id, learner, learner)
        return ResultTarget(self.course, item, person)


def make_env(
    lms: RunningSandbox,
    gs: Gradesync,
    context: DestinationContext,
    profile: str = "generic",
    **kw: object,
) -> Env:
    s = connect(lms, gs, profile=profile, **kw)  # type: ignore[arg-type]
    ctx = unique("ctx-")
    learners = [unique("learner-"), unique("learner-")]
    lms.admin.add_course(id=ctx, title=ctx, learners=learners)
    client = build_client(s.platform, context)
    assert isinstance(client, AgsClient)
    link = CourseLink(
        s.tenant_id, s.platform_id, "course-1", f"{lms.base_url}/api/lti/courses/{ctx}/line_items"
    )
    return Env(lms, client, link, ctx, learners)


def column(activity: str = "quiz1", title: str = "Quiz 1", points: float = 10.0) -> Column:
    return Column(
        title=title,
        score_maximum=points,
        due_at=T0 + timedelta(days=7),
        category=None,
        activity_id=activity,
    )


def result(given: float | None, maximum: float = 10.0, comment: str | None = None) -> DesiredResult:
    return DesiredResult(
        score_given=given,
        score_maximum=maximum,
        grading_progress="FullyGraded",
        activity_progress="Completed",
        comment=comment,
        late=False,
        missing=False,
        excused=False,
        scored_at=T0,
        basis="test",
        attempt_event_id="e1",
    )


@pytest.fixture(scope="module")
def canvas() -> Iterator[RunningSandbox]:
    with running_sandbox(SandboxConfig(mode="canvas")) as sb:
        yield sb


@pytest.fixture(scope="module")
def moodle() -> Iterator[RunningSandbox]:
    with running_sandbox(SandboxConfig(mode="moodle")) as sb:
        yield sb


async def test_find_before_create_update_and_paging(
    lms: RunningSandbox, gradesync_lite: Gradesync, context: DestinationContext
) -> None:
    env = make_env(lms, gradesync_lite, context)
    for i in range(5):  # other columns, so ours is on a later page (page size 2)
        lms.admin.add_line_item(env.ctx, label=f"Other {i}", scoreMaximum=5, resourceId=f"other{i}")
    created = await env.client.ensure_column(env.course, column(), None)
    items = lms.state.courses[env.ctx].line_items
    assert len(items) == 6
    # The link is lost (a restored backup): the column is found, not duplicated.
    found = await env.client.ensure_column(env.course, column(), None)
    assert found.remote_id == created.remote_id and len(items) == 6
    # Unchanged details: nothing is called at all.
    lms.admin.reset_counters()
    same = await env.client.ensure_column(env.course, column(), found)
    assert same is found and "lineitems" not in lms.admin.counters()
    # Renamed and re-pointed: updated in place.
    renamed = await env.client.ensure_column(env.course, column(title="Quiz One", points=12), found)
    item = next(i for i in items.values() if i.resource_id == "quiz1")
    assert renamed.remote_id == created.remote_id and renamed.details_hash != found.details_hash
    assert (item.label, item.score_maximum) == ("Quiz One", 12.0)
    assert item.end is not None and item.end.startswith("2025-03-08T12:00:00")
    # Deleted in the LMS: recreated.
    lms.state.remove_line_item(item)
    again = await env.client.ensure_column(
        env.course, column(title="Quiz One", points=12), renamed, force=True
    )
    assert again.remote_id != renamed.remote_id
    assert sum(1 for i in items.values() if i.resource_id == "quiz1") == 1


async def _racing_clients(
    lms: RunningSandbox, gs: Gradesync, context: DestinationContext, http: httpx.AsyncClient
) -> tuple[Env, AgsClient]:
    """Two clients of one platform as two processes hold them (own pool, own tokens), and
    line item requests slow enough that both look the column up before either creates it."""
    env = make_env(lms, gs, context)
    other = build_client(env.client.destination, DestinationContext(http=http, tool_keys=gs.keys))
    assert isinstance(other, AgsClient)
    for client in (env.client, other):  # each with its token before the race starts
        await client.ensure_column(env.course, column("warm-up", "Warm-up"), None)
    return env, other


async def test_two_processes_creating_one_column_leave_one(
    lms: RunningSandbox, gradesync_lite: Gradesync, context: DestinationContext
) -> None:
    """Both look the column up, both create it, and the one that made the newer deletes
    its own; every request of it, the delete too, within the caller's gate (a rate token
    each, `Governor.further_requests`)."""
    gate = WatchingGate()
    async with httpx.AsyncClient() as http:
        env, other = await _racing_clients(lms, gradesync_lite, context, http)
        lms.admin.set_faults({"lineitems": {"latency_ms": 300}})
        lms.admin.reset_counters()
        try:
            links = await asyncio.gather(
                env.client.ensure_column(env.course, column(), None, each_request=gate),
                other.ensure_column(env.course, column(), None, each_request=gate),
            )
            counters = lms.admin.counters()["lineitems"]
        finally:
            lms.admin.clear_faults()
    items = [i for i in lms.state.courses[env.ctx].line_items.values() if i.resource_id == "quiz1"]
    assert len(items) == 1, "both looked, both created: one is deleted again"
    (remote_id,) = {link.remote_id for link in links}
    assert remote_id.endswith(f"/line_items/{items[0].id}")
    # the surplus one, deleted by the client that made it
    assert counters.get("status_204") == 1, counters
    # two look-ups, two creations, two listings and the delete: none outside the gate
    assert gate.entered == counters["requests"] == 7, counters


async def test_a_surplus_column_that_could_not_be_deleted_is_deleted_next_time(
    lms: RunningSandbox, gradesync_lite: Gradesync, context: DestinationContext
) -> None:
    async with httpx.AsyncClient() as http:
        env, other = await _racing_clients(lms, gradesync_lite, context, http)
        # two look-ups, two creations, two listings, then the surplus's delete fails
        lms.admin.set_faults({"lineitems": {"latency_ms": 300, "script": [*["ok"] * 6, "error"]}})
        try:
            first = await asyncio.gather(
                env.client.ensure_column(env.course, column(), None),
                other.ensure_column(env.course, column(), None),
                return_exceptions=True,
            )
        finally:
            lms.admin.clear_faults()
        items = lms.state.courses[env.ctx].line_items
        assert len(items) == 3  # the warm-up's and two of quiz1
        (failed,) = [r for r in first if isinstance(r, RemoteFailure)]
        assert failed.code == "server_error"
        loser = env.client if first[0] is failed else other
        again = await loser.ensure_column(env.course, column(), None)
    (kept,) = [r for r in first if isinstance(r, ItemLink)]
    assert len(items) == 2 and again.remote_id == kept.remote_id


async def test_scores_read_back_zero_kept_one_token(
    lms: RunningSandbox, gradesync_lite: Gradesync, context: DestinationContext
) -> None:
    env = make_env(lms, gradesync_lite, context)
    lms.admin.reset_counters()
    item = await env.client.ensure_column(env.course, column(), None)
    a, b = env.learners
    await env.client.put_result(env.target(item, a), result(7.5, comment="good"), T0)
    receipt = await env.client.put_result(env.target(item, b), result(0.0), T0)
    assert receipt.payload["scoreGiven"] == 0.0  # a zero is a score
    await env.client.put_result(env.target(item, a), result(9.0), T0 + timedelta(seconds=1))
    back = {r.remote_person_id: r for r in await env.client.read_results(env.course, item)}
    assert back[a].score_given == 9.0 and back[a].comment is None  # omitted comment clears
    assert back[b].score_given == 0.0 and back[b].score_maximum == 10.0
    assert lms.admin.counters()["token"]["requests"] == 1  # cached per (platform, scopes)


async def test_expired_token_gets_a_new_one_once(
    lms: RunningSandbox, gradesync_lite: Gradesync, context: DestinationContext
) -> None:
    env = make_env(lms, gradesync_lite, context)
    item = await env.client.ensure_column(env.course, column(), None)
    lms.admin.reset_counters()
    lms.admin.expire_tokens(env.client.config["client_id"])
    await env.client.put_result(env.target(item, env.learners[0]), result(5.0), T0)
    counters = lms.admin.counters()
    assert counters["token"]["requests"] == 1
    assert counters["scores"]["status_401"] == 1 and counters["scores"]["status_200"] == 1


async def test_rejections_keep_the_platform_words(
    lms: RunningSandbox, gradesync_lite: Gradesync, context: DestinationContext
) -> None:
    env = make_env(lms, gradesync_lite, context)
    item = await env.client.ensure_column(env.course, column(), None)
    learner = env.learners[0]

    async def fail(target: ResultTarget, stamp: datetime = T0) -> RemoteFailure:
        with pytest.raises(RemoteFailure) as info:
            await env.client.put_result(target, result(5.0), stamp)
        return info.value

    stranger = await fail(env.target(item, unique("stranger-")))
    assert (stranger.failure, stranger.code, stranger.status) == (
        FailureClass.REJECTED,
        "unknown_user",
        422,
    )
    assert stranger.message == "User not found in course or is not a student" and stranger.remedy

    await env.client.put_result(env.target(item, learner), result(5.0), T0)
    item_id = int(item.remote_id.rsplit("/", 1)[1])
    lms.admin.instructor_grade(env.ctx, item_id, learner, 8.0)
    older = await fail(env.target(item, learner), T0 + timedelta(seconds=1))
    assert (older.code, older.status) == ("timestamp_older", 400)
    assert "before the last updated timestamp" in older.message

    lms.admin.patch_line_item(env.ctx, item_id, published=False)
    unpublished = await fail(env.target(item, learner), datetime.now(UTC) + timedelta(minutes=1))
    assert unpublished.code == "unpublished"
    lms.admin.patch_line_item(env.ctx, item_id, published=True)

    lms.admin.patch_course(env.ctx, concluded=True)
    concluded = await fail(env.target(item, learner), datetime.now(UTC) + timedelta(minutes=2))
    assert concluded.code == "course_concluded" and "concluded" in concluded.message
    lms.admin.patch_course(env.ctx, concluded=False)

    lms.admin.patch_line_item(
        env.ctx, item_id, allowed_attempts=2
    )  # generic: each score is an attempt
    await env.client.put_result(
        env.target(item, learner), result(6.0), datetime.now(UTC) + timedelta(minutes=3)
    )
    exceeded = await fail(env.target(item, learner), datetime.now(UTC) + timedelta(minutes=4))
    assert exceeded.code == "attempts_exceeded"

    lms.state.remove_line_item(lms.state.line_items[item_id])
    gone = await fail(env.target(item, learner), datetime.now(UTC) + timedelta(minutes=5))
    assert (gone.code, gone.status) == ("line_item_gone", 404)


async def test_transient_failures_are_retry_later_or_slow_down(
    lms: RunningSandbox, gradesync_lite: Gradesync, context: DestinationContext
) -> None:
    env = make_env(lms, gradesync_lite, context)
    item = await env.client.ensure_column(env.course, column(), None)
    target = env.target(item, env.learners[0])
    lms.admin.set_faults({"scores": {"script": ["error", "throttle", "reset"], "retry_after": 7}})
    try:
        outcomes = []
        for i in range(3):
            with pytest.raises(RemoteFailure) as info:
                await env.client.put_result(target, result(5.0), T0 + timedelta(seconds=i))
            outcomes.append((info.value.failure, info.value.code, info.value.retry_after))
    finally:
        lms.admin.clear_faults()
    assert outcomes == [
        (FailureClass.RETRY_LATER, "server_error", None),
        (FailureClass.SLOW_DOWN, "rate_limited", 7.0),
        (FailureClass.RETRY_LATER, "connection_failed", None),
    ]
    await env.client.put_result(target, result(5.0), T0 + timedelta(seconds=9))


async def test_missing_grade_scope_is_misconfigured(
    lms: RunningSandbox, gradesync_lite: Gradesync, context: DestinationContext
) -> None:
    score_only = ["https://purl.imsglobal.org/spec/lti-ags/scope/score"]
    env = make_env(lms, gradesync_lite, context, tool_scopes=score_only)
    with pytest.raises(RemoteFailure) as info:
        await env.client.ensure_column(env.course, column(), None)
    assert info.value.failure is FailureClass.MISCONFIGURED and info.value.code == "no_grade_scope"
    steps = {s.name: s for s in await env.client.check()}
    assert steps["token"].passed and not steps["scopes"].passed


async def test_canvas_query_string_extension_and_rate_limit(
    canvas: RunningSandbox, gradesync_lite: Gradesync, context: DestinationContext
) -> None:
    env = make_env(canvas, gradesync_lite, context, profile="canvas")
    item = await env.client.ensure_column(env.course, column(), None)
    assert item.remote_id.endswith("?tool=1")
    item_id = int(item.remote_id.split("?")[0].rsplit("/", 1)[1])
    canvas.admin.patch_line_item(env.ctx, item_id, allowed_attempts=1)
    target = env.target(item, env.learners[0])
    for i in range(3):  # updates are not new attempts: no "maximum attempts" rejection
        await env.client.put_result(target, result(4.0 + i), T0 + timedelta(seconds=i))
    record = canvas.state.line_items[item_id].scores[env.learners[0]]
    assert (record.score_given, record.attempts) == (6.0, 0)
    canvas.admin.set_faults({"scores": {"rate_limit_per_second": 0.001, "rate_limit_burst": 1}})
    try:
        await env.client.put_result(target, result(7.0), T0 + timedelta(seconds=5))
        with pytest.raises(RemoteFailure) as info:
            await env.client.put_result(target, result(8.0), T0 + timedelta(seconds=6))
    finally:
        canvas.admin.clear_faults()
    assert (info.value.failure, info.value.status) == (FailureClass.SLOW_DOWN, 403)
    assert "Rate Limit Exceeded" in info.value.message


async def test_moodle_refuses_equal_timestamps(
    moodle: RunningSandbox, gradesync_lite: Gradesync, context: DestinationContext
) -> None:
    env = make_env(moodle, gradesync_lite, context, profile="moodle")
    assert env.client.timestamp_step == timedelta(seconds=1)
    assert env.client.capabilities.pending_results is False
    item = await env.client.ensure_column(env.course, column(), None)
    target = env.target(item, env.learners[0])
    await env.client.put_result(target, result(5.0), T0)
    with pytest.raises(RemoteFailure) as info:
        await env.client.put_result(target, result(6.0), T0)
    assert (info.value.code, info.value.status) == ("timestamp_older", 409)
