"""The console's course page says why an activity has no column from what the destination
takes as the engine's client for it says, so it says what the engine does."""

from __future__ import annotations

import re
from html import unescape

from gradesync.testing import unique
from tests.diagnostics.conftest import World


def test_the_course_page_says_no_column_where_an_lms_takes_whole_points_only(
    world: World,
) -> None:
    """An LMS whose profile takes whole points only (Open edX) gets no column for an activity
    worth 7.3333 points: no whole factor up to 100 makes it whole. The course page worked its
    columns out over the capabilities of no LMS in particular and said "Not created yet",
    as if the first grade would create it."""
    learner, teacher = unique("odd-"), unique("teacher-")
    world.register(profile="openedx")
    odd = {"id": "a1", "title": "Odd quiz", "points_possible": 7.3333}
    world.roster(activities=[odd, {"id": "a0", "title": "Lab", "points_possible": 10}])
    ctx = world.lms_course([learner], [teacher])
    # deep linking refuses the odd quiz at once (`deep_linking.choose`): the course is
    # connected through the other activity
    (link,) = world.deep_link(teacher, ctx, activities=("a0",))
    assert world.launch(learner, ctx, link).status_code == 200
    world.attempt(learner, 5)
    row = world.wait_state(learner, "skipped", reason="fractional_points")
    assert all(i.resource_id != "a1" for i in world.lms.state.courses[ctx].line_items.values())

    with world.console() as browser:
        page = browser.get("/console/courses/c1", params={"destination": "lms"})
    assert page.status_code == 200, page.text
    rows = re.findall(r"<tr>.*?</tr>", page.text, re.S)
    (quiz,) = [r for r in rows if 'aria-label="Sync Odd quiz"' in r]
    said = " ".join(unescape(re.sub(r"<[^>]+>", " ", quiz)).split())
    assert "Not created yet" not in said, said
    assert f"Not created {row['reason_text']}" in said, said
