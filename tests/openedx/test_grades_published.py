"""gradesync against Open edX's own LTI consumer (lti-consumer-xblock): a course author
places gradesync in a course as an LTI 1.3 component with programmatic AGS, learners launch
it, and the grades gradesync sends must be the ones Open edX publishes to its gradebook."""

from __future__ import annotations

from dataclasses import replace

from gradesync.adapters.destinations.ags import DEFAULT_SCOPES, SCOPE_SCORE
from tests.openedx.conftest import OpenEdx, open_course
from tests.support.served import Served


def test_highest_attempt_counts_and_extra_credit_is_capped(
    openedx: OpenEdx, served: Served
) -> None:
    course = open_course(openedx, served, ("ann",), ("lab", "Lab 1", 10))
    (ann,) = course.emails
    lab = course.place("lab", weight=10)
    assert openedx.launch(ann, course.key, lab.usage_key).status_code == 200

    course.attempt("e1", "lab", ann, 6, 10, minute=1)
    course.attempt("e2", "lab", ann, 9, 10, minute=2)
    course.attempt("e3", "lab", ann, 7, 10, minute=3)
    course.wait(
        lambda: (
            course.state(ann, lab.platform_id, "lab")["desired"]["score_given"] == 9
            and course.grade(ann, lab.usage_key) == (9.0, 10.0)
        ),
        "the highest attempt in Open edX's gradebook",
    )
    (item,) = course.line_items(lab)
    assert item["resource_link_id"] == lab.usage_key  # tied to the component: it counts

    course.attempt("e4", "lab", ann, 12, 10, minute=4)  # 12 of 10: extra credit
    course.wait(lambda: course.grade(ann, lab.usage_key) == (10.0, 10.0), "the capped grade")
    state = course.delivered(ann, lab.platform_id, "lab")
    assert "Capped at the maximum" in state["desired"]["basis"]
    (item,) = course.line_items(lab)
    assert item["scores"][-1]["score_given"] == 10.0  # capped by policy, not by the platform


def test_fractional_points_are_rescaled_to_whole_points(openedx: OpenEdx, served: Served) -> None:
    course = open_course(
        openedx, served, ("ann",), ("quiz", "Quiz 1", 7.5), ("odd", "Odd quiz", 7.3333)
    )
    (ann,) = course.emails
    quiz = course.place("quiz", weight=7.5)
    odd = course.place("odd", weight=5)
    assert openedx.launch(ann, course.key, quiz.usage_key).status_code == 200
    assert openedx.launch(ann, course.key, odd.usage_key).status_code == 200

    course.attempt("e1", "quiz", ann, 6, 7.5, minute=1)
    course.attempt("e2", "odd", ann, 5, 7.3333, minute=1)
    course.wait(lambda: course.grade(ann, quiz.usage_key) == (6.0, 7.5), "the rescaled grade")
    (item,) = course.line_items(quiz)
    assert item["score_maximum"] == 15  # whole points: 7.5 x 2
    assert item["scores"][-1]["score_given"] == 12.0

    # No whole factor up to 100 makes 7.3333 whole: refused with a reason, before any send.
    state = course.wait(
        lambda: (
            (s := course.state(ann, odd.platform_id, "odd"))["reason_code"]
            not in (None, "no_attempt_yet")
            and s
        ),
        "the reason nothing is sent",
    )
    assert state["reason_code"] == "fractional_points", state
    assert "whole points only" in state["reason_text"]
    assert course.line_items(odd) == []
    assert course.grade(ann, odd.usage_key) is None


