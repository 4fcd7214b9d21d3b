"""`gradesync sis add` refusals name the command line's options, where each problem is and in
its words: they were located at the option but said the API's body fields ("--base-url:
base_url must be ...", "Give base_url again", "category_match must be 'id' or 'name'")."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from gradesync.cli import app
from gradesync.services import sis
from tests.support.api import ApiEnv

# the API's names of what `sis add` takes (its body's fields, its profile's settings)
API_NAMES = ("base_url", "token_url", "client_id", "client_secret", *sis.PROFILE_KEYS)


def _refusals(output: str) -> list[tuple[str, str, str]]:
    """Each `error: option: message [rule]` line as (option, message, rule)."""
    found = [re.fullmatch(r"error: (\S+): (.*) \[(\w+)\]", line) for line in output.splitlines()]
    assert all(found), output
    return [(m.group(1), m.group(2), m.group(3)) for m in found if m]


def test_every_refusal_names_the_option_not_the_apis_field(api: ApiEnv, api_cli: CliRunner) -> None:
    api.tenant("t1", "admin")
    r = api_cli.invoke(
        app,
        [
            "sis", "add", "sis2", "-t", "t1", "--no-check",
            "--base-url", "https://user:pw@sis.example.edu/",
            "--client-id", "gradesync", "--client-secret", "s3cret",
            "--category-match", "title", "--default-category", " ",
            "--name-max-length", "0", "--concurrency", "100",
        ],
    )  # fmt: skip
    assert r.exit_code == 2, r.output
    said = _refusals(r.output)
    assert [(option, rule) for option, _, rule in said] == [
        ("--base-url", "url"),
        ("--name-max-length", "positive_integer"),
        ("--category-match", "one_of"),
        ("--concurrency", "range"),
        ("--default-category", "not_blank"),
    ], r.output
    for _, message, _ in said:
        # an API name said as is, not as the option (`--concurrency`) that holds it
        assert not [n for n in API_NAMES if re.search(rf"(?<![\w-]){n}\b", message)], message
    assert ("--category-match", "--category-match must be 'id' or 'name'.", "one_of") in said
    assert ("--concurrency", "--concurrency must be a whole number from 1 to 64.", "range") in said
    assert said[0][1].startswith("--base-url must be an absolute http(s) URL without credentials")
    with api.db.uow() as uow:
        assert uow.destinations.get("t1", "sis2") is None


def test_a_stored_url_refused_now_is_given_again_by_its_option(
    api: ApiEnv, api_cli: CliRunner
) -> None:
    """A base URL saved before gradesync refused its address: the change is refused until it
    is given again, which the message said by the API's field (`Give base_url again`)."""
    api.tenant("t1", "admin")
    rt = api.runtime
    sis.add_connection(  # no outbound rule checked it: as one saved before the rule
        rt.db.uow, rt.clock, tenant_id="t1", destination_id="sis", name="Old",
        base_url="https://10.1.2.3/ims/oneroster/gradebook/v1p2", client_id="gradesync",
        client_secret="s3cret",
    )  # fmt: skip
    r = api_cli.invoke(app, ["sis", "add", "sis", "-t", "t1", "--no-check", "--name", "New"])
    assert r.exit_code == 2, r.output
    [(option, message, rule), *_] = _refusals(r.output)
    assert (option, rule) == ("--base-url", "address"), r.output
    assert message.startswith("The --base-url stored for this connection is refused now:")
    assert message.endswith("Give --base-url again in this change."), message
