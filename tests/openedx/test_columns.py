"""Column changes against Open edX's own AGS views: renames and new points reach the line
item (updates send no null fields, which Open edX refuses), an existing column without a
resource link is tied to the component, a remaster resends without a second column, and a
platform registered again under another id keeps writing to the component's column."""

from __future__ import annotations

from dataclasses import replace

import httpx

from gradesync.adapters.destinations.ags import AgsClient
from gradesync.domain.policy import Column
from gradesync.services.destination import ungated
from tests.openedx.conftest import (
    OpenEdx,
    custom_parameters,
    open_course,
    register_platform,
    unique,
)
from tests.support.served import Served


def test_rename_new_points_and_remaster(openedx: OpenEdx, served: Served) -> None:
    course = open_course(openedx, served, ("ann", "bob"), ("lab", "Lab 1", 10))
    ann, bob = course.emails
    lab = course.place("lab", weight=10)
    for learner in (ann, bob):
        assert openedx.launch(learner, course.key, lab.usage_key).status_code == 200
    course.attempt("e1", "lab", ann, 7, 10, minute=1)
    course.attempt("e2", "lab", bob, 5, 10, minute=1)
    course.wait(
        lambda: (
            course.grade(ann, lab.usage_key) == (7.0, 10.0)
            and course.grade(bob, lab.usage_key) == (5.0, 10.0)
        ),
        "both grades",
    )

    course.activities(("lab", "Lab 1 (final)", 20))  # renamed, and now worth 20 points
    run = served.run("resync", course.gs_course)
    assert run["outcome"] == "succeeded", run
    (item,) = course.line_items(lab)
    assert (item["label"], item["score_maximum"]) == ("Lab 1 (final)", 20)
    assert item["scores"][-1]["score_maximum"] == 20.0
    course.wait(lambda: course.grade(ann, lab.usage_key) == (7.0, 10.0), "ann's grade on 20 points")
    assert course.state(ann, lab.platform_id, "lab")["desired"]["score_given"] == 14.0

    before = course.publishes(ann), course.publishes(bob)
    run = served.run("remaster", course.gs_course)
    assert run["outcome"] == "succeeded", run
    assert (course.publishes(ann), course.publishes(bob)) == (before[0] + 1, before[1] + 1)
    assert course.grade(ann, lab.usage_key) == (7.0, 10.0)
    assert course.grade(bob, lab.usage_key) == (5.0, 10.0)
    assert len(course.line_items(lab)) == 1  # never a second column


async def test_an_unlinked_column_is_linked_on_the_next_run(
    openedx: OpenEdx, served: Served
) -> None:
    course = open_course(openedx, served, ("ann",), ("lab", "Lab 1", 10))
    (ann,) = course.emails
    lab = course.place("lab", weight=10)
    assert openedx.launch(ann, course.key, lab.usage_key).status_code == 200
    # A column already in Open edX without a resource link, as a client that did not send
    # one made it: Open edX stores its scores and never counts them.
    with served.runtime.db.uow() as uow:
        platform = uow.destinations.get(served.tenant, lab.platform_id)
        course_link = uow.links.course(served.tenant, lab.platform_id, course.gs_course)
    assert platform is not None and course_link is not None
    async with httpx.AsyncClient() as http:
        context = served.runtime.adapter_context(http)
        unlinked = AgsClient(replace(platform, profile="generic"), context)
        await unlinked.ensure_column(course_link, Column("Lab 1", 10, None, None, "lab"), None)
    (item,) = course.line_items(lab)
    assert item["resource_link_id"] is None

    course.attempt("e1", "lab", ann, 8, 10, minute=1)
    course.wait(lambda: course.grade(ann, lab.usage_key) == (8.0, 10.0), "the grade, counted")
    (item,) = course.line_items(lab)  # the same column, now tied to the component
    assert item["resource_link_id"] == lab.usage_key
    course.delivered(ann, lab.platform_id, "lab")


def test_a_column_that_cannot_count_is_named_and_a_launch_lets_its_grades_out(
    openedx: OpenEdx, served: Served
) -> None:
    """The author forgot the activity in the component's custom parameters: launches tell
    gradesync nothing of the activity's LTI link, so no column may be made (it could never
    count). The grades wait with the reason, the diagnosis names the column, and once the
    component names the activity, one launch lets every learner's grade out."""
    course = open_course(openedx, served, ("ann", "bob"), ("lab", "Lab 1", 10))
    ann, bob = course.emails
    lab = course.place(None, weight=10)
    for learner in (ann, bob):
        assert openedx.launch(learner, course.key, lab.usage_key).status_code == 200
    course.attempt("e1", "lab", ann, 6, 10, minute=1)
    course.attempt("e2", "lab", bob, 8, 10, minute=1)
    for learner in (ann, bob):
        course.wait(
            lambda learner=learner: (
                course.state(learner, lab.platform_id, "lab")["reason_code"] == "no_resource_link"
            ),
            "the reason the grade waits",
        )
    assert course.line_items(lab) == []
    diagnosis = served.ok("GET", "/activities/lab/diagnosis")
    (column,) = [
        c
        for c in diagnosis["checks"]
        if c["code"] == "column_linked" and c["destination_id"] == lab.platform_id
    ]
    assert not column["passed"], column
    assert "LTI link" in column["evidence"] and "Open the activity once" in column["remedy"]

    openedx.edit_block(lab.usage_key, custom_parameters=custom_parameters(course.gs_course, "lab"))
    assert openedx.launch(ann, course.key, lab.usage_key).status_code == 200
    course.wait(
        lambda: (
            course.grade(ann, lab.usage_key) == (6.0, 10.0)
            and course.grade(bob, lab.usage_key) == (8.0, 10.0)
        ),
        "both grades, counted",
    )
    (item,) = course.line_items(lab)
    assert item["resource_link_id"] == lab.usage_key


