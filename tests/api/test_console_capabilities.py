"""The console's course page asks what the destination accepts on every view: it is worked
out once per destination and settings, not by building a destination client for each view,
and worked out again once the destination's settings change."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gradesync.adapters.destinations.ags_profiles import profile_for
from gradesync.domain.model import Destination
from tests.support.api import ROSTER, ApiEnv, Caller


def _course_page(api: ApiEnv) -> None:
    page = api.client.get("/console/courses/c1", params={"destination": "lms"})
    assert page.status_code == 200, page.text
    assert "Biology 101" in page.text


def test_the_course_page_builds_no_destination_client_per_view(
    api: ApiEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = Caller(api.client, api.tenant("t1", "admin"))
    assert admin.post("/ingest", json=ROSTER).status_code == 202
    lms = api.destination("t1", "lms")
    api.link("t1", "lms", "c1")
    api.console_admin("t1")
    built: list[Destination] = []
    build = api.runtime.destination_client

    def counted(destination: Destination, context: Any = None) -> Any:
        built.append(destination)
        return build(destination, context)

    monkeypatch.setattr(api.runtime, "destination_client", counted)
    for _ in range(3):
        _course_page(api)
    assert [d.id for d in built] == ["lms"], built
    assert api.runtime.capabilities(lms) == profile_for("generic").capabilities
    assert len(built) == 1

    # its settings changed (another LMS profile): worked out again, once
    moodle = replace(lms, profile="moodle")
    with api.db.uow() as uow:
        uow.destinations.upsert(moodle, api.runtime.clock.now())
        uow.commit()
    for _ in range(2):
        _course_page(api)
    assert [d.profile for d in built] == ["generic", "moodle"], built
    assert api.runtime.capabilities(moodle) == profile_for("moodle").capabilities
    assert profile_for("moodle").capabilities != profile_for("generic").capabilities
    assert len(built) == 2