def test_unknown_learners_do_not_hold_up_the_others(openedx: OpenEdx, served: Served) -> None:
    """Open edX answers 500 for a learner it does not know. More such learners than the
    circuit breaker's threshold: each is retried a few times and rejected with the remedy,
    the destination is never paused, and the other learners' grades go on arriving."""
    retired = tuple(f"gone{i}-" for i in range(6))
    course = open_course(openedx, served, ("ann", *retired), ("lab", "Lab 1", 10))
    ann, *gone = course.emails
    lab = course.place("lab", weight=10)
    for learner in (ann, *gone):
        assert openedx.launch(learner, course.key, lab.usage_key).status_code == 200
    for learner in gone:
        openedx.retire(learner)  # account retirement: Open edX no longer knows their LTI id

    for i, learner in enumerate(gone):
        course.attempt(f"g{i}", "lab", learner, 4, 10, minute=1)
    course.attempt("e1", "lab", ann, 8, 10, minute=2)
    course.wait(lambda: course.grade(ann, lab.usage_key) == (8.0, 10.0), "ann's grade")
    for learner in gone:
        state = course.wait(
            lambda learner=learner: (
                (s := course.state(learner, lab.platform_id, "lab"))["state"] == "rejected" and s
            ),
            "the rejection of a learner Open edX does not know",
        )
        assert state["remote_status"] == 500 and state["tries"] == 3, state
        assert "open gradesync from the LMS course again" in state["reason_text"]

    course.attempt("e2", "lab", ann, 9, 10, minute=3)  # the destination still takes grades
    course.wait(lambda: course.grade(ann, lab.usage_key) == (9.0, 10.0), "ann's next grade")
    platform = served.ok("GET", f"/platforms/{lab.platform_id}")
    assert not platform.get("paused_until"), platform


def test_a_token_open_edx_no_longer_accepts_is_renewed(openedx: OpenEdx, served: Served) -> None:
    """Open edX answers a token it cannot verify with 403, not 401: gradesync gets a new
    token once and the grade goes in, instead of being rejected as forbidden."""
    course = open_course(openedx, served, ("ann",), ("lab", "Lab 1", 10))
    (ann,) = course.emails
    lab = course.place("lab", weight=10)
    assert openedx.launch(ann, course.key, lab.usage_key).status_code == 200
    course.attempt("e1", "lab", ann, 6, 10, minute=1)
    course.wait(lambda: course.grade(ann, lab.usage_key) == (6.0, 10.0), "the first grade")

    openedx.rotate_keys(lab.usage_key)  # the token gradesync holds no longer verifies
    refused = openedx.log.read_text(errors="replace").count("Forbidden: /api/lti_consumer")
    course.attempt("e2", "lab", ann, 8, 10, minute=2)
    course.wait(lambda: course.grade(ann, lab.usage_key) == (8.0, 10.0), "the grade after a 403")
    state = course.delivered(ann, lab.platform_id, "lab")
    assert state["tries"] == 0, state
    log = openedx.log.read_text(errors="replace")
    assert log.count("Forbidden: /api/lti_consumer") == refused + 1  # one 403, then a new token


def test_a_registration_without_the_score_scope_pauses_the_platform(
    openedx: OpenEdx, served: Served
) -> None:
    """Open edX answers a token without the score scope with 403, as it answers a bad token:
    after one new token is refused too, the registration lacks a grade scope. The platform
    is paused with the reason for the admin; the learner's grade is not refused as
    forbidden."""
    course = open_course(openedx, served, ("ann",), ("lab", "Lab 1", 10))
    (ann,) = course.emails
    lab = course.place("lab", weight=10)
    with served.runtime.db.uow() as uow:
        platform = uow.destinations.get(served.tenant, lab.platform_id)
        assert platform is not None
        scopes = [s for s in DEFAULT_SCOPES if s != SCOPE_SCORE]
        uow.destinations.upsert(
            replace(platform, config={**platform.config, "scopes": scopes}),
            served.runtime.clock.now(),
        )
        uow.commit()

    def edit_seen() -> bool:
        # the edit is announced at its commit; the engine re-reads the registration before
        # its next send (one it loaded to create the column ahead would send as before)
        assert served.runtime.worker is not None
        governor = served.runtime.worker.engine.deliverer.governor
        seen = governor.destinations.get((served.tenant, lab.platform_id))
        return seen is None or seen.config.get("scopes") == scopes

    course.wait(edit_seen, "the engine to see the edited registration")
    assert openedx.launch(ann, course.key, lab.usage_key).status_code == 200
    course.attempt("e1", "lab", ann, 6, 10, minute=1)
    # (the launch computes the lab before the attempt: "no attempt yet" comes first)
    state = course.wait(
        lambda: (
            (s := course.state(ann, lab.platform_id, "lab"))["reason_code"]
            not in (None, "no_attempt_yet")
            and s
        ),
        "the reason the grade waits",
    )
    assert state["reason_code"] == "no_grade_scope" and state["state"] != "rejected", state
    paused = served.ok("GET", f"/platforms/{lab.platform_id}")
    assert paused.get("paused_until") and "scope" in str(paused), paused
    assert course.grade(ann, lab.usage_key) is None
