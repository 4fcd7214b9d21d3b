"""The stored SIS client secret goes only to the server it was given for: a change that sends
the token request to another server (a new token URL, or a new base URL while the token URL
is the default) must give the secret again, through the API, the CLI and the console alike.
Before, an admin could post the stored secret to a host of their choosing by changing the URL
and pressing Check connection, with the secret left blank."""

from __future__ import annotations

from html import unescape

from typer.testing import CliRunner

from gradesync.cli import app
from tests.support.api import ApiEnv, Caller
from tests.support.console import form_fields, form_token

ELSEWHERE = "https://other.example.net/oauth2/token"
NEEDS_SECRET = "A new token URL needs the client secret again."


def _config(api: ApiEnv) -> dict[str, object]:
    with api.db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None and dest.secret["client_secret"] == "s3cret"
    return dict(dest.config)


def test_the_api_asks_the_secret_again_for_another_token_server(api: ApiEnv) -> None:
    admin = Caller(api.client, api.district_sis())
    before = _config(api)
    for body in (
        {"token_url": ELSEWHERE},
        {"base_url": "https://other.example.net"},  # the default token URL moves with it
        {"token_url": "https://sis.example.org:8443/oauth2/token"},  # another port
        {"token_url": ELSEWHERE, "client_secret": ""},
    ):
        r = admin.put("/sis/connections/sis", json=body)
        assert r.status_code == 422, (body, r.text)
        found = [(p["field"], p["rule"]) for p in r.json()["detail"]]
        assert ("client_secret", "required") in found, (body, found)
        assert any(p["msg"].startswith(NEEDS_SECRET) for p in r.json()["detail"]), body
        assert _config(api) == before, body
    # the same server (another path, the port spelled out) keeps the stored secret
    for same in ("https://sis.example.org/oauth2/token", "https://SIS.example.org:443/t"):
        r = admin.put("/sis/connections/sis", json={"token_url": same})
        assert r.status_code == 200, r.text
    # with a token URL of its own, a new base URL does not move the secret
    r = admin.put("/sis/connections/sis", json={"base_url": "https://api.example.net"})
    assert r.status_code == 200, r.text
    r = admin.put("/sis/connections/sis", json={"token_url": ELSEWHERE, "client_secret": "n3w"})
    assert r.status_code == 200, r.text
    assert _stored_secret(api) == "n3w"


def _stored_secret(api: ApiEnv) -> str:
    with api.db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None
    return str(dest.secret["client_secret"])


def test_the_cli_asks_the_secret_again_for_another_token_server(
    api: ApiEnv, api_cli: CliRunner
) -> None:
    api.district_sis()
    before = _config(api)
    add = ["sis", "add", "sis", "-t", "t1", "--no-check"]
    for moved in (["--token-url", ELSEWHERE], ["--base-url", "https://other.example.net"]):
        r = api_cli.invoke(app, [*add, *moved])
        assert r.exit_code == 2, r.output
        assert r.output.startswith(f"error: --client-secret: {NEEDS_SECRET}"), r.output
        assert _config(api) == before
    r = api_cli.invoke(app, [*add, "--token-url", ELSEWHERE, "--client-secret", "n3w"])
    assert r.exit_code == 0, r.output
    assert _stored_secret(api) == "n3w"


def test_the_console_asks_the_secret_again_for_another_token_server(api: ApiEnv) -> None:
    api.district_sis(token_url=ELSEWHERE.replace("other.example.net", "auth.example.org"))
    before = _config(api)
    api.console_admin("t1")
    form = form_fields(api.client.get("/console/sis/sis/edit").text)
    assert form["client_secret"] == ""
    refused = api.client.post("/console/sis/sis/edit", data={**form, "token_url": ELSEWHERE})
    assert refused.status_code == 422
    said = " ".join(unescape(refused.text).split())
    assert f"Nothing was changed. Client secret: {NEEDS_SECRET}" in said, said
    assert _config(api) == before
    # the default token URL is on the base URL's server: the reset asks for the secret too
    token = form_token(api.client.get("/console/sis").text)
    reset = api.client.post("/console/sis/sis/token-url/default", data={"csrf": token})
    said = " ".join(unescape(reset.text).split())
    assert "District SIS was not changed: its default token URL is on another server" in said
    assert "Give the client secret again in its settings" in said
    assert _config(api) == before
    # given again, it is saved: here with the token URL left empty (back to the default)
    saved = api.client.post(
        "/console/sis/sis/edit", data={**form, "token_url": "", "client_secret": "n3w"}
    )
    assert "Saved the settings of District SIS." in saved.text
    assert "token_url" not in _config_any(api) and _stored_secret(api) == "n3w"


def _config_any(api: ApiEnv) -> dict[str, object]:
    with api.db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None
    return dict(dest.config)