async def test_a_grade_on_a_column_open_edx_does_not_count_is_not_delivered(
    openedx: OpenEdx, served: Served
) -> None:
    """gradesync knows a column for the activity that is not tied to the component (made by
    a client that sent no resource link), and launches do not name the activity: Open edX
    stores the score sent to it and never counts it. The run's verifying stage says so: the
    grade is not delivered but refused with the reason, named in the run's counts and
    message; once a launch names the activity, the column is tied and the grade counts."""
    course = open_course(openedx, served, ("ann",), ("lab", "Lab 1", 10))
    (ann,) = course.emails
    lab = course.place(None, weight=10)
    assert openedx.launch(ann, course.key, lab.usage_key).status_code == 200
    with served.runtime.db.uow() as uow:
        platform = uow.destinations.get(served.tenant, lab.platform_id)
        course_link = uow.links.course(served.tenant, lab.platform_id, course.gs_course)
    assert platform is not None and course_link is not None
    async with httpx.AsyncClient() as http:
        context = served.runtime.adapter_context(http)
        generic = AgsClient(replace(platform, profile="generic"), context)
        made = await generic.ensure_column(
            course_link, Column("Lab 1", 10, None, None, "lab"), None
        )
    with served.runtime.db.uow() as uow:
        uow.links.save_item(made)
        uow.commit()

    course.attempt("e1", "lab", ann, 8, 10, minute=1)
    course.wait(lambda: course.line_items(lab)[0]["scores"], "the score, stored by Open edX")
    run = served.run("resync", course.gs_course)
    assert run["counts"]["uncounted"] == 1, run
    assert run["outcome"] != "succeeded" and "not counted by the LMS" in run["message"], run
    state = course.state(ann, lab.platform_id, "lab")
    assert (state["state"], state["reason_code"]) == ("rejected", "no_resource_link"), state
    assert course.grade(ann, lab.usage_key) is None  # Open edX never published it

    openedx.edit_block(lab.usage_key, custom_parameters=custom_parameters(course.gs_course, "lab"))
    assert openedx.launch(ann, course.key, lab.usage_key).status_code == 200
    course.wait(lambda: course.grade(ann, lab.usage_key) == (8.0, 10.0), "the grade, counted")
    (item,) = course.line_items(lab)
    assert item["resource_link_id"] == lab.usage_key
    run = served.run("resync", course.gs_course)
    assert run["outcome"] == "succeeded" and run["counts"]["uncounted"] == 0, run


async def test_a_platform_registered_again_under_another_id_keeps_the_column(
    openedx: OpenEdx, served: Served
) -> None:
    course = open_course(openedx, served, ("ann",), ("lab", "Lab 1", 10))
    (ann,) = course.emails
    lab = course.place("lab", weight=10)
    assert openedx.launch(ann, course.key, lab.usage_key).status_code == 200
    course.attempt("e1", "lab", ann, 7, 10, minute=1)
    course.wait(lambda: course.grade(ann, lab.usage_key) == (7.0, 10.0), "the first grade")
    (first,) = course.line_items(lab)

    # the component's registration deleted in gradesync and added again under another id
    deleted = served.api.delete(f"/destinations/{lab.platform_id}")
    assert deleted.status_code == 204, deleted.text
    again = unique("openedx-")
    register_platform(openedx, served, again, lab.info)
    assert openedx.launch(ann, course.key, lab.usage_key).status_code == 200
    course.attempt("e2", "lab", ann, 9, 10, minute=2)
    course.wait(lambda: course.grade(ann, lab.usage_key) == (9.0, 10.0), "the new grade, counted")
    (item,) = course.line_items(lab)  # the same column, no second one
    assert item["resource_link_id"] == lab.usage_key and item["label"] == first["label"]

    # Open edX filters its line items by tag (django-filter): the new
    # registration finds that column as its own, and nothing for an activity it never had
    with served.runtime.db.uow() as uow:
        platform = uow.destinations.get(served.tenant, again)
        course_link = uow.links.course(served.tenant, again, course.gs_course)
        item_link = uow.links.item(served.tenant, again, "lab")
    assert platform is not None and course_link is not None and item_link is not None
    async with httpx.AsyncClient() as http:
        client = AgsClient(platform, served.runtime.adapter_context(http))
        found = await client.find_columns(
            course_link.remote_id, ["lab", "quiz"], each_request=ungated
        )
        assert found == {"lab": item_link.remote_id}
