"""The OneRoster REST adapter against the sandbox SIS over real HTTP."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from gradesync.adapters.destinations import http_pool
from gradesync.adapters.destinations.http_fast import json_content
from gradesync.adapters.destinations.oneroster import OneRosterClient, build
from gradesync.adapters.destinations.oneroster_errors import unknown_object
from gradesync.adapters.destinations.registry import DestinationContext, build_client
from gradesync.adapters.outbound_http import SystemResolver
from gradesync.domain.model import Course, CourseLink, ItemLink, PersonLink
from gradesync.domain.policy import Column, DesiredResult
from gradesync.sandbox.config import SisStudentSeed
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services.destination import (
    LINE_ITEM_GONE,
    FailureClass,
    RemoteFailure,
    ResultTarget,
)
from gradesync.services.outbound import LOOPBACK_NETWORKS, OutboundGuard, OutboundPolicy
from tests.support.gates import WatchingGate

from .conftest import CLIENT_ID, Spec, sis_destination

DUE = datetime(2025, 3, 14, 23, 59, tzinfo=UTC)
WHEN = datetime(2025, 3, 15, 10, 0, tzinfo=UTC)


def course_link(**data: Any) -> CourseLink:
    base = {"school": "sch-1", "term_start": "2025-01-06", "term_end": "2025-06-20"}
    return CourseLink("t1", "sis", "c1", "cls-1", {**base, **data})


def selected(activity_id: str = "a1") -> ItemLink:
    return ItemLink("t1", "sis", activity_id, "", data={"sync_to_sis": True})


def column(title: str = "Quiz 1", category: str | None = "cat-quiz", **kw: Any) -> Column:
    return Column(
        title=title,
        score_maximum=kw.pop("score_maximum", 10.0),
        due_at=kw.pop("due_at", DUE),
        category=category,
        activity_id=kw.pop("activity_id", "a1"),
    )


def desired(score: float | None = 8.0, **kw: Any) -> DesiredResult:
    values: dict[str, Any] = {
        "score_given": score,
        "score_maximum": 10.0,
        "grading_progress": "FullyGraded",
        "activity_progress": "Completed",
        "comment": None,
        "late": False,
        "missing": False,
        "excused": False,
        "scored_at": WHEN,
        "basis": "test",
        "attempt_event_id": "e1",
    }
    values.update(kw)
    return DesiredResult(**values)


def client(sis: RunningSandbox, context: DestinationContext, **config: Any) -> OneRosterClient:
    return build(sis_destination(sis.base_url, **config), context)


def sis_items(sis: RunningSandbox, class_id: str = "cls-1") -> list[dict[str, Any]]:
    return [
        o.data
        for o in sis.state.sis_line_items.values()
        if o.data["class"]["sourcedId"] == class_id
    ]


def sis_results(sis: RunningSandbox) -> list[dict[str, Any]]:
    return [o.data for o in sis.state.sis_results.values()]


async def raw_token(sis: RunningSandbox) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            sis.base_url + "/ims/oneroster/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(CLIENT_ID, "s3cret-value"),
        )
        return str(response.json()["access_token"])


async def test_registry_builds_the_oneroster_client(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    built = build_client(sis_destination(sis.base_url), context)
    assert isinstance(built, OneRosterClient)
    caps = built.capabilities
    assert caps.statuses and caps.comments and caps.name_max_length == 30


async def test_check_gets_a_token_once_and_lists_categories(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    token_calls: list[str] = []

    async def count(request: httpx.Request) -> None:
        if request.url.path.endswith("/oauth2/token"):
            token_calls.append(request.url.path)

    context.http.event_hooks["request"].append(count)
    c = client(sis, context)
    steps = await c.check()
    assert [s.name for s in steps] == ["token", "scopes", "categories"]
    assert all(s.passed for s in steps), steps
    assert "Homework" in steps[2].evidence
    await c.check()
    await c.ensure_column(course_link(), column(), selected())
    assert len(token_calls) == 1  # cached per (destination, scopes), not one per request


async def test_bad_secret_is_misconfigured(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    dest = sis_destination(sis.base_url)
    c = build(replace(dest, secret={"client_secret": "wrong"}), context)
    with pytest.raises(RemoteFailure) as info:
        await c.categories()
    assert info.value.failure is FailureClass.MISCONFIGURED
    assert info.value.code == "bad_credentials"
    steps = await c.check()
    assert not steps[0].passed and steps[0].remedy


async def test_a_changed_secret_is_used_at_once_not_after_the_cached_token(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    """The process keeps tokens across clients (an engine rebuilds its client when the
    settings change): a client built from changed credentials asks for its own token,
    rather than going on with the one the old credentials got until it expires. The same
    credentials keep theirs."""
    tokens: list[str] = []

    async def count(request: httpx.Request) -> None:
        if request.url.path.endswith("/oauth2/token"):
            tokens.append(request.url.path)

    context.http.event_hooks["request"].append(count)
    dest = sis_destination(sis.base_url)
    await build(dest, context).categories()
    await build(replace(dest, name="Renamed"), context).categories()
    assert len(tokens) == 1
    wrong = build(replace(dest, secret={"client_secret": "changed-to-a-wrong-one"}), context)
    with pytest.raises(RemoteFailure) as info:
        await wrong.categories()
    assert info.value.code == "bad_credentials" and len(tokens) == 2


async def test_alignment_by_id_creates_line_item_with_that_category(
    sis: RunningSandbox, context: DestinationContext, spec: Spec
) -> None:
    c = client(sis, context, category_match="id")
    link = await c.ensure_column(course_link(), column(category="cat-quiz"), selected())
    [item] = sis_items(sis)
    assert item["sourcedId"] == link.remote_id and link.remote_id.startswith("gs-li-")
    assert item["category"]["sourcedId"] == "cat-quiz"
    assert item["title"] == "Quiz 1" and item["resultValueMax"] == 10.0
    assert item["dueDate"].startswith("2025-03-14T23:59:00")
    assert link.data["matched"] == {"cls-1": "created"} and link.details_hash
    assert spec.problems("SingleLineItemDType", {"lineItem": item}) == []


async def test_alignment_by_name_and_by_explicit_map(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    by_name = client(sis, context, category_match="name")
    link = await by_name.ensure_column(course_link(), column(category="Homework"), selected())
    assert link.data["category"] == "cat-hw"
    mapped = client(sis, context, category_match="name", category_map={"Tests": "cat-quiz"})
    link2 = await mapped.ensure_column(
        course_link(), column("Test 1", category="Tests", activity_id="a2"), selected("a2")
    )
    assert link2.data["category"] == "cat-quiz"
    # a per-course alignment wins over the destination's
    link3 = await mapped.ensure_column(
        course_link(category_map={"Tests": "cat-hw"}),
        column("Test 2", category="Tests", activity_id="a3"),
        selected("a3"),
    )
    assert link3.data["category"] == "cat-hw"


async def test_missing_category_lists_what_the_sis_has(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    for match, group in (("name", "Labs"), ("id", "cat-labs")):
        c = client(sis, context, category_match=match)
        with pytest.raises(RemoteFailure) as info:
            await c.ensure_column(course_link(), column(category=group), selected())
        failure = info.value
        assert failure.failure is FailureClass.REJECTED and failure.code == "category_missing"
        assert "'Homework' (id cat-hw)" in failure.message
        assert "'Quizzes' (id cat-quiz)" in failure.message
        assert group in failure.message and failure.remedy
    assert sis_items(sis) == []


async def test_category_created_only_when_the_profile_allows(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    c = client(sis, context, category_match="name", may_create_categories=True)
    link = await c.ensure_column(course_link(), column(category="Labs"), selected())
    created = sis.state.sis_categories[link.data["category"]].data
    assert created["title"] == "Labs" and created["sourcedId"].startswith("gs-cat-")


async def test_existing_item_with_same_title_and_due_is_adopted_with_its_results(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    token = await raw_token(sis)
    base = sis.base_url + "/ims/oneroster/gradebook/v1p2"
    ref = lambda kind, sid: {"href": f"{base}/{kind}/{sid}", "sourcedId": sid, "type": kind[:-1]}  # noqa: E731
    theirs = {
        "sourcedId": "sis-li-7",
        "status": "active",
        "dateLastModified": "2025-02-01T00:00:00Z",
        "title": "Quiz 1",
        "assignDate": "2025-02-01T00:00:00Z",
        "dueDate": "2025-03-14T23:59:00Z",
        "class": {"href": f"{base}/classes/cls-1", "sourcedId": "cls-1", "type": "class"},
        "school": {"href": f"{base}/orgs/sch-1", "sourcedId": "sch-1", "type": "org"},
        "category": {
            "href": f"{base}/categories/cat-hw",
            "sourcedId": "cat-hw",
            "type": "category",
        },
    }
    old_result = {
        "sourcedId": "sis-r-1",
        "status": "active",
        "dateLastModified": "2025-02-02T00:00:00Z",
        "lineItem": ref("lineItems", "sis-li-7"),
        "student": {"href": f"{base}/users/stu-1", "sourcedId": "stu-1", "type": "user"},
        "scoreStatus": "fully graded",
        "score": 3.0,
        "scoreDate": "2025-02-02",
    }
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        assert (
            await http.put(f"{base}/lineItems/sis-li-7", json={"lineItem": theirs})
        ).status_code == 201
        assert (
            await http.put(f"{base}/results/sis-r-1", json={"result": old_result})
        ).status_code == 201
    c = client(sis, context)
    link = await c.ensure_column(course_link(), column(category="cat-quiz"), selected())
    assert link.remote_id == "sis-li-7" and link.data["matched"] == {"cls-1": "title_due"}
    [item] = sis_items(sis)  # matched, not duplicated; details now ours
    assert item["category"]["sourcedId"] == "cat-quiz"
    target = ResultTarget(course_link(), link, PersonLink("t1", "sis", "p1", "stu-1"))
    await c.put_result(target, desired(9.0), WHEN)
    [result] = sis_results(sis)  # the student's existing result was updated, not doubled
    assert result["sourcedId"] == "sis-r-1" and result["score"] == 9.0
    # a second ensure with the link we kept reuses everything (no lookups, no duplicates)
    again = await c.ensure_column(course_link(), column(category="cat-quiz"), link)
    assert again == link and len(sis_items(sis)) == 1


async def test_our_own_sourced_id_is_found_not_recreated(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    c = client(sis, context)
    first = await c.ensure_column(course_link(), column(), selected())
    # the link was lost (e.g. an admin reset): the item is found by our stable sourcedId
    second = await c.ensure_column(course_link(), column(), selected())
    assert second.remote_id == first.remote_id and second.data["matched"] == {"cls-1": "ours"}
    assert len(sis_items(sis)) == 1


async def test_another_courses_line_item_in_the_same_class_is_not_adopted(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    # two schools' tenants map their courses to one district class, with the same activity
    # id, title and due date: each gets its own line item, and neither overwrites the other
    first = await client(sis, context).ensure_column(course_link(), column(), selected())
    other = replace(sis_destination(sis.base_url), tenant_id="t2")
    second_client = build(other, context)
    theirs = await second_client.ensure_column(
        replace(course_link(), tenant_id="t2", course_id="c9"),
        column(),
        replace(selected(), tenant_id="t2"),
    )
    assert theirs.remote_id != first.remote_id
    assert theirs.data["matched"] == {"cls-1": "created"}
    assert sorted(i["sourcedId"] for i in sis_items(sis)) == sorted(
        [first.remote_id, theirs.remote_id]
    )
    for tenant, link, score in (("t1", first, 10.0), ("t2", theirs, 8.0)):
        target = ResultTarget(
            replace(course_link(), tenant_id=tenant),
            link,
            PersonLink(tenant, "sis", "p1", "stu-1"),
        )
        await (second_client if tenant == "t2" else client(sis, context)).put_result(
            target, desired(score), WHEN
        )
    scores = {r["lineItem"]["sourcedId"]: r["score"] for r in sis_results(sis)}
    assert scores == {first.remote_id: 10.0, theirs.remote_id: 8.0}


async def test_a_connection_added_again_under_another_id_writes_its_old_line_item(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    first = await client(sis, context).ensure_column(course_link(), column(), selected())
    target = ResultTarget(course_link(), first, PersonLink("t1", "sis", "p1", "stu-1"))
    await client(sis, context).put_result(target, desired(7.0), WHEN)

    # the connection deleted (its links with it) and added again as "sis-2"
    again = build(replace(sis_destination(sis.base_url), id="sis-2"), context)
    course = replace(course_link(), destination_id="sis-2")
    link = await again.ensure_column(course, column(), replace(selected(), destination_id="sis-2"))
    assert link.remote_id == first.remote_id and link.data["matched"] == {"cls-1": "ours"}
    person = PersonLink("t1", "sis-2", "p1", "stu-1")
    await again.put_result(ResultTarget(course, link, person), desired(9.0), WHEN)
    assert [i["sourcedId"] for i in sis_items(sis)] == [first.remote_id]  # one column
    [result] = sis_results(sis)  # the same result, updated
    assert (result["lineItem"]["sourcedId"], result["score"]) == (first.remote_id, 9.0)
    [item] = sis_items(sis)  # how it was known: whose it is, in OneRoster's extension object
    assert item["metadata"] == {"gradesync": {"installation": "", "tenant": "t1", "activity": "a1"}}

    # another activity of another tenant with the same title and due date is not it
    other = build(replace(sis_destination(sis.base_url), id="sis-3", tenant_id="t2"), context)
    theirs = await other.ensure_column(
        replace(course_link(), tenant_id="t2", destination_id="sis-3", course_id="c9"),
        column(),
        replace(selected(), tenant_id="t2", destination_id="sis-3"),
    )
    assert theirs.remote_id != first.remote_id and theirs.data["matched"] == {"cls-1": "created"}


HERE, ELSEWHERE = "https://grades.district.example", "https://grades.vendor.example"


async def test_another_installation_with_the_same_tenant_and_activity_ids_makes_its_own_item(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    here = build(sis_destination(sis.base_url), replace(context, installation=HERE))
    first = await here.ensure_column(course_link(), column(), selected())
    # another gradesync, whose tenant, course and activity happen to have the same ids,
    # passing back to the same class through its own connection
    there = build(
        replace(sis_destination(sis.base_url), id="sis-2"),
        replace(context, installation=ELSEWHERE),
    )
    theirs = await there.ensure_column(
        replace(course_link(), destination_id="sis-2"),
        column(),
        replace(selected(), destination_id="sis-2"),
    )
    assert theirs.remote_id != first.remote_id and theirs.data["matched"] == {"cls-1": "created"}
    owners = {i["sourcedId"]: i["metadata"]["gradesync"] for i in sis_items(sis)}
    assert owners == {
        first.remote_id: {"installation": HERE, "tenant": "t1", "activity": "a1"},
        theirs.remote_id: {"installation": ELSEWHERE, "tenant": "t1", "activity": "a1"},
    }


async def test_another_installation_whose_ids_are_all_the_same_is_refused_this_ones_item(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    """Two installations whose tenant, connection, activity and class ids coincide give the
    same sourcedId: the second is refused the first's line item, which it never writes."""
    here = build(sis_destination(sis.base_url), replace(context, installation=HERE))
    first = await here.ensure_column(course_link(), column(), selected())
    person = PersonLink("t1", "sis", "p1", "stu-1")
    await here.put_result(ResultTarget(course_link(), first, person), desired(7.0), WHEN)
    before = [dict(i) for i in sis_items(sis)]

    there = build(sis_destination(sis.base_url), replace(context, installation=ELSEWHERE))
    with pytest.raises(RemoteFailure) as refused:
        await there.ensure_column(course_link(), column(title="Quiz 1 (theirs)"), selected())
    failure = refused.value
    assert (failure.failure, failure.code) == (
        FailureClass.REJECTED,
        "line_item_of_another_installation",
    )
    assert f"another gradesync installation's ({HERE})" in failure.message, failure.message
    assert f"this installation ({ELSEWHERE}) does not write to it" in failure.message
    assert failure.fix is not None and (failure.fix.course, failure.fix.activity) == ("c1", "a1")
    assert failure.remedy is not None and "gradesync sis select sis a1" in failure.remedy
    assert sis_items(sis) == before  # its title, metadata and owner as the first wrote them
    [result] = sis_results(sis)
    assert (result["lineItem"]["sourcedId"], result["score"]) == (first.remote_id, 7.0)

    # the first still takes its own (its link made again), and so does an item that names
    # no installation (written before gradesync named it) or one deleted in the SIS
    again = await here.ensure_column(course_link(), column(), selected())
    assert again.remote_id == first.remote_id and again.data["matched"] == {"cls-1": "ours"}
    for metadata, status in (
        ({"gradesync": {"tenant": "t1", "activity": "a1"}}, "active"),
        ({"gradesync": {"installation": HERE, "tenant": "t1", "activity": "a1"}}, "tobedeleted"),
    ):
        sis.state.sis_line_items[first.remote_id].data.update(metadata=metadata, status=status)
        link = await there.ensure_column(course_link(), column(), selected())
        assert link.remote_id == first.remote_id and link.data["matched"] == {"cls-1": "ours"}
        owner = sis.state.sis_line_items[first.remote_id].data["metadata"]["gradesync"]
        assert owner["installation"] == ELSEWHERE  # written as the one taking it


