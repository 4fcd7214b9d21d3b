"""`destinations check --send-test` (and the API's `send_test`) against the sandbox LMS: the
test column goes again after the test, whatever it found; nothing is written to a paused
destination; the test's requests wait for the destination's rate limit like any send."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.pauses import PauseCause, pause_text
from gradesync.sandbox.state import LineItem
from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import unique, wait_for
from tests.diagnostics.conftest import World, served_world
from tests.support.cli import Run
from tests.support.limits import watch_waits

TITLE = "gradesync connection check"
OWN = ["registration_complete", "token_granted", "scopes_granted", "gradebook_reachable"]


def _ready(w: World) -> tuple[str, str]:
    """An LMS course connected to c1 and one learner who launched from it: (ctx, learner)."""
    w.register()
    learner, teacher = unique("tl-"), unique("teacher-")
    w.roster()
    ctx = w.lms_course([learner], [teacher])
    (link,) = w.deep_link(teacher, ctx)
    assert w.launch(learner, ctx, link).status_code == 200
    return ctx, learner


def _test_columns(w: World, ctx: str) -> list[LineItem]:
    return [i for i in w.lms.state.courses[ctx].line_items.values() if i.label == TITLE]


def _check(w: World) -> dict[str, Any]:
    resp = w.call("POST", "/destinations/lms/check", json={"send_test": True}, timeout=120)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def _codes(out: dict[str, Any]) -> list[str]:
    return [s["code"] for s in out["steps"]]


def test_the_test_column_is_deleted_after_the_test(world: World) -> None:
    """The check left its column in the gradebook with the test student's 1/1 (an LMS
    shows it as a grade, and some count it in the total). Now it deletes it after the
    test, with the result, and says so; a column an earlier check left is found and goes
    too."""
    ctx, learner = _ready(world)
    left = world.lms.admin.add_line_item(
        ctx,
        label=TITLE,
        scoreMaximum=1,
        resourceId="gradesync-connection-check",
        tag="grade",
        client_id=world.client_id,
    )
    world.lms.admin.instructor_grade(ctx, left["number"], learner, 1.0)
    out = _check(world)
    assert out["ok"], out
    assert _codes(out) == [
        *OWN,
        "test_column_ready",
        "test_result_accepted",
        "test_result_read_back",
        "test_column_removed",
    ]
    removed = out["steps"][-1]
    assert removed["name"] == "The test column is removed" and removed["remedy"] is None
    assert left["id"] in removed["evidence"], removed
    assert _test_columns(world, ctx) == []
    # a check when no test column is there makes one and deletes it again
    out = _check(world)
    assert out["ok"] and _codes(out)[-1] == "test_column_removed", out
    assert _test_columns(world, ctx) == []


def test_a_column_the_lms_will_not_delete_is_named_for_deleting_by_hand(world: World) -> None:
    """When the LMS refuses the delete, the step fails naming the column and where it is,
    for the admin to delete it; the next check deletes it."""
    ctx, _ = _ready(world)
    admin = world.lms.admin
    admin.reset_counters()
    assert _check(world)["ok"]
    asked = admin.counters()["lineitems"]["requests"]  # the delete is the last of them
    admin.set_faults({"lineitems": {"script": ["ok"] * (asked - 1) + ["error"]}})
    out = _check(world)
    admin.clear_faults()
    assert not out["ok"]
    assert _codes(out) == [
        *OWN,
        "test_column_ready",
        "test_result_accepted",
        "test_result_read_back",
        "test_column_left",
    ]
    left = out["steps"][-1]
    [column] = _test_columns(world, ctx)
    assert f"/line_items/{column.id}" in left["evidence"], left
    assert "server_error (HTTP 503): injected server error" in left["evidence"], left
    assert left["remedy"].startswith(
        f"Delete the column '{TITLE}' from the gradebook of course 'Course c1' (c1) in the LMS "
        "by hand"
    ), left
    out = _check(world)
    assert out["ok"] and _codes(out)[-1] == "test_column_removed", out
    assert _test_columns(world, ctx) == []


@pytest.mark.parametrize(
    ("pause", "last"),
    [({"reason": "term break"}, "destination_paused"),
     ({"reason": "term break", "until": "2099-01-01T06:00:00Z"}, "destination_paused_until")],
    ids=["until-resumed", "until-a-time"],
)  # fmt: skip
def test_a_paused_destination_is_sent_no_test_result(
    world: World, pause: dict[str, str], last: str
) -> None:
    """The check wrote its test column and result through a pause (and only then said the
    destination was paused). While it is paused nothing is written; the step says why and
    how to resume it, in the API's words."""
    ctx, _ = _ready(world)
    world.ok("POST", "/destinations/lms/pause", json=pause)
    world.lms.admin.reset_counters()
    out = _check(world)
    assert _codes(out) == [*OWN, "test_not_sent_paused", last]
    step = out["steps"][-2]
    assert not step["passed"] and not out["ok"]
    assert step["evidence"].startswith("Nothing was written to the LMS: 'lms' is paused")
    assert "(term break)" in step["evidence"], step
    assert step["remedy"] == (
        "Resume it once what paused it is settled (`POST /api/v1/destinations/lms/resume`), "
        "then check it again with `send_test`."
    )
    assert "lineitems" not in world.lms.admin.counters()  # not even a listing
    assert _test_columns(world, ctx) == []
    world.ok("POST", "/destinations/lms/resume")
    assert _check(world)["ok"]


