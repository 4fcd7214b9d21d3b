"""A setting of the SIS profile is added in one place, services.sis.PROFILE_KEYS: `gradesync
sis add` and the console's settings form read each by its name (`given_profile`), so an
entrypoint without a field for one fails here, not by dropping the setting unseen."""

from __future__ import annotations

import inspect

import pytest

from gradesync.cli import sis as cli_sis
from gradesync.services.sis import PROFILE_KEYS, given_profile
from gradesync.web.console.sis_settings import LABELS
from tests.support.api import ApiEnv
from tests.support.console import form_fields


def test_given_profile_keeps_the_settings_given_and_needs_every_one() -> None:
    fields = {"name": "Renamed", **dict.fromkeys(PROFILE_KEYS), "concurrency": 2}
    assert given_profile({**fields, "due_date_required": False}) == {
        "due_date_required": False,  # given, though false
        "concurrency": 2,
    }
    with pytest.raises(KeyError, match="default_category"):
        given_profile({k: v for k, v in fields.items() if k != "default_category"})


def test_sis_add_has_an_option_for_every_profile_setting() -> None:
    assert set(PROFILE_KEYS) <= set(inspect.signature(cli_sis.add).parameters)


def test_the_settings_form_has_a_labelled_field_for_every_profile_setting(api: ApiEnv) -> None:
    api.district_sis()
    api.console_admin("t1")
    fields = form_fields(api.client.get("/console/sis/sis/edit").text)
    assert set(PROFILE_KEYS) <= set(fields)
    assert set(PROFILE_KEYS) <= set(LABELS)
