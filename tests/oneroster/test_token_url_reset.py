"""A SIS connection's token URL, once set, goes back to its default (next to the API) with
an empty string, as `gradesync sis add --default-token-url` does: it could not be reset, so
a token URL given by mistake stayed. Left out, or null, it keeps what is set."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gradesync.cli import app
from gradesync.sandbox.testing import RunningSandbox
from tests.support.api import ApiEnv

from .test_api_refusals import _connected, _stored


def test_an_empty_token_url_goes_back_to_the_default(api: ApiEnv, sis: RunningSandbox) -> None:
    admin = _connected(api, sis)
    custom = sis.base_url + "/oauth/other-token"
    assert admin.put("/sis/connections/sis", json={"token_url": custom}).status_code == 200
    for keeps in ({}, {"token_url": None}, {"name": "SIS"}):
        assert admin.put("/sis/connections/sis", json=keeps).status_code == 200
        assert _stored(api)[0]["token_url"] == custom, keeps
    r = admin.put("/sis/connections/sis", json={"token_url": ""})
    assert r.status_code == 200, r.text
    assert "token_url" not in _stored(api)[0] and "token_url" not in r.json()["config"]
    # the connection asks the default token URL again, and it works
    steps = admin.post("/sis/connections/sis/check").json()
    assert steps[0]["passed"], steps
    assert "/ims/oneroster/oauth2/token" in steps[0]["evidence"], steps


def test_the_cli_resets_it_with_default_token_url(
    api: ApiEnv, sis: RunningSandbox, api_cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    _connected(api, sis)
    monkeypatch.setenv("GRADESYNC_OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
    add = ["sis", "add", "sis", "-t", "t1", "--no-check"]
    custom = sis.base_url + "/oauth/other-token"
    r = api_cli.invoke(app, [*add, "--token-url", custom])
    assert r.exit_code == 0, r.output
    assert _stored(api)[0]["token_url"] == custom
    r = api_cli.invoke(app, [*add, "--token-url", custom, "--default-token-url"])
    assert r.exit_code == 2 and r.output.startswith("error: --token-url:"), r.output
    assert "[one_of]" in r.output and _stored(api)[0]["token_url"] == custom
    r = api_cli.invoke(app, [*add, "--default-token-url"])
    assert r.exit_code == 0, r.output
    assert "token_url" not in _stored(api)[0]