def test_the_test_result_waits_for_the_rate_limit(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test's requests went to the LMS whatever the destination's rate limit; now each
    takes a token like a send: at one request per 100 s, the test column's look-up takes
    the one token there is and its write waits (nor is the score sent) until the limit is
    cleared."""
    ctx, _ = _ready(world)
    waited = threading.Event()
    watch_waits(monkeypatch, waited)
    world.ok("PATCH", "/destinations/lms/limits", json={"rate_per_second": 0.01})
    answer: dict[str, Any] = {}
    checking = threading.Thread(target=lambda: answer.update(_check(world)))
    checking.start()
    try:
        wait_for(waited.is_set, "the test result waiting for a token")
        assert _test_columns(world, ctx) == []  # the column's write waits for its token
    finally:
        world.ok("PATCH", "/destinations/lms/limits", json={"rate_per_second": None})
        checking.join(timeout=60)
    assert answer["ok"], answer
    assert _test_columns(world, ctx) == []


@pytest.fixture
def cli_world(lms: RunningSandbox, cli_db: Database, tmp_path: Path) -> Iterator[World]:
    """gradesync served on the database the `gradesync` command opens."""
    with served_world(lms, cli_db, tmp_path) as w:
        yield w


def test_the_command_line_check(cli_world: World, gradesync: Run) -> None:
    """`gradesync destinations check --send-test`, as an admin runs it beside the server:
    the column goes again; a paused destination is sent nothing and the step names the
    command that resumes it."""
    w = cli_world
    ctx, _ = _ready(w)
    check = ("destinations", "check", "lms", "-t", w.tenant, "--course", "c1", "--send-test")
    text = gradesync(*check).stdout
    assert "The test column is removed" in text and "destination works" in text, text
    assert _test_columns(w, ctx) == []
    gradesync("destinations", "pause", "lms", "-t", w.tenant, "--reason", "term break")
    r = gradesync(*check, "--json", ok=False)
    assert r.returncode == 1, r.stderr
    steps = {s["code"]: s for s in json.loads(r.stdout)["steps"]}
    assert steps["test_not_sent_paused"]["remedy"] == (
        "Resume it once what paused it is settled (gradesync destinations resume lms), then "
        "check it again with --send-test."
    )
    assert _test_columns(w, ctx) == []


@pytest.mark.parametrize(
    ("cause", "said"),
    [(PauseCause.MISCONFIGURED, "Fix the destination's settings named in the pause, then "
      "resume it"),
     (PauseCause.CIRCUIT_OPEN, "Nothing to do: sending resumes by itself at 2099-01-01 06:00 "
      "UTC.")],
    ids=["misconfigured", "circuit-open"],
)  # fmt: skip
def test_a_paused_destination_s_check_says_what_its_pause_needs(
    world: World, cause: PauseCause, said: str
) -> None:
    """A pause for wrong settings (a refused secret) was said as "Nothing to do: sending
    resumes by itself", which only fails and pauses again: its settings are fixed, then it
    is resumed, as `doctor` says it. A pause gradesync lifts by itself is still said so."""
    _ready(world)
    until = datetime(2099, 1, 1, 6, 0, tzinfo=UTC)
    reason = pause_text(cause, "token: client_id/client_secret: not valid")
    with world.runtime.db.uow() as uow:
        uow.destinations.set_pause(world.tenant, "lms", until, reason, cause)
        uow.commit()
    resp = world.call("POST", "/destinations/lms/check", json={})
    assert resp.status_code == 200, resp.text
    last = resp.json()["steps"][-1]
    assert (last["code"], last["passed"]) == ("destination_paused_until", False), last
    assert last["remedy"].startswith(said), last
    if cause is PauseCause.MISCONFIGURED:
        assert "Nothing to do" not in last["remedy"], last
