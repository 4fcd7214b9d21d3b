"""A setting of the SIS profile is listed in one place, services.sis.PROFILE_KEYS:
`given_profile` takes a keyword for each (so `gradesync sis add`, which passes its options by
name, fails the type check when it leaves one out), the CLI has an option for each and hands
every one on, and the console's settings form has a labelled field for each."""

from __future__ import annotations

import inspect

import pytest
from typer.testing import CliRunner

from gradesync.cli import app
from gradesync.cli import sis as cli_sis
from gradesync.services.sis import PROFILE_KEYS, given_profile, settings_version
from gradesync.web.console.sis_settings import LABELS
from tests.support.api import ApiEnv
from tests.support.console import form_fields

GIVEN = {
    "name_max_length": 30,
    "due_date_required": False,
    "due_date_inside_term": True,
    "may_create_categories": False,
    "category_match": "name",
    "default_category": "Homework",
    "concurrency": 2,
}


def test_given_profile_takes_each_setting_by_its_own_name() -> None:
    assert list(inspect.signature(given_profile).parameters) == list(PROFILE_KEYS)
    assert set(GIVEN) == set(PROFILE_KEYS)
    assert given_profile(**GIVEN) == GIVEN  # each to its own key, a false one kept
    none = dict.fromkeys(PROFILE_KEYS)
    assert given_profile(**{**none, "concurrency": 2}) == {"concurrency": 2}


def test_sis_add_has_an_option_for_every_profile_setting() -> None:
    assert set(PROFILE_KEYS) <= set(inspect.signature(cli_sis.add).parameters)


def test_sis_add_hands_on_every_profile_setting(api: ApiEnv, api_cli: CliRunner) -> None:
    api.tenant("t1", "admin")
    options = [
        "--name-max-length", "30", "--due-date-optional", "--due-date-inside-term",
        "--no-create-categories", "--category-match", "name",
        "--default-category", "Homework", "--concurrency", "2",
    ]  # fmt: skip
    r = api_cli.invoke(app, ["sis", "add", "sis", "-t", "t1", "--file-based", *options])
    assert r.exit_code == 0, r.output
    with api.db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None
    assert {key: dest.config.get(key) for key in PROFILE_KEYS} == GIVEN


def test_the_settings_form_has_a_labelled_field_for_every_profile_setting(api: ApiEnv) -> None:
    api.district_sis()
    api.console_admin("t1")
    fields = form_fields(api.client.get("/console/sis/sis/edit").text)
    assert set(PROFILE_KEYS) <= set(fields)
    assert set(PROFILE_KEYS) <= set(LABELS)


def test_sis_add_prints_the_version_whole_on_a_line_of_its_own(
    api: ApiEnv, api_cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 80 columns `sis add` printed "saved (oneroster_csv), version" and the version on the
    next line, cut from its label; it is a line of its own, as `sis show` prints it, to copy
    whole for --expect-version."""
    api.tenant("t1", "admin")
    monkeypatch.setenv("COLUMNS", "80")
    r = api_cli.invoke(
        app, ["sis", "add", "a-connection-with-a-long-id", "-t", "t1", "--file-based"]
    )
    assert r.exit_code == 0, r.output
    with api.db.uow() as uow:
        dest = uow.destinations.get("t1", "a-connection-with-a-long-id")
    assert dest is not None
    assert f"version: {settings_version(dest)}\n" in r.output, r.output
