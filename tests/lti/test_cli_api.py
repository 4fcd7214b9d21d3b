"""`gradesync platforms ...`, `gradesync keys rotate-tool-key` and /api/v1/platforms."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gradesync.adapters.db.database import Database
from gradesync.cli import app
from gradesync.domain.model import Tenant
from gradesync.runtime import Runtime
from gradesync.services.lti.keys import ToolKeyStore
from tests.lti.test_units import GOOD
from tests.support.api import ApiEnv


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Database:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    monkeypatch.setenv("GRADESYNC_DATABASE_URL", url)
    monkeypatch.setenv("GRADESYNC_SECRET_KEY", "cli-secret")
    monkeypatch.setenv("GRADESYNC_BASE_URL", "https://grades.example.edu")
    monkeypatch.setenv("GRADESYNC_DATA_DIR", str(tmp_path / "data"))
    db = Database(url, "cli-secret")
    db.upgrade()
    with db.uow() as uow:
        uow.tenants.upsert(Tenant("uni", "Uni"), datetime.now(UTC))
        uow.commit()
    return db


ADD = [
    "platforms",
    "add",
    "--tenant",
    "uni",
    "--id",
    "canvas",
    "--issuer",
    GOOD["issuer"],
    "--client-id",
    GOOD["client_id"],
    "--deployment-id",
    "1:abc",
    "--auth-login-url",
    GOOD["auth_login_url"],
    "--auth-token-url",
    GOOD["auth_token_url"],
    "--key-set-url",
    GOOD["key_set_url"],
    "--profile",
    "canvas",
    "--allowed-host",
    "school.instructure.com",
]


def test_cli_add_list_show_and_rotate(cli_env: Database) -> None:
    runner = CliRunner()
    added = runner.invoke(app, ADD)
    assert added.exit_code == 0, added.output
    assert "https://grades.example.edu/lti/login" in added.output
    assert "https://grades.example.edu/lti/jwks.json" in added.output
    again = runner.invoke(app, ADD)
    assert again.exit_code == 4 and "already exists" in again.output  # a conflict
    listed = runner.invoke(app, ["platforms", "list", "--tenant", "uni"])
    assert "canvas" in listed.output and GOOD["client_id"] in listed.output
    shown = runner.invoke(app, ["platforms", "show", "--tenant", "uni", "canvas", "--json"])
    view = json.loads(shown.output)
    assert view["allowed_hosts"] == ["school.instructure.com"] and view["profile"] == "canvas"

    bad = runner.invoke(app, [*ADD[:-2], "--auth-token-url", "ftp://x", "--id", "x2"])
    assert bad.exit_code == 2 and "auth_token_url" in bad.output

    first = ToolKeyStore(cli_env.uow).current().kid
    rotated = runner.invoke(app, ["keys", "rotate-tool-key"])
    assert rotated.exit_code == 0, rotated.output
    kids = {k["kid"] for k in ToolKeyStore(cli_env.uow).jwks()["keys"]}
    assert first in kids and len(kids) == 2


def test_cli_rotation_publishes_first_and_now_signs_at_once(cli_env: Database) -> None:
    runner = CliRunner()
    first = ToolKeyStore(cli_env.uow).current().kid
    rotated = runner.invoke(app, ["keys", "rotate-tool-key", "--json"])
    assert rotated.exit_code == 0, rotated.output
    made = json.loads(rotated.output)
    assert made["retired_kid"] == first
    assert ToolKeyStore(cli_env.uow).current().kid == first  # published, not signing yet
    listed = json.loads(runner.invoke(app, ["keys", "list-tool-keys", "--json"]).output)
    assert [(k["kid"], k["state"]) for k in listed] == [
        (made["kid"], "next"),
        (first, "current"),
    ]
    assert listed[0]["signs_from"] == made["signs_from"]
    assert listed[1]["retired_at"] == made["signs_from"]  # stops when the next one starts
    text = runner.invoke(app, ["keys", "list-tool-keys"]).output
    assert "starts signing at" in text and made["kid"] in text

    forced = runner.invoke(app, ["keys", "rotate-tool-key", "--now"])
    assert forced.exit_code == 0, forced.output
    assert "warning: platforms that cached the key set" in forced.output
    said = " ".join(forced.output.split())
    assert f"{made['kid']}, {first} revoked" in said  # the waiting key too
    now = ToolKeyStore(cli_env.uow).current().kid
    assert now not in (first, made["kid"]) and now in forced.output
    states = {
        k["kid"]: (k["state"], k["published"], k["revoked_at"] is not None)
        for k in json.loads(runner.invoke(app, ["keys", "list-tool-keys", "--json"]).output)
    }
    assert states == {
        now: ("current", True, False),
        made["kid"]: ("revoked", False, True),
        first: ("revoked", False, True),
    }
    assert {k["kid"] for k in ToolKeyStore(cli_env.uow).jwks()["keys"]} == {now}
    text = " ".join(runner.invoke(app, ["keys", "list-tool-keys"]).output.split())
    assert "revoked" in text and "no, revoked" in text


def _keys(runner: CliRunner) -> dict[str, dict[str, Any]]:
    listed = runner.invoke(app, ["keys", "list-tool-keys", "--json"])
    assert listed.exit_code == 0, listed.output
    return {k["kid"]: k for k in json.loads(listed.output)}


def test_cli_second_rotation_replaces_the_waiting_key_and_says_so(cli_env: Database) -> None:
    """What `rotate-tool-key` prints, what `list-tool-keys` lists and which key signs agree
    when a key from an earlier rotation is still waiting to sign."""
    runner = CliRunner()
    first = ToolKeyStore(cli_env.uow).current().kid
    waiting = json.loads(runner.invoke(app, ["keys", "rotate-tool-key", "--json"]).output)
    again = runner.invoke(app, ["keys", "rotate-tool-key"])
    assert again.exit_code == 0, again.output
    said = " ".join(again.output.split())
    newest = next(k for k in _keys(runner) if k not in (first, waiting["kid"]))
    assert f"new tool key {newest} published now" in said
    assert f"; {first} signs until then" in said  # the key signing now, not the waiting one
    assert f"{waiting['kid']} (waiting to sign) replaced: it never signs" in said
    keys = _keys(runner)
    assert keys[first]["state"] == "current"
    assert keys[first]["retired_at"] == keys[newest]["signs_from"]  # signs until then
    assert keys[waiting["kid"]]["signs_from"] is None  # never signs
    assert keys[newest]["state"] == "next"
    text = runner.invoke(app, ["keys", "list-tool-keys"]).output
    assert "never" in text and f"{waiting['kid']} starts signing" not in text
    assert f"{newest} starts signing" in text

    again_json = json.loads(runner.invoke(app, ["keys", "rotate-tool-key", "--json"]).output)
    assert again_json["retired_kid"] == first and again_json["replaced_kids"] == [newest]


def test_cli_a_revoked_key_that_never_signed_shows_no_signing_time(cli_env: Database) -> None:
    runner = CliRunner()
    ToolKeyStore(cli_env.uow).current()
    waiting = json.loads(runner.invoke(app, ["keys", "rotate-tool-key", "--json"]).output)
    assert runner.invoke(app, ["keys", "rotate-tool-key", "--now"]).exit_code == 0
    listed = _keys(runner)[waiting["kid"]]
    assert listed["state"] == "revoked" and listed["signs_from"] is None
    text = runner.invoke(app, ["keys", "list-tool-keys"]).output
    assert "starts signing" not in text


def test_cli_replace_keeps_a_pause_and_the_settings_it_has_no_flags_for(
    cli_env: Database,
) -> None:
    runner = CliRunner()
    first = [*ADD, "--name", "Canvas prod", "--person-id-from", "email", "--audience", "aud-1"]
    assert runner.invoke(app, first).exit_code == 0
    with cli_env.uow() as uow:  # as the API sets them (the CLI has no flags for them)
        dest = uow.destinations.get("uni", "canvas")
        assert dest is not None and dest.config["concurrency"] == 8  # a new one: the defaults
        score_only = ["https://purl.imsglobal.org/spec/lti-ags/scope/score"]
        config = {**dest.config, "concurrency": 3, "tag": "gradesync", "scopes": score_only}
        uow.destinations.upsert(replace(dest, config=config), datetime.now(UTC))
        uow.commit()
    paused = runner.invoke(
        app, ["destinations", "pause", "canvas", "--tenant", "uni", "--reason", "term closed"]
    )
    assert paused.exit_code == 0, paused.output
    # a second deployment: the registration is replaced, the admin's pause and settings stay,
    # and so do the options this command leaves out (who a learner is must not change)
    bare = ADD[: ADD.index("--profile")]  # no profile, no hosts
    replaced = runner.invoke(app, [*bare, "--deployment-id", "2:def", "--replace"])
    assert replaced.exit_code == 0, replaced.output
    # an update of a registration that is not there is refused (as the API's PUT), not made
    other = [*bare[: bare.index("--id") + 1], "nope", *bare[bare.index("--id") + 2 :]]
    missing = runner.invoke(app, [*other, "--replace"])
    assert missing.exit_code == 3, missing.output
    shown = runner.invoke(app, ["platforms", "show", "--tenant", "uni", "canvas", "--json"])
    view = json.loads(shown.output)
    assert view["deployment_ids"] == ["1:abc", "2:def"]
    assert view["enabled"] is False
    assert (view["concurrency"], view["tag"]) == (3, "gradesync")
    assert (view["profile"], view["person_id_from"], view["audience"]) == (
        "canvas",
        "email",
        "aud-1",
    )
    assert (view["name"], view["allowed_hosts"]) == ("Canvas prod", ["school.instructure.com"])
    assert view["scopes"] == score_only  # no more than the LMS granted
    listed = runner.invoke(app, ["platforms", "list", "--tenant", "uni", "--json"])
    [row] = json.loads(listed.output)
    assert row["enabled"] is False and row["pause_reason"] == "term closed"


def test_api_replace_keeps_what_it_leaves_out(db: Database, tmp_path: Path) -> None:
    api = ApiEnv(db, tmp_path)
    c = api.client
    h = {"Authorization": f"Bearer {api.tenant('uni')}"}
    made = c.post("/api/v1/platforms", json={**GOOD, "concurrency": 3, "tag": "gs"}, headers=h)
    assert made.status_code == 201, made.text
    other = {**GOOD, "id": "other", "deployment_ids": ["9:zz"]}
    fresh = c.post("/api/v1/platforms", json=other, headers=h).json()
    assert (fresh["enabled"], fresh["concurrency"], fresh["tag"]) == (True, 8, "grade")
    r = c.post("/api/v1/destinations/canvas/pause", json={"reason": "term closed"}, headers=h)
    assert r.status_code == 200 and r.json()["enabled"] is False
    # a replace that does not mention them: the pause holds, the settings stay
    wider = {**GOOD, "deployment_ids": ["1:abc", "2:x"]}
    for body in (wider, {**wider, "enabled": None, "concurrency": None, "tag": None}):
        put = c.put("/api/v1/platforms/canvas", json=body, headers=h)
        assert put.status_code == 200, put.text
        shown = c.get("/api/v1/platforms/canvas", headers=h).json()
        assert shown["deployment_ids"] == ["1:abc", "2:x"]
        assert (shown["enabled"], shown["pause_reason"]) == (False, "term closed")
        assert (shown["concurrency"], shown["tag"]) == (3, "gs")
    # what the body says wins
    put = c.put(
        "/api/v1/platforms/canvas",
        json={**wider, "enabled": True, "concurrency": 2, "tag": "grade"},
        headers=h,
    )
    assert put.status_code == 200, put.text
    shown = c.get("/api/v1/platforms/canvas", headers=h).json()
    assert (shown["enabled"], shown["concurrency"], shown["tag"]) == (True, 2, "grade")


def test_api_platforms(db: Database, tmp_path: Path) -> None:
    api = ApiEnv(db, tmp_path)
    token = api.tenant("uni")
    other = api.tenant("college")
    c = api.client
    h = {"Authorization": f"Bearer {token}"}
    assert c.post("/api/v1/platforms", json=GOOD).status_code == 401
    bad = c.post("/api/v1/platforms", json={**GOOD, "key_set_url": "not a url"}, headers=h)
    assert bad.status_code == 422
    assert [(d["field"], d["rule"]) for d in bad.json()["detail"]] == [("key_set_url", "url")]
    made = c.post("/api/v1/platforms", json=GOOD, headers=h)
    assert made.status_code == 201, made.text
    assert made.json()["tool"]["oidc_login_url"].endswith("/lti/login")
    assert c.post("/api/v1/platforms", json=GOOD, headers=h).status_code == 409
    assert [p["id"] for p in c.get("/api/v1/platforms", headers=h).json()] == ["canvas"]
    # another tenant sees nothing and cannot take the same issuer + client id
    oh = {"Authorization": f"Bearer {other}"}
    assert c.get("/api/v1/platforms", headers=oh).json() == []
    assert c.get("/api/v1/platforms/canvas", headers=oh).status_code == 404
    assert c.post("/api/v1/platforms", json=GOOD, headers=oh).status_code == 409  # same deployment
    put = c.put(
        "/api/v1/platforms/canvas", json={**GOOD, "deployment_ids": ["1:abc", "2:x"]}, headers=h
    )
    assert put.status_code == 200 and put.json()["deployment_ids"] == ["1:abc", "2:x"]
    assert c.get("/api/v1/lti/rejections", headers=h).json() == []
    assert c.get("/api/v1/lti/tool", headers=h).json()["jwks_url"].endswith("/lti/jwks.json")


def test_each_platforms_command_makes_one_runtime(
    cli_env: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tenant check and the command share one runtime: one engine and one schema check
    per command, and each one closed."""
    made: list[Runtime] = []
    create = Runtime.create

    def counted(*args: Any, **kwargs: Any) -> Runtime:
        rt = create(*args, **kwargs)
        made.append(rt)
        return rt

    monkeypatch.setattr(Runtime, "create", staticmethod(counted))
    closed: list[Runtime] = []
    close = Runtime.close
    monkeypatch.setattr(Runtime, "close", lambda self: (closed.append(self), close(self))[1])
    runner = CliRunner()
    for argv in (
        ADD,
        ["platforms", "list", "--tenant", "uni"],
        ["platforms", "show", "--tenant", "uni", "canvas"],
        [
            "lti11",
            "add-consumer",
            "--tenant",
            "uni",
            "--id",
            "moodle",
            "--name",
            "Moodle",
            "--key",
            "k1",
            "--generate-secret",
            "--allowed-host",
            "moodle.example.edu",
        ],
        ["lti11", "list", "--tenant", "uni"],
    ):
        made.clear()
        closed.clear()
        done = runner.invoke(app, argv)
        assert done.exit_code == 0, (argv, done.output)
        assert len(made) == 1 and closed == made, argv
