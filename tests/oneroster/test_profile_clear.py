"""A SIS connection's optional settings (the profile's knobs, the scopes, the token URL), once
set, go back to their default with `clear` (the API) or `--clear` (`gradesync sis add`):
before, a value left out or null kept what was set, so a setting given by mistake stayed.
A name that is no optional setting, or one also given a value, is refused naming `clear`,
and nothing changes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gradesync.cli import app
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services.sis import CLEARABLE, DEFAULT_SCOPES, PROFILE_KEYS
from tests.support.api import ApiEnv

from .test_api_refusals import _connected, _problems, _stored

PROFILE = {
    "name_max_length": 40,
    "due_date_required": False,
    "due_date_inside_term": True,
    "may_create_categories": False,
    "category_match": "name",
    "default_category": "cat-hw",
    "concurrency": 2,
}
OTHER_SCOPES = ["https://purl.imsglobal.org/spec/or/v1p2/scope/gradebook.createput"]


def test_every_optional_setting_is_cleared_through_the_api(
    api: ApiEnv, sis: RunningSandbox
) -> None:
    assert set(PROFILE) == set(PROFILE_KEYS)  # every knob of the profile is tried
    admin = _connected(api, sis)
    custom = sis.base_url + "/oauth/other-token"
    body = {"profile": PROFILE, "scopes": OTHER_SCOPES, "token_url": custom}
    assert admin.put("/sis/connections/sis", json=body).status_code == 200
    for key in CLEARABLE:
        before, _ = _stored(api)
        assert key in before, key
        r = admin.put("/sis/connections/sis", json={"clear": [key]})
        assert r.status_code == 200, r.text
        after, _ = _stored(api)
        if key == "scopes":
            assert after["scopes"] == list(DEFAULT_SCOPES)
        else:
            assert key not in after and key not in r.json()["config"], key
        # only that one: every other setting kept its value
        assert {k: v for k, v in after.items() if k != key} == {
            k: v for k, v in before.items() if k != key
        }
    # the connection works on its defaults
    steps = admin.post("/sis/connections/sis/check").json()
    assert all(s["passed"] for s in steps), steps


def test_a_bad_clear_is_refused_naming_it_and_changes_nothing(
    api: ApiEnv, sis: RunningSandbox
) -> None:
    admin = _connected(api, sis)
    assert (
        admin.put("/sis/connections/sis", json={"profile": {"concurrency": 2}}).status_code == 200
    )
    before = _stored(api)
    r = admin.put(
        "/sis/connections/sis",
        json={
            "clear": ["base_url", "concurrency", "nope"],
            "profile": {"concurrency": 3},
            "token_url": "https://user:pw@sis.example.org/token",
        },
    )
    # every problem at once, the clear's with the others
    assert _problems(r) == [
        ("clear[0]", "one_of"),
        ("clear[1]", "exclusive"),
        ("clear[2]", "one_of"),
        ("token_url", "url"),
    ]
    said = [p["msg"] for p in r.json()["detail"]]
    assert "'base_url' is no optional setting" in said[0] and "default_category" in said[0]
    assert said[1] == "concurrency is given a value and cleared: give one or the other."
    assert _stored(api) == before


def test_the_cli_clears_with_clear(
    api: ApiEnv, sis: RunningSandbox, api_cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = _connected(api, sis)
    body = {"profile": PROFILE}
    assert admin.put("/sis/connections/sis", json=body).status_code == 200
    monkeypatch.setenv("GRADESYNC_OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
    add = ["sis", "add", "sis", "-t", "t1", "--no-check"]
    r = api_cli.invoke(
        app, [*add, "--clear", "default-category", "--clear", "due_date_inside_term"]
    )
    assert r.exit_code == 0, r.output
    config, _ = _stored(api)
    assert "default_category" not in config and "due_date_inside_term" not in config
    assert config["category_match"] == "name" and config["concurrency"] == 2

    before = _stored(api)
    r = api_cli.invoke(app, [*add, "--clear", "concurrency", "--concurrency", "3"])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: --clear: concurrency is given a value and cleared"), r.output
    assert "[exclusive]" in r.output
    r = api_cli.invoke(app, [*add, "--clear", "due-date-required", "--due-date-required"])
    assert r.exit_code == 2, r.output
    assert "error: --clear: due-date-required is given a value and cleared" in r.output
    # named as the CLI takes them, with dashes (the API's message has underscores, above)
    for typed in ("client-id", "client_id"):
        r = api_cli.invoke(app, [*add, "--clear", typed])
        assert r.exit_code == 2, r.output
        [line] = r.output.splitlines()
        assert line == (
            "error: --clear: 'client-id' is no optional setting; settings that can be cleared: "
            + ", ".join(k.replace("_", "-") for k in CLEARABLE)
            + ". [one_of]"
        ), line
        assert "token-url, scopes, name-max-length" in line
        assert "_" not in line.removesuffix(" [one_of]")
    assert _stored(api) == before
