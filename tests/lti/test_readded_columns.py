"""A connection deleted and added again under another id keeps writing to the LMS column it
made before: its links are new, the LMS's line items are not. Launched from the old link, the
launch names the column; placed again with Deep Linking (a new link), gradesync finds its
column in the LMS (resourceId and tag) and the new link reuses it instead of the LMS making a
second column for the same assignment."""

from __future__ import annotations

from typing import Any

from gradesync.sandbox.state import LineItem
from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import wait_for
from tests.lti.conftest import Browser, unique
from tests.support.served import (
    Served,
    courseware_course,
    deep_link,
    deep_link_answer,
    graded_learners,
    post_attempt,
    register_tool,
)


def _platform_again(lms: RunningSandbox, served: Served, client_id: str, new_id: str) -> None:
    """The LMS's registration deleted in gradesync and added again under `new_id` (the same
    client id and deployment: nothing changed in the LMS)."""
    deleted = served.api.delete("/destinations/lms")
    assert deleted.status_code == 204, deleted.text
    cfg = lms.admin.config()
    served.ok(
        "POST",
        "/platforms",
        json={
            "id": new_id,
            "issuer": cfg["issuer"],
            "client_id": client_id,
            "deployment_ids": ["d1"],
            "auth_login_url": cfg["authorization_url"],
            "auth_token_url": cfg["token_url"],
            "key_set_url": cfg["jwks_url"],
        },
    )


def _graded_course(
    lms: RunningSandbox, served: Served, browser: Browser
) -> tuple[str, str, str, str, LineItem]:
    """(client id, teacher, learner, LMS course, the column): activity a1 deep linked and
    graded 7 through the first connection."""
    client_id = register_tool(lms, served)["client_id"]
    teacher, learner, ctx = unique("teacher-"), unique("learner-"), unique("ctx-")
    lms.admin.add_course(id=ctx, learners=[learner], instructors=[teacher])
    courseware_course(served, {"id": learner})
    link = deep_link(lms, browser, client_id, teacher, ctx)
    launched = browser.launch(
        lms, client_id=client_id, user=learner, course=ctx, resource_link_id=link
    )
    assert launched.status_code == 200, launched.text
    post_attempt(served, "e1", learner, 7)
    (column,) = lms.state.courses[ctx].line_items.values()
    wait_for(lambda: column.scores.get(learner), "the first grade in the LMS")
    return client_id, teacher, learner, ctx, column


def _columns(lms: RunningSandbox, ctx: str) -> dict[str, dict[str, Any]]:
    return {
        str(i.id): {
            "resourceId": i.resource_id,
            "scores": {u: r.score_given for u, r in i.scores.items()},
        }
        for i in lms.state.courses[ctx].line_items.values()
    }


def _graded_again(
    lms: RunningSandbox,
    served: Served,
    browser: Browser,
    client_id: str,
    learner: str,
    ctx: str,
    column: LineItem,
    link: str | None,
) -> None:
    """The learner launches from `link`, a new attempt scores 9: it lands in `column`, the
    course's one column."""
    launched = browser.launch(
        lms, client_id=client_id, user=learner, course=ctx, resource_link_id=link
    )
    assert launched.status_code == 200, launched.text
    post_attempt(served, "e2", learner, 9)
    wait_for(lambda: column.scores[learner].score_given == 9.0, "the new grade in the column")
    assert _columns(lms, ctx) == {str(column.id): {"resourceId": "a1", "scores": {learner: 9.0}}}


def test_launched_from_the_old_link_the_new_connection_writes_the_old_column(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    client_id, _, learner, ctx, column = _graded_course(lms, served, browser)
    _platform_again(lms, served, client_id, "lms-again")
    _graded_again(lms, served, browser, client_id, learner, ctx, column, column.resource_link_id)


def test_placed_again_after_the_connection_is_added_again_the_link_reuses_the_column(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    client_id, teacher, learner, ctx, column = _graded_course(lms, served, browser)
    _platform_again(lms, served, client_id, "lms-again")
    # the teacher adds the activity to the course again (a new link, a new resource link id)
    answer, link = deep_link_answer(lms, browser, client_id, teacher, ctx)
    (item,) = answer["content_items"]
    assert "lineItem" not in item  # the LMS is not asked for a second column
    assert link != column.resource_link_id
    _graded_again(lms, served, browser, client_id, learner, ctx, column, link)


def test_an_lms_that_cannot_be_asked_makes_the_column_as_before(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    # no column anywhere yet, and the line items listing fails: the link carries a lineItem,
    # so the LMS makes the column at once as it always did
    client_id = register_tool(lms, served)["client_id"]
    teacher, ctx = unique("teacher-"), unique("ctx-")
    lms.admin.add_course(id=ctx, instructors=[teacher])
    courseware_course(served)
    picker = browser.launch(
        lms, client_id=client_id, user=teacher, course=ctx, message_type="LtiDeepLinkingRequest"
    ).json()
    lms.admin.reset_counters()
    lms.admin.set_faults({"lineitems": {"error_rate": 1.0}})
    try:
        answer = browser.post(
            picker["respond_url"],
            {"session": picker["session"], "course_id": "c1", "activity_ids": ["a1"]},
        ).json()
        counters = lms.admin.counters()["lineitems"]
    finally:
        lms.admin.clear_faults()
    assert counters.get("error") == 1, counters  # it was asked, and failed
    (item,) = answer["content_items"]
    assert item["lineItem"]["resourceId"] == "a1"


def test_a_column_deleted_in_the_lms_is_made_again_with_every_grade_it_held(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    """A teacher deletes the column in the LMS: the next grade's score POST is refused 404
    (`line_item_gone`). The column is made again, the refused grade goes to it once it is,
    and so does every grade delivered to the column deleted, not only the later ones."""
    (first, second), ctx, column = graded_learners(lms, served, browser, 2)
    lms.state.remove_line_item(column)  # deleted by the teacher
    post_attempt(served, "e9", second, 9)

    def made_again() -> LineItem | None:
        items = list(lms.state.courses[ctx].line_items.values())
        if len(items) != 1 or len(items[0].scores) != 2:
            return None
        return items[0]

    again = wait_for(made_again, "the column made again, holding both grades")
    assert again.id != column.id and again.resource_id == "a1"
    assert {u: r.score_given for u, r in again.scores.items()} == {first: 6.0, second: 9.0}
