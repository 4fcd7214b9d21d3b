"""`--json` of a command that has an API equivalent prints what the API returns for the same
thing: the same keys, the same nesting, and (for what is stored) the same values. Each pair
asks the command and the API about one tenant in one database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.runtime import Runtime
from gradesync.testing import TEST_SECRET
from gradesync.web.app import create_app
from tests.support.api import ROSTER
from tests.support.cli import Run

PLATFORM = {
    "id": "canvas",
    "issuer": "https://canvas.example.edu",
    "client_id": "10000000000001",
    "deployment_ids": ["1:abc"],
    "auth_login_url": "https://canvas.example.edu/api/lti/authorize_redirect",
    "auth_token_url": "https://canvas.example.edu/login/oauth2/token",
    "key_set_url": "https://canvas.example.edu/api/lti/security/jwks",
}


def _keys(doc: Any) -> Any:
    """The keys of a JSON document and their nesting, without the values."""
    if isinstance(doc, dict):
        return {k: _keys(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_keys(v) for v in doc]
    return None


class Api:
    def __init__(self, client: TestClient, token: str) -> None:
        self.client, self.auth = client, {"Authorization": f"Bearer {token}"}

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        r = self.client.request(method, f"/api/v1{path}", json=body, headers=self.auth)
        assert r.status_code < 300, (path, r.status_code, r.text)
        return r.json()


@pytest.fixture
def api(gradesync: Run, cli_db: Database, tmp_path: Path) -> Iterator[Api]:
    created = gradesync("tenants", "create", "t1", "--name", "School")
    [token] = [line for line in created.stdout.splitlines() if line.startswith("gs_")]
    settings = Settings(database_url=cli_db.url, secret_key=TEST_SECRET, data_dir=tmp_path / "d")
    with TestClient(create_app(Runtime(settings=settings, db=cli_db))) as client:
        call = Api(client, token)
        call("POST", "/ingest", ROSTER)
        yield call


def _cli(gradesync: Run, *args: str, tenant: tuple[str, ...] = ("-t", "t1")) -> Any:
    return json.loads(gradesync(*args, *tenant, "--json").stdout)


def test_policy_show_and_set_print_the_apis_policy(gradesync: Run, api: Api) -> None:
    gradesync("policy", "set", "-t", "t1", "--activity", "a2", "attempt_selection=first")
    course = _cli(gradesync, "policy", "show", "--course", "c1")
    assert course == api("GET", "/courses/c1/policy")
    assert [(a["activity_id"], a["policy"]) for a in course["activities"]] == [
        ("a1", {}),
        ("a2", {"attempt_selection": "first"}),
    ]
    assert _cli(gradesync, "policy", "show") == api("GET", "/tenant/policy")
    # one activity: its own answer, whose effective settings are the activity's
    one = _cli(gradesync, "policy", "show", "--activity", "a2")
    assert one == api("GET", "/activities/a2/policy")
    assert one["effective"] == course["activities"][1]["effective"] != course["effective"]
    assert one["activity"] == {"attempt_selection": "first"}
    assert one["activities"] == [course["activities"][1]]

    changed = _cli(gradesync, "policy", "set", "--course", "c1", "past_due_zeros=on")
    assert changed["policy"] == {"past_due_zeros": "on"}
    assert changed["changed"] == ["past_due_zeros"]
    assert _keys(changed) == _keys(api("PATCH", "/courses/c1/policy", {"past_due_zeros": "off"}))


def test_schedules_print_the_apis_schedules(gradesync: Run, api: Api) -> None:
    rule = {"kind": "interval", "spec": "2h", "time_zone": "UTC", "count": 3}
    rule_args = ("--kind", "interval", "--spec", "2h", "--tz", "UTC", "--count", "3")
    preview = _cli(gradesync, "schedules", "preview", *rule_args, tenant=())
    assert _keys(preview) == _keys(api("POST", "/schedules/preview", rule))
    assert len(preview["runs"]) == 3

    added = _cli(
        gradesync, "schedules", "add", "--kind", "daily", "--spec", "01:30", "--course", "c1"
    )
    sid = added["id"]
    assert added == api("GET", f"/schedules/{sid}")
    assert _cli(gradesync, "schedules", "list") == api("GET", "/schedules")
    paused = _cli(gradesync, "schedules", "pause", sid)
    assert paused["paused"] is True and paused == api("GET", f"/schedules/{sid}")
    run = _cli(gradesync, "schedules", "run-now", sid)
    # as the API's run-now answers: the run as GET /runs/{id} shows it, stages included
    shown = api("GET", f"/runs/{run['id']}")
    assert run.keys() == shown.keys() and run["joined"] is False
    assert run["stages"] and run["stages"] == shown["stages"]
    assert _cli(gradesync, "schedules", "history", sid) == api("GET", f"/schedules/{sid}/history")


def test_runs_destinations_and_platforms_print_the_apis_views(gradesync: Run, api: Api) -> None:
    api("POST", "/platforms", PLATFORM)
    run = _cli(gradesync, "sync", "--course", "c1")
    # POST /runs's answer, with the stages GET /runs/{id} gives
    assert run["joined"] is False and _keys(run) == _keys(api("GET", f"/runs/{run['id']}"))
    assert _cli(gradesync, "runs", "list") == api("GET", "/runs")
    assert _cli(gradesync, "runs", "show", run["id"]) == api("GET", f"/runs/{run['id']}")

    assert _cli(gradesync, "destinations", "list") == api("GET", "/destinations")
    assert _cli(gradesync, "destinations", "show", "canvas") == api("GET", "/destinations/canvas")
    paused = _cli(gradesync, "destinations", "pause", "canvas", "--reason", "exams")
    assert paused["pause_reason"] == "exams" and paused == api("GET", "/destinations")[0]
    assert _cli(gradesync, "destinations", "resume", "canvas") == api("GET", "/destinations")[0]

    assert _cli(gradesync, "platforms", "list") == api("GET", "/platforms")
    assert _cli(gradesync, "platforms", "show", "canvas") == api("GET", "/platforms/canvas")


def test_sis_mappings_print_the_apis_answers(gradesync: Run, api: Api) -> None:
    api("PUT", "/sis/connections/sis", {"file_based": True})
    student = _cli(gradesync, "sis", "map-student", "sis", "p1", "S-1")
    assert student == api("PUT", "/sis/connections/sis/students/p1", {"student_id": "S-1"})
    klass = _cli(gradesync, "sis", "map-class", "sis", "c1", "CLS-1", "--school", "SCH")
    same = api("PUT", "/sis/connections/sis/classes/c1", {"class_id": "CLS-1", "school_id": "SCH"})
    assert klass == same
    checks = _cli(gradesync, "sis", "validate", "sis", "--course", "c1", "--offline")
    assert checks == api("GET", "/sis/connections/sis/validation?course_id=c1")
