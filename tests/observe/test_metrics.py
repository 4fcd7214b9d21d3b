"""`/metrics` after real deliveries to the sandbox LMS over HTTP: what was delivered, retried
(a 502 once, its latency counted from when it became pending) and rejected (a learner dropped
from the LMS course), how long it took, what is waiting while the destination is paused and
why, runs by trigger and outcome, requests served by route template and requests sent by
destination and status."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from prometheus_client.parser import text_string_to_metric_families

from gradesync.adapters.db.database import Database
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services.lti.keys import new_key
from gradesync.testing import unique, wait_for
from tests.support.lti import Browser
from tests.support.metrics import samples, scrape, value
from tests.support.served import (
    Served,
    deep_link,
    launched_learner,
    post_attempt,
    register_tool,
    serve,
)


def _roster(gs: Served, *learners: str) -> None:
    gs.ok(
        "POST",
        "/ingest",
        json={
            "courses": [{"id": "c1", "title": "Chemistry"}],
            "activities": [
                {"id": "a1", "course_id": "c1", "title": "Lab 1", "points_possible": 10}
            ],
            "people": [{"id": p, "name": p} for p in learners],
            "enrollments": [{"course_id": "c1", "person_id": p} for p in learners],
        },
    )


def test_metrics_count_real_deliveries(
    lms: RunningSandbox,
    served: Served,
    browser: Browser,
) -> None:
    reg = register_tool(lms, served)
    tenant = served.tenant
    teacher, kept, dropped = unique("teacher-"), unique("learner-"), unique("learner-")
    ctx = unique("ctx-")
    lms.admin.add_course(id=ctx, learners=[kept, dropped], instructors=[teacher])
    _roster(served, kept, dropped)
    link = deep_link(lms, browser, reg["client_id"], teacher, ctx)
    for learner in (kept, dropped):
        browser.launch(
            lms, client_id=reg["client_id"], user=learner, course=ctx, resource_link_id=link
        )
    lms.admin.unenroll(ctx, dropped)  # the LMS no longer knows this learner in the course
    (item,) = lms.state.courses[ctx].line_items.values()

    lms.admin.set_faults({"scores": {"script": ["error"], "error_status": 502}})
    post_attempt(served, "e1", kept, 7)  # the first send fails once, the retry lands
    wait_for(lambda: item.scores.get(kept), "the grade in the LMS")
    post_attempt(served, "e2", dropped, 4)
    mine = {"tenant": tenant, "destination": "lms"}
    text = wait_for(
        lambda: (
            (t := scrape(served))
            and value(t, "gradesync_results_rejected_total", **mine) >= 1
            and t
        ),
        "the rejection counted",
    )
    lms.admin.clear_faults()

    assert value(text, "gradesync_results_delivered_total", **mine) == 1
    [(labels, n)] = samples(text, "gradesync_results_rejected_total", **mine)
    assert labels["reason"] == "unknown_user" and n == 1
    [(labels, n)] = samples(text, "gradesync_results_retried_total", **mine)
    assert (labels["failure_class"], labels["reason"], n) == ("retry_later", "server_error", 1)
    # the retried grade's latency is observed, from when it became pending: it includes the
    # wait before the retry (at least half the first backoff delay), not only the last send
    [(_, n)] = samples(text, "gradesync_delivery_latency_seconds_count", **mine)
    assert n == 1
    first_wait = served.runtime.settings.retry_base_seconds / 2
    assert value(text, "gradesync_delivery_latency_seconds_sum", **mine) >= first_wait
    post_attempt(served, "e3", kept, 9)  # and a grade delivered at the first try
    wait_for(lambda: item.scores[kept].score_given == 9.0, "the better grade")
    text = wait_for(
        lambda: (
            (t := scrape(served))
            and value(t, "gradesync_delivery_latency_seconds_count", **mine) == 2
            and t
        ),
        "the latency observed",
    )
    assert value(text, "gradesync_results_delivered_total", **mine) == 2
    assert value(text, "gradesync_delivery_latency_seconds_bucket", le="+Inf", **mine) == 2
    assert 0 < value(text, "gradesync_delivery_latency_seconds_sum", **mine) < 60

    # requests sent to the LMS: the 502 and the successes, by status
    assert value(text, "gradesync_outbound_requests_total", status="502", **mine) == 1
    assert value(text, "gradesync_outbound_requests_total", status="200", **mine) >= 2
    # requests served, by route template (never the raw path with its ids)
    assert (
        value(
            text,
            "gradesync_http_requests_total",
            route="/api/v1/attempts",
            method="POST",
            status="202",
        )
        + value(
            text,
            "gradesync_http_requests_total",
            route="/api/v1/attempts",
            method="POST",
            status="200",
        )
        >= 3
    )

    # a run, by trigger and outcome (the dropped learner's grade is still refused: a learner
    # the LMS does not know is an accepted rejection, so the run succeeded)
    assert served.run("resync", "c1")["outcome"] == "succeeded"
    text = scrape(served)
    runs = {"tenant": tenant, "trigger": "resync", "outcome": "succeeded"}
    assert value(text, "gradesync_runs_total", **runs) == 1
    # the run was watched through GET /api/v1/runs/{run_id}: one label, whatever the id
    assert value(text, "gradesync_http_requests_total", route="/api/v1/runs/{run_id}") >= 1

    # paused: the reason is shown, and what waits is the backlog with its age
    served.ok("POST", "/destinations/lms/pause", json={"reason": "LMS upgrade tonight"})
    post_attempt(served, "e4", kept, 10)
    text = wait_for(
        lambda: (t := scrape(served)) and value(t, "gradesync_results_pending", **mine) == 1 and t,
        "the waiting grade counted",
    )
    [(labels, n)] = samples(text, "gradesync_destination_paused", **mine)
    # labelled by its cause (a person's words may name anyone), the words on the destination
    assert (labels["kind"], labels["reason"], n) == ("manual", "admin", 1.0)
    assert value(text, "gradesync_results_oldest_pending_age_seconds", **mine) >= 0
    served.ok("POST", "/destinations/lms/resume")
    wait_for(lambda: item.scores[kept].score_given == 10.0, "the grade after the resume")
    # the LMS holds the grade a moment before gradesync has written down its answer
    text = wait_for(
        lambda: (t := scrape(served)) and not value(t, "gradesync_results_pending", **mine) and t,
        "the backlog emptied",
    )
    # at zero, not gone: a dashboard reads 0, not "no data"
    assert samples(text, "gradesync_results_pending", **mine) == [(mine, 0.0)]
    assert samples(text, "gradesync_results_oldest_pending_age_seconds", **mine) == [(mine, 0.0)]
    assert samples(text, "gradesync_destination_paused", **mine) == [
        ({**mine, "kind": "", "reason": ""}, 0.0)
    ]
    # no learner, course or activity id in any label
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            for v in s.labels.values():
                assert v not in (kept, dropped, ctx, "c1", "a1"), (s.name, s.labels)


def test_a_refusal_of_credentials_is_counted_as_misconfigured_not_slow_down(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    """The pause for bad credentials is gradesync's, not the LMS's Retry-After: the retried
    send is counted under `misconfigured`, as docs/operations.md classes it."""
    reg = register_tool(lms, served)
    learner, _ = launched_learner(lms, served, browser, reg["client_id"])
    # the LMS admin pasted a public key that is not gradesync's: every token is refused
    tool = lms.state.tools[reg["client_id"]]
    foreign = new_key(datetime(2025, 3, 1, tzinfo=UTC)).private_key.public_key()
    pem = foreign.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    lms.admin.register_tool(**{**tool.model_dump(), "jwks_url": None, "public_key": pem})
    lms.admin.expire_tokens(reg["client_id"])

    post_attempt(served, "e1", learner, 7)

    mine = {"tenant": served.tenant, "destination": "lms"}
    text = wait_for(
        lambda: (t := scrape(served)) and value(t, "gradesync_results_retried_total", **mine) and t,
        "the refused send counted",
    )
    [(labels, n)] = samples(text, "gradesync_results_retried_total", **mine)
    assert (labels["failure_class"], labels["reason"], n) == ("misconfigured", "bad_credentials", 1)
    assert served.ok("GET", "/destinations/lms")["pause_reason"].startswith("Misconfigured:")
    [(labels, _)] = samples(scrape(served), "gradesync_destination_paused", **mine)
    assert (labels["kind"], labels["reason"]) == ("timed", "misconfigured")


def test_grades_not_worked_out_show_when_no_worker_runs(
    postgres_db: Database, tmp_path: Path
) -> None:
    # distributed mode: `serve` only wakes `gradesync worker` processes, and none runs, so the
    # grade is never worked out and never reaches the ledger's backlog
    with contextmanager(serve)(postgres_db, tmp_path, worker_mode="distributed") as gs:
        assert gs.runtime.distributed
        learner = unique("learner-")
        _roster(gs, learner)
        post_attempt(gs, "e1", learner, 7)
        text = scrape(gs)
        mine = {"tenant": gs.tenant}
        assert value(text, "gradesync_grades_uncomputed", **mine) == 1
        assert value(text, "gradesync_grades_oldest_uncomputed_age_seconds", **mine) >= 0
        assert value(text, "gradesync_results_pending", **mine) == 0
