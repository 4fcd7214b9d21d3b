"""Values the API accepts at the edge of what numbers and dates can hold are worked out into
something a person can read, never into a grade of "inf" or a computation that fails: each
test posts the exact values a courseware sent, then works the grades out and delivers them."""

from __future__ import annotations

import asyncio
from typing import Any

from gradesync.domain.capabilities import Capabilities
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory, add_destination
from tests.support.api import ROSTER, ApiEnv, Caller, attempt

ITEM = "https://lms/courses/1/items/{}"


def _connected(api: ApiEnv, tenant: str) -> tuple[Caller, DoubleFactory, Engine]:
    """The tenant with the roster, an LMS that takes extra credit linked to its course (both
    learners launched), and an engine delivering to it."""
    admin = Caller(api.client, api.tenant(tenant, "admin"))
    assert admin.post("/ingest", json=ROSTER).status_code == 202
    add_destination(
        api.db.uow,
        tenant,
        "lms",
        links={"c1": "https://lms/courses/1"},
        people={"p1": "sub-p1", "p2": "sub-p2"},
    )
    factory = DoubleFactory()
    factory.remote("lms").capabilities = Capabilities(extra_credit=True)
    return admin, factory, Engine(api.db.uow, api.runtime.clock, factory)


def _settle(engine: Engine) -> float | None:
    """Work every grade out and deliver it; returns the seconds to the next timed key (a
    past-due zero to come), None when there is none."""

    async def work() -> float | None:
        try:
            await engine.process_dirty()
            await engine.deliver_due()
            return await engine.next_timer_in()
        finally:
            await engine.aclose()

    return asyncio.run(work())


def _cell(admin: Caller, person: str, activity: str) -> dict[str, Any]:
    cells = admin.get(f"/people/{person}/grades").json()["destinations"]["lms"]
    [cell] = [c for c in cells if c["activity_id"] == activity]
    return cell  # type: ignore[no-any-return]


def test_a_score_rescaled_past_the_largest_number_is_not_sent_and_says_why(
    api: ApiEnv,
) -> None:
    admin, factory, engine = _connected(api, "school")
    policy = {"extra_credit": "pass_through", "attempt_selection": "average"}
    assert admin.patch("/activities/a1/policy", json=policy).status_code == 200
    # 1e10 of 1e-300 is no grade at all: refused, naming the field and the rule
    absurd = attempt("big-1", 1e10, score_maximum=1e-300, completed_at="2026-12-05T06:39:00Z")
    r = admin.post("/attempts", json=absurd)
    assert r.status_code == 422
    assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [
        ("score_maximum", "score_ratio")
    ]
    # 1e308 of 1 is a score, but rescaled to 10 points it passes the largest number
    big = attempt("big-1", 1e308, score_maximum=1, completed_at="2026-12-05T06:39:00Z")
    assert admin.post("/attempts", json=big).status_code == 202
    assert admin.post("/attempts", json=attempt("norm-1", 7, person_id="p2")).status_code == 202
    _settle(engine)

    remote = factory.remote("lms")
    assert remote.score_of(ITEM.format("a1"), "sub-p2") == 7.0
    assert remote.score_of(ITEM.format("a1"), "sub-p1") is None
    cell = _cell(admin, "p1", "a1")
    assert cell["state"] == "skipped" and cell["reason_code"] == "score_out_of_range"
    assert "big-1" in cell["reason_text"]
    r = admin.get("/activities/a1/learners/p1/diagnosis")
    assert r.status_code == 200
    counted = next(c for c in r.json()["checks"] if c["code"] == "counted_attempt")
    assert counted["passed"] is False and "largest number" in counted["evidence"]
    assert "inf" not in counted["evidence"] and "Sent:" not in counted["evidence"]
    assert counted["remedy"]


def test_a_huge_score_is_capped_under_the_default_policy(api: ApiEnv) -> None:
    admin, factory, engine = _connected(api, "capped")
    huge = attempt("big-3", 1e308, score_maximum=1)
    assert admin.post("/attempts", json=huge).status_code == 202
    _settle(engine)
    assert factory.remote("lms").score_of(ITEM.format("a1"), "sub-p1") == 10.0


def test_an_activity_due_at_the_end_of_year_9999_with_grace_is_never_past_due(
    api: ApiEnv,
) -> None:
    admin, factory, engine = _connected(api, "far-school")
    far = {
        "course_id": "c1",
        "title": "Far",
        "points_possible": 10,
        "due_at": "9999-12-31T00:00:00Z",
        "policy": {"past_due_zeros": "on", "grace_period_minutes": 527040},
    }
    assert admin.put("/activities/far", json=far).status_code == 200
    late = attempt("far-1", 8, activity_id="far", person_id="p2")
    assert admin.post("/attempts", json=late).status_code == 202
    assert admin.post("/attempts", json=attempt("norm-1", 7, person_id="p2")).status_code == 202
    # nothing to wake up for: due + grace is after the last moment a date can hold
    assert _settle(engine) is None

    remote = factory.remote("lms")
    assert remote.score_of(ITEM.format("a1"), "sub-p2") == 7.0
    assert remote.score_of(ITEM.format("far"), "sub-p2") == 8.0
    assert remote.score_of(ITEM.format("far"), "sub-p1") is None  # never a past-due zero
    cell = _cell(admin, "p1", "far")
    assert cell["state"] == "skipped" and cell["reason_code"] == "no_attempt_yet"
    r = admin.get("/activities/far/learners/p1/diagnosis")
    assert r.status_code == 200
    assert {c["code"] for c in r.json()["checks"]} >= {"counted_attempt", "delivery"}


def test_an_extension_to_the_end_of_year_9999_within_the_grace_period_is_never_past_due(
    api: ApiEnv,
) -> None:
    admin, factory, engine = _connected(api, "ext-school")
    zeros = {"past_due_zeros": "on", "grace_period_minutes": 60}
    assert admin.patch("/tenant/policy", json=zeros).status_code == 200
    extension = {"due_at": "9999-12-31T23:30:00Z"}
    assert admin.put("/activities/a1/overrides/p1", json=extension).status_code == 200
    normal = attempt("norm-1", 17, activity_id="a2", person_id="p2", score_maximum=20)
    assert admin.post("/attempts", json=normal).status_code == 202
    assert _settle(engine) is None

    assert factory.remote("lms").score_of(ITEM.format("a2"), "sub-p2") == 17.0
    cell = _cell(admin, "p1", "a1")
    assert cell["state"] == "skipped" and cell["reason_code"] == "no_attempt_yet"