async def test_an_item_written_before_items_named_their_installation_is_taken_only_by_its_own(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    """An item whose metadata names the tenant and activity alone was written by gradesync
    before it named the installation: it is this installation's only when its sourcedId is
    the one a connection the tenant has or had here gives it."""
    ours = replace(context, installation=HERE, connection_ids=lambda tenant: ["sis", "sis-old"])
    old = build(replace(sis_destination(sis.base_url), id="sis-old"), ours)
    first = await old.ensure_column(
        replace(course_link(), destination_id="sis-old"),
        column(),
        replace(selected(), destination_id="sis-old"),
    )
    # as gradesync wrote it then (the connection since deleted)
    sis.state.sis_line_items[first.remote_id].data["metadata"] = {
        "gradesync": {"tenant": "t1", "activity": "a1"}
    }

    # another installation with the same tenant and activity ids never had "sis-old"
    there = build(
        replace(sis_destination(sis.base_url), id="sis-9"),
        replace(context, installation=ELSEWHERE, connection_ids=lambda tenant: ["sis-9"]),
    )
    theirs = await there.ensure_column(
        replace(course_link(), destination_id="sis-9"),
        column(),
        replace(selected(), destination_id="sis-9"),
    )
    assert theirs.remote_id != first.remote_id and theirs.data["matched"] == {"cls-1": "created"}

    # this installation's connection added again as "sis" takes it, and names itself in it
    again = build(sis_destination(sis.base_url), ours)
    link = await again.ensure_column(course_link(), column(), selected())
    assert link.remote_id == first.remote_id and link.data["matched"] == {"cls-1": "ours"}
    owner = sis.state.sis_line_items[first.remote_id].data["metadata"]["gradesync"]
    assert owner == {"installation": HERE, "tenant": "t1", "activity": "a1"}


async def test_a_remaster_gives_a_course_sharing_another_courses_line_item_its_own(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    # Before gradesync adopted only the SIS's items, a second course in the class (here
    # tenant t2's) adopted the first's by title and due date and recorded it on its link.
    mine = await client(sis, context).ensure_column(course_link(), column(), selected())
    other = build(replace(sis_destination(sis.base_url), tenant_id="t2"), context)
    theirs_course = replace(course_link(), tenant_id="t2", course_id="c9")
    shared = replace(
        selected(),
        tenant_id="t2",
        remote_id=mine.remote_id,
        details_hash=mine.details_hash,
        data={
            **mine.data,
            "line_items": {"cls-1": mine.remote_id},
            "matched": {"cls-1": "title_due"},
            "result_ids": {mine.remote_id: {}},
        },
    )
    # kept while nothing is written again (as before: each course has it recorded)
    kept = await other.ensure_column(theirs_course, column(title="Quiz 1 (v2)"), shared)
    assert kept.remote_id == mine.remote_id and len(sis_items(sis)) == 1
    split = await other.ensure_column(theirs_course, column(), kept, force=True)
    assert split.remote_id != mine.remote_id and split.data["matched"] == {"cls-1": "created"}
    assert mine.remote_id not in split.data["result_ids"]
    for c, tenant, link, score in (
        (client(sis, context), "t1", mine, 10.0),
        (other, "t2", split, 6.0),
    ):
        target = ResultTarget(
            replace(course_link(), tenant_id=tenant), link, PersonLink(tenant, "sis", "p1", "stu-1")
        )
        await c.put_result(target, desired(score), WHEN)
    scores = {r["lineItem"]["sourcedId"]: r["score"] for r in sis_results(sis)}
    assert scores == {mine.remote_id: 10.0, split.remote_id: 6.0}


async def test_details_are_updated_only_when_they_change_or_on_remaster(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    puts: list[str] = []

    async def count(request: httpx.Request) -> None:
        if request.method == "PUT":
            puts.append(request.url.path)

    context.http.event_hooks["request"].append(count)
    c = client(sis, context)
    link = await c.ensure_column(course_link(), column(), selected())
    assert len(puts) == 1
    same = await c.ensure_column(course_link(), column(), link)
    assert len(puts) == 1 and same.details_hash == link.details_hash
    renamed = await c.ensure_column(
        course_link(), column("Quiz 1 (retake)", score_maximum=12.0), link
    )
    assert len(puts) == 2 and renamed.details_hash != link.details_hash
    [item] = sis_items(sis)
    assert item["title"] == "Quiz 1 (retake)" and item["resultValueMax"] == 12.0
    await c.ensure_column(
        course_link(), column("Quiz 1 (retake)", score_maximum=12.0), renamed, force=True
    )
    assert len(puts) == 3


async def test_results_carry_score_status_date_comment_and_flags(
    sis: RunningSandbox, context: DestinationContext, spec: Spec
) -> None:
    c = client(sis, context)
    course = course_link()
    link = await c.ensure_column(course, column(), selected())
    target = ResultTarget(course, link, PersonLink("t1", "sis", "p1", "stu-1"))
    receipt = await c.put_result(target, desired(7.5, comment="Good", late=True), WHEN)
    assert receipt.status == 201
    assert spec.problems("SingleResultDType", dict(receipt.payload)) == []
    [held] = sis_results(sis)
    assert held["score"] == 7.5 and held["scoreStatus"] == "fully graded"
    assert held["scoreDate"] == "2025-03-15" and held["comment"] == "Good"
    assert (held["late"], held["missing"], held["incomplete"]) == ("true", "false", "false")
    # a status-only change is a new full PUT; the comment is cleared when it goes away
    receipt = await c.put_result(target, desired(7.5, late=False), WHEN)
    assert receipt.status == 204
    [held] = sis_results(sis)
    assert held["late"] == "false" and "comment" not in held
    excused = await c.put_result(target, desired(None, excused=True), WHEN)
    [held] = sis_results(sis)
    assert held["scoreStatus"] == "exempt" and "score" not in held
    assert spec.problems("SingleResultDType", dict(excused.payload)) == []
    await c.put_result(target, desired(0.0, missing=True), WHEN)
    [held] = sis_results(sis)
    assert held["scoreStatus"] == "not submitted" and held["score"] == 0.0
    pending = await c.put_result(
        target, desired(None, grading_progress="Pending", activity_progress="Submitted"), WHEN
    )
    assert pending.payload["result"]["scoreStatus"] == "submitted"
    back = await c.read_results(course, link)
    assert [(r.remote_person_id, r.score_given) for r in back] == [("stu-1", None)]


async def test_a_results_put_takes_the_shared_clients_fast_path(sis: RunningSandbox) -> None:
    """The body goes as bytes encoded as httpx's `json=` would (the same bytes), so the PUT
    goes out on the shared client's fast path rather than through httpx's whole client."""
    through_httpx: list[str] = []
    outcomes: list[int | None] = []

    class Watching(http_pool.ObservingTransport):
        def observe(self, status: int | None) -> None:  # every request, on either path
            outcomes.append(status)

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            through_httpx.append(request.method)  # only httpx's own path comes here
            return await super().handle_async_request(request)

    guard = OutboundGuard(OutboundPolicy.allowing(LOOPBACK_NETWORKS), SystemResolver())
    async with http_pool.shared_client(
        timeout=httpx.Timeout(10.0), limits=httpx.Limits(), guard=guard, wrap=Watching
    ) as http:
        c = client(sis, DestinationContext(http=http))
        course = course_link()
        link = await c.ensure_column(course, column(), selected())
        target = ResultTarget(course, link, PersonLink("t1", "sis", "p1", "stu-1"))
        before = len(outcomes)
        receipt = await c.put_result(target, desired(7.5, comment="Très bien"), WHEN)
    assert receipt.status == 201 and sis_results(sis)[0]["comment"] == "Très bien"
    assert outcomes[before:] == [201] and "PUT" not in through_httpx
    payload = dict(receipt.payload)
    assert json_content(payload) == httpx.Request("PUT", sis.base_url, json=payload).content


async def test_sections_get_their_own_line_items_and_results(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    c = client(sis, context)
    course = course_link(sections={"sec-b": "cls-2"})
    link = await c.ensure_column(course, column(), selected())
    assert set(link.data["line_items"]) == {"cls-1", "cls-2"}
    assert len(sis_items(sis, "cls-1")) == 1 and len(sis_items(sis, "cls-2")) == 1
    person = PersonLink("t1", "sis", "p3", "stu-3", course_id="c1", data={"class": "cls-2"})
    await c.put_result(ResultTarget(course, link, person), desired(), WHEN)
    [held] = sis_results(sis)
    assert held["lineItem"]["sourcedId"] == link.data["line_items"]["cls-2"]


async def test_refusals_before_sending(sis: RunningSandbox, context: DestinationContext) -> None:
    c = client(sis, context)
    with pytest.raises(RemoteFailure) as info:
        await client(sis, context).ensure_column(
            course_link(), column(), ItemLink("t1", "sis", "a1", "", data={})
        )
    # not selected: skipped by design, not a refusal
    assert info.value.failure is FailureClass.NOT_SYNCED
    assert info.value.code == "not_selected_for_sis" and info.value.message
    cases = [
        (column(due_at=None), selected(), "due_date_required"),
        (column(due_at=datetime(2025, 9, 1, tzinfo=UTC)), selected(), "due_date_outside_term"),
    ]
    strict = client(sis, context, due_date_inside_term=True)
    for col, link, code in cases:
        with pytest.raises(RemoteFailure) as info:
            await strict.ensure_column(course_link(), col, link)
        assert info.value.failure is FailureClass.REJECTED and info.value.code == code
        assert info.value.message
    assert sis_items(sis) == []
    with pytest.raises(RemoteFailure) as info:
        await c.ensure_course(Course("t1", "c1", "Algebra"), None)
    assert info.value.code == "class_not_mapped" and "map-class" in (info.value.remedy or "")


async def test_remote_errors_are_classified(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    c = client(sis, context)
    course = course_link()
    link = await c.ensure_column(course, column(), selected())
    stranger = ResultTarget(course, link, PersonLink("t1", "sis", "px", "stu-3"))  # not in cls-1
    with pytest.raises(RemoteFailure) as info:
        await c.put_result(stranger, desired(), WHEN)
    assert info.value.failure is FailureClass.REJECTED and info.value.status == 422
    assert "not enrolled in class" in info.value.message

    target = ResultTarget(course, link, PersonLink("t1", "sis", "p1", "stu-1"))
    sis.admin.set_faults({"oneroster": {"script": ["throttle"], "retry_after": 7}})
    with pytest.raises(RemoteFailure) as info:
        await c.put_result(target, desired(), WHEN)
    assert info.value.failure is FailureClass.SLOW_DOWN and info.value.retry_after == 7
    sis.admin.set_faults({"oneroster": {"script": ["error"], "error_status": 502}})
    with pytest.raises(RemoteFailure) as info:
        await c.put_result(target, desired(), WHEN)
    assert info.value.failure is FailureClass.RETRY_LATER and info.value.status == 502
    # a connection reset: the code an LMS's gives (it was `connection_error` here, two labels
    # of gradesync_results_retried_total for one failure)
    sis.admin.set_faults({"oneroster": {"script": ["reset"]}})
    with pytest.raises(RemoteFailure) as info:
        await c.put_result(target, desired(), WHEN)
    assert (info.value.failure, info.value.code) == (FailureClass.RETRY_LATER, "connection_failed")
    sis.admin.clear_faults()

    # an expired token is replaced once, transparently
    fetched: list[str] = []

    async def count(request: httpx.Request) -> None:
        if request.url.path.endswith("/oauth2/token"):
            fetched.append(request.url.path)

    context.http.event_hooks["request"].append(count)
    sis.admin.expire_tokens(CLIENT_ID, service="oneroster")
    assert (await c.put_result(target, desired(), WHEN)).status in (201, 204)
    assert len(fetched) == 1


async def test_every_request_of_a_column_s_write_and_a_read_back_goes_within_the_gate(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    """A column's look-up, listing and write, and a read-back's pages, each enter the
    caller's gate (`Governor.further_requests`: a rate token per request after the first): the SIS
    answers no request made outside it. They all went on the caller's one token."""
    c = client(sis, context, category_match="id")
    await c.categories()  # the token fetched and the categories listed beforehand
    gate = WatchingGate()
    sis.admin.reset_counters()
    link = await c.ensure_column(
        course_link(), column(category="cat-quiz"), selected(), each_request=gate
    )
    written = sis.admin.counters()["oneroster"]["requests"]
    # our sourcedId asked for (404), the class's items of that title listed, the item PUT
    assert (gate.entered, written) == (3, 3)
    sis.admin.reset_counters()
    await c.read_results(course_link(), link, each_request=gate)
    assert gate.entered - 3 == sis.admin.counters()["oneroster"]["requests"] == 1


async def test_a_sis_unwell_mid_write_is_a_failure_inside_the_gate(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    """A later request of a column's write that the SIS answers 503 fails inside its gate:
    were it the breaker's probe (`Governor.further_requests`), it is recorded as failed, not as
    answered (which would close the breaker on a SIS that is down)."""
    c = client(sis, context, category_match="id")
    await c.categories()  # the token fetched and the categories listed beforehand
    gate = WatchingGate()
    # our sourcedId asked for (404, an answer), then the class's items listed: 503
    sis.admin.set_faults({"oneroster": {"script": ["ok", "error"]}})
    with pytest.raises(RemoteFailure) as failed:
        await c.ensure_column(
            course_link(), column(category="cat-quiz"), selected(), each_request=gate
        )
    assert failed.value.failure is FailureClass.RETRY_LATER
    assert gate.ended == [None, failed.value]


async def test_a_result_refused_for_its_lost_line_item_is_line_item_gone_within_the_gate(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    """The SIS lost the line item (restored from an older state): the refused result's line
    item is asked for within the send's gate (a rate token of its own), and the SIS's
    OneRoster "unknownobject" answer makes the refusal `line_item_gone`, retried per key."""
    c = client(sis, context)
    course = course_link()
    link = await c.ensure_column(course, column(), selected())
    target = ResultTarget(course, link, PersonLink("t1", "sis", "p1", "stu-1"))
    sis.state.sis_line_items.clear()  # the SIS restored from before it was written
    gate = WatchingGate()
    with pytest.raises(RemoteFailure) as info:
        await c.put_result(target, desired(), WHEN, each_request=gate)
    assert (info.value.failure, info.value.code) == (FailureClass.RETRY_LATER, LINE_ITEM_GONE)
    assert info.value.per_key
    assert gate.entered == 2  # the PUT, then the GET of its line item


def test_only_oneroster_s_unknownobject_404_says_a_line_item_is_gone() -> None:
    """A SIS that serves no GET of one line item answers 404 to each (a proxy's page, a
    route it lacks): without OneRoster's "unknownobject", a refused result stays refused,
    not taken for a lost line item."""

    def answer(status: int, body: Any) -> httpx.Response:
        return httpx.Response(status, json=body) if body is not None else httpx.Response(status)

    minor = {"imsx_codeMinorField": [{"imsx_codeMinorFieldName": "TargetEndSystem"}]}
    field_ = minor["imsx_codeMinorField"][0]
    unknown = {**field_, "imsx_codeMinorFieldValue": "unknownobject"}
    gone = {"imsx_codeMajor": "failure", "imsx_severity": "error"}
    assert unknown_object(
        answer(404, {**gone, "imsx_CodeMinor": {"imsx_codeMinorField": [unknown]}})
    )
    assert not unknown_object(answer(404, None))
    assert not unknown_object(httpx.Response(404, text="<html>Not Found</html>"))
    assert not unknown_object(answer(404, {"error": "no such route"}))
    other = {**field_, "imsx_codeMinorFieldValue": "invaliddata"}
    assert not unknown_object(
        answer(404, {**gone, "imsx_CodeMinor": {"imsx_codeMinorField": [other]}})
    )
    success = {**gone, "imsx_codeMajor": "success"}
    assert not unknown_object(
        answer(404, {**success, "imsx_CodeMinor": {"imsx_codeMinorField": [unknown]}})
    )
    assert not unknown_object(
        answer(200, {**gone, "imsx_CodeMinor": {"imsx_codeMinorField": [unknown]}})
    )


async def test_a_slow_down_on_the_line_items_look_up_is_a_slow_down(
    sis: RunningSandbox, context: DestinationContext
) -> None:
    """The look-up of a refused result's line item answered 429: the SIS asks to slow down,
    which the send raises as such rather than keeping the refusal."""
    c = client(sis, context)
    course = course_link()
    link = await c.ensure_column(course, column(), selected())
    stranger = ResultTarget(course, link, PersonLink("t1", "sis", "px", "stu-3"))  # not in cls-1
    sis.admin.set_faults({"oneroster": {"script": ["ok", "throttle"], "retry_after": 7}})
    with pytest.raises(RemoteFailure) as info:
        await c.put_result(stranger, desired(), WHEN)
    assert info.value.failure is FailureClass.SLOW_DOWN and info.value.retry_after == 7
    sis.admin.clear_faults()


async def test_a_student_s_sourced_id_of_any_characters_is_referred_to_by_a_valid_href(
    sis: RunningSandbox, context: DestinationContext, spec: Spec
) -> None:
    """A sourcedId may hold a space, a `#` or a `/` (gradesync refuses only control
    characters): its reference's href, an RFC 3986 URI, has it percent-encoded, as the
    request's path does. Put in as it was, a space made the href no URI, and a SIS that
    validates the document's `uri` format refused every result of that student; a `#` made
    the href name another object (what follows it a fragment)."""
    odd = ("stu 4", "stu#5/b")
    for student in odd:  # the sandbox's seed takes plain ids only: added as a SIS has them
        sis.state.add_sis_student(SisStudentSeed.model_construct(sourcedId=student, name="S"))
        sis.state.sis_classes["cls-1"].students.add(student)
    c = client(sis, context)
    link = await c.ensure_column(course_link(), column(), selected())
    refs = []
    for student in odd:
        target = ResultTarget(course_link(), link, PersonLink("t1", "sis", "p1", student))
        receipt = await c.put_result(target, desired(7.0), WHEN)
        assert spec.problems("SingleResultDType", dict(receipt.payload)) == []
        body = receipt.payload["result"]
        refs += [body["lineItem"], body["student"], body["class"]]
    assert sorted(r["student"]["sourcedId"] for r in sis_results(sis)) == sorted(odd)
    for ref in refs:
        href = urlsplit(ref["href"])
        assert not (href.query or href.fragment), ref
        assert unquote(href.path.rsplit("/", 1)[-1]) == ref["sourcedId"], ref
