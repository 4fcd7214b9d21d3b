"""A SIS profile's `name_max_length` is at most 1024, the longest activity title gradesync
takes: it was unbounded, so a typo (30000 for 30) was stored as a limit that never applies."""

from __future__ import annotations

from dataclasses import replace
from html import unescape

from typer.testing import CliRunner

from gradesync.cli import app
from gradesync.domain.passback import NAME_MAX_LENGTH_MOST, profile_from_config
from gradesync.services.ingest import MAX_TITLE
from tests.support.api import ApiEnv, Caller
from tests.support.console import form_fields

from .test_api_refusals import _problems


def _config(api: ApiEnv) -> dict[str, object]:
    with api.db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None
    return dict(dest.config)


def test_the_bound_is_the_longest_title() -> None:
    assert NAME_MAX_LENGTH_MOST == MAX_TITLE


def test_the_api_refuses_a_limit_over_the_bound(api: ApiEnv) -> None:
    admin = Caller(api.client, api.tenant("t1", "admin"))
    body = {"file_based": True, "profile": {"name_max_length": 30}}
    assert admin.put("/sis/connections/sis", json=body).status_code == 200
    for wrong, rule in ((NAME_MAX_LENGTH_MOST + 1, "maximum"), (30000, "maximum"), (0, "minimum")):
        r = admin.put("/sis/connections/sis", json={"profile": {"name_max_length": wrong}})
        assert _problems(r) == [("profile.name_max_length", rule)], wrong
        assert _config(api)["name_max_length"] == 30
    body = {"profile": {"name_max_length": NAME_MAX_LENGTH_MOST}}
    assert admin.put("/sis/connections/sis", json=body).status_code == 200
    assert _config(api)["name_max_length"] == NAME_MAX_LENGTH_MOST


def test_a_limit_stored_before_the_bound_keeps_working(api: ApiEnv) -> None:
    """Read as it is (it cuts no name): the connection is not broken by the new bound, and a
    change that does not give the setting is taken."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    assert admin.put("/sis/connections/sis", json={"file_based": True}).status_code == 200
    with api.db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
        assert dest is not None
        uow.destinations.upsert(
            replace(dest, config={**dest.config, "name_max_length": 5000}),
            api.runtime.clock.now(),
        )
        uow.commit()
    assert profile_from_config(_config(api)).name_max_length == 5000
    assert admin.put("/sis/connections/sis", json={"name": "District SIS"}).status_code == 200


def test_the_cli_refuses_it_by_its_option(api: ApiEnv, api_cli: CliRunner) -> None:
    api.tenant("t1", "admin")
    add = ["sis", "add", "sis", "-t", "t1", "--file-based", "--name-max-length"]
    r = api_cli.invoke(app, [*add, "30000"])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: --name-max-length:") and "[maximum]" in r.output
    # in the command line's words: the option, and the way to no limit (the API's field and
    # the console's empty box were named)
    [line] = r.output.splitlines()
    assert line == (
        "error: --name-max-length: --name-max-length is at most 1024 characters, the longest "
        "activity title gradesync takes (got 30000); `--clear name-max-length` takes the "
        "limit away. [maximum]"
    ), line
    r = api_cli.invoke(app, [*add, "0"])
    assert r.exit_code == 2, r.output
    assert r.output.splitlines() == [
        "error: --name-max-length: --name-max-length is a whole number of characters, 1 or "
        "more (got 0); `--clear name-max-length` takes the limit away. [positive_integer]"
    ], r.output
    with api.db.uow() as uow:
        assert uow.destinations.get("t1", "sis") is None
    r = api_cli.invoke(app, [*add, "1024"])
    assert r.exit_code == 0, r.output


def test_each_reader_is_told_its_own_way_to_no_limit(api: ApiEnv, api_cli: CliRunner) -> None:
    """The use case's words said "leave it empty for no limit" to every reader; an API
    client sends no empty field (and a null keeps the limit set): it lists the setting in
    `clear`. The command line clears its option; the console's box is left empty."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    assert admin.put("/sis/connections/sis", json={"file_based": True}).status_code == 200
    api_way = '`"clear": ["name_max_length"]` takes the limit away.'
    for wrong, rule, said in (
        (30000, "maximum", "is at most 1024 characters, the longest activity title gradesync "
         "takes (got 30000); "),
        (0, "minimum", "is a whole number of characters, 1 or more (got 0); "),
    ):  # fmt: skip
        r = admin.put("/sis/connections/sis", json={"profile": {"name_max_length": wrong}})
        [problem] = r.json()["detail"]
        assert (problem["field"], problem["rule"]) == ("profile.name_max_length", rule)
        assert problem["msg"] == f"name_max_length {said}{api_way}", problem
    # its OpenAPI document still gives the bounds
    spec = api.client.get("/openapi.json").json()["components"]["schemas"]["SisProfileIn"]
    [bounded] = [s for s in spec["properties"]["name_max_length"]["anyOf"] if "maximum" in s]
    assert (bounded["minimum"], bounded["maximum"]) == (1, NAME_MAX_LENGTH_MOST)
    # the API's way takes it away
    assert admin.put("/sis/connections/sis", json={"profile": {"name_max_length": 30}}).is_success
    cleared = admin.put("/sis/connections/sis", json={"clear": ["name_max_length"]})
    assert cleared.status_code == 200 and "name_max_length" not in _config(api)
    # the console's form
    api.console_admin("t1")
    opened = form_fields(api.client.get("/console/sis/sis/edit").text)
    refused = api.client.post("/console/sis/sis/edit", data={**opened, "name_max_length": "0"})
    said = " ".join(unescape(refused.text).split())
    assert refused.status_code == 422
    assert (
        "Longest line item title: name_max_length is a whole number of characters, 1 or more "
        "(got 0); leave it empty for no limit." in said
    ), said
    # and the command line's, which names its option (test_the_cli_refuses_it_by_its_option)
    r = api_cli.invoke(app, ["sis", "add", "sis", "-t", "t1", "--name-max-length", "5000"])
    assert r.exit_code == 2 and "`--clear name-max-length` takes the limit away" in r.output
    assert "empty" not in r.output and '"clear"' not in r.output, r.output
