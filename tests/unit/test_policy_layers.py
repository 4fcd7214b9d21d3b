"""Where each policy setting comes from (activity > course > tenant > built-in default), and
a person's edits to one layer, refused with the field and the rule when wrong."""

from __future__ import annotations

import pytest

from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import AttemptSelection, PastDueZeros, PolicySettings
from gradesync.domain.policy import resolve_settings
from gradesync.domain.policy_layers import (
    GRADE_SETTINGS,
    Layer,
    explain_settings,
    settings_as_json,
    with_changes,
)


def _sources(*layers: PolicySettings | None) -> dict[str, tuple[object, Layer]]:
    return {s.name: (s.value, s.source) for s in explain_settings(*layers)}


def test_the_most_specific_layer_that_sets_a_value_wins() -> None:
    tenant = PolicySettings(
        attempt_selection=AttemptSelection.LATEST,
        past_due_zeros=PastDueZeros.ON,
        grace_period_minutes=60,
    )
    course = PolicySettings(past_due_zeros=PastDueZeros.OFF, grace_period_minutes=0)
    activity = PolicySettings(attempt_selection=AttemptSelection.HIGHEST)
    got = _sources(tenant, course, activity)
    assert got["attempt_selection"] == (AttemptSelection.HIGHEST, Layer.ACTIVITY)
    assert got["past_due_zeros"] == (PastDueZeros.OFF, Layer.COURSE)
    assert got["grace_period_minutes"] == (0, Layer.COURSE)  # 0 is a value, not "unset"
    assert got["extra_credit"][1] is Layer.DEFAULT
    # the course's other activities: the tenant's selection
    assert _sources(tenant, course)["attempt_selection"] == (
        AttemptSelection.LATEST,
        Layer.TENANT,
    )
    # the values are the engine's own resolution
    resolved = resolve_settings(tenant, course, activity)
    assert {n: v for n, (v, _) in got.items()} == {n: getattr(resolved, n) for n in GRADE_SETTINGS}


def test_edits_set_clear_and_keep_and_bad_values_change_nothing() -> None:
    layer = PolicySettings(past_due_zeros=PastDueZeros.ON, grace_period_minutes=30)
    new = with_changes(layer, {"attempt_selection": "latest", "grace_period_minutes": "inherit"})
    assert settings_as_json(new) == {"attempt_selection": "latest", "past_due_zeros": "on"}
    assert with_changes(layer, {"keep_lms_edits": "false"}).keep_lms_edits is False
    assert with_changes(layer, {"minimum_points": 0.5}).minimum_points == 0.5
    with pytest.raises(InvalidInput) as err:
        with_changes(
            layer,
            {
                "attempt_selection": "best",
                "grace_period_minutes": "-1",
                "minimum_points": "nan",
                "keep_lms_edits": "maybe",
                "colour": "red",
            },
        )
    assert {(p.field, p.rule) for p in err.value.problems} == {
        ("attempt_selection", "one_of"),
        ("grace_period_minutes", "not_negative"),
        ("minimum_points", "number"),
        ("keep_lms_edits", "boolean"),
        ("colour", "unknown_setting"),
    }
    for raw, rule in (("1.5", "integer"), ("soon", "integer"), ("-1", "not_negative")):
        with pytest.raises(InvalidInput) as one:
            with_changes(layer, {"grace_period_minutes": raw})
        assert [(p.field, p.rule) for p in one.value.problems] == [("grace_period_minutes", rule)]
