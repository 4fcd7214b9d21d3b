"""An admin's edit of a registration reaches the engines before their next send, not on
their slow re-read of every destination: the unit of work announces each destination it
wrote at its commit (`destination_signals`). Here the engines' own re-reads are an hour
apart, so only that announcement can carry the edit."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.lti.claims import AGS_SCOPES, SCOPE_SCORE
from gradesync.runtime import Runtime
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services.engine_config import EngineSettings
from gradesync.testing import wait_for
from tests.lti.conftest import Browser
from tests.support.served import Served, launched_learner, post_attempt, register_tool, serve

HOUR = timedelta(hours=1)


@pytest.fixture
def slow_rereads(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """`gradesync serve` whose engines re-read destinations only every hour."""
    settings = Runtime.engine_settings

    def hourly(self: Runtime) -> EngineSettings:
        return replace(settings(self), destinations_ttl=HOUR, pause_poll=HOUR, pause_check=HOUR)

    monkeypatch.setattr(Runtime, "engine_settings", hourly)
    yield from serve(db, tmp_path)


def test_a_registration_edited_through_the_api_applies_to_the_next_grade(
    lms: RunningSandbox, slow_rereads: Served, browser: Browser
) -> None:
    gs = slow_rereads
    reg = register_tool(lms, gs)
    learner, ctx = launched_learner(lms, gs, browser, reg["client_id"])
    (item,) = lms.state.courses[ctx].line_items.values()
    post_attempt(gs, "e1", learner, 6)
    wait_for(lambda: item.scores.get(learner), "the first grade in the LMS")

    # the admin takes the score scope out of the registration (as if the LMS no longer
    # granted it): the engine, which holds a token with that scope, must use the edit
    platform: dict[str, Any] = gs.ok("GET", "/platforms/lms")
    edited = {
        k: platform[k]
        for k in ("issuer", "client_id", "deployment_ids", "auth_login_url", "auth_token_url")
    }
    edited |= {
        "key_set_url": platform["key_set_url"],
        "scopes": [s for s in AGS_SCOPES if s != SCOPE_SCORE],
    }
    gs.ok("PUT", "/platforms/lms", json=edited)
    post_attempt(gs, "e2", learner, 9)

    def waiting() -> dict[str, Any] | None:
        # the pause the refusal sets may show before the refused send is settled: then the
        # pending grade reads `destination_paused` for a moment; wait for the send's own reason
        grades = gs.ok("GET", f"/people/{learner}/grades")["destinations"].get("lms", [])
        return next(
            (g for g in grades if g["reason_code"] not in (None, "destination_paused")), None
        )

    grade = wait_for(waiting, "the reason the better grade waits")
    assert grade["reason_code"] == "no_grade_scope", grade
    assert item.scores[learner].score_given == 6.0  # the edit held the grade back
