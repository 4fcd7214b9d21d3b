"""Where each grade policy setting comes from, and changes to one layer of settings.

Settings are layered: built-in default < tenant < course < activity; the most specific layer
that sets a value wins (`domain.policy.resolve_settings` computes the values). This module
says, per setting, which layer gave the value, so a person can see why a policy applies, and
turns a person's edits (text from a form or a command line) into a layer, naming the field and
the rule when a value is wrong. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from enum import Enum, StrEnum
from typing import Any

from gradesync.domain.errors import FieldProblem, InvalidInput
from gradesync.domain.model import (
    AttemptSelection,
    ExtraCredit,
    NameRule,
    PastDueZeros,
    PolicySettings,
)
from gradesync.domain.policy import (
    DEFAULT_POLICY,
    GRACE_RULE,
    MAX_GRACE_MINUTES,
    ResolvedPolicy,
    resolve_settings,
)

__all__ = [
    "GRADE_SETTINGS",
    "Layer",
    "SettingSource",
    "default_value",
    "explain_settings",
    "settings_as_json",
    "with_changes",
]


class Layer(StrEnum):
    DEFAULT = "default"
    TENANT = "tenant"
    COURSE = "course"
    ACTIVITY = "activity"


# The settings that shape grades, in the order pages list them. (`roster_match` lives in the
# tenant's layer too but says how rosters match people, not what a grade is.)
GRADE_SETTINGS: tuple[str, ...] = (
    "attempt_selection",
    "extra_credit",
    "past_due_zeros",
    "grace_period_minutes",
    "minimum_points",
    "name_rule",
    "keep_lms_edits",
)

_CHOICES: dict[str, type[StrEnum]] = {
    "attempt_selection": AttemptSelection,
    "extra_credit": ExtraCredit,
    "past_due_zeros": PastDueZeros,
    "name_rule": NameRule,
}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
# Text that clears a layer's value, so the setting inherits again.
INHERIT = {"", "inherit", "null", "none", "default"}


@dataclass(frozen=True, slots=True)
class SettingSource:
    name: str
    value: Any  # the effective value (an enum member, int, float or bool)
    source: Layer  # the layer that set it, or DEFAULT


def explain_settings(
    tenant: PolicySettings | None,
    course: PolicySettings | None = None,
    activity: PolicySettings | None = None,
) -> list[SettingSource]:
    """Each grade setting's effective value and the layer it comes from. Agrees with
    `resolve_settings` by construction: the values are read from its result."""
    named = [(Layer.TENANT, tenant), (Layer.COURSE, course), (Layer.ACTIVITY, activity)]
    layers = [(n, s) for n, s in named if s is not None]
    resolved: ResolvedPolicy = resolve_settings(*(s for _, s in layers))
    out: list[SettingSource] = []
    for name in GRADE_SETTINGS:
        source = Layer.DEFAULT
        for layer, settings in layers:
            if getattr(settings, name) is not None:
                source = layer
        out.append(SettingSource(name, getattr(resolved, name), source))
    return out


def _parse(name: str, raw: object) -> Any:
    """One value from text (a form, a command line) or JSON; None means inherit."""
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in INHERIT):
        return None
    text = raw.strip() if isinstance(raw, str) else raw
    if name in _CHOICES:
        choices = _CHOICES[name]
        try:
            return choices(str(text))
        except ValueError:
            allowed = ", ".join(c.value for c in choices)
            raise InvalidInput.one(
                name, "one_of", f"{name} must be one of {allowed} (or inherit)."
            ) from None
    if name == "keep_lms_edits":
        if isinstance(text, bool):
            return text
        if isinstance(text, str) and text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise InvalidInput.one(name, "boolean", f"{name} must be true or false (or inherit).")
    if name == "grace_period_minutes":
        try:
            minutes = (
                int(text) if isinstance(text, str | int) and not isinstance(text, bool) else None
            )
        except ValueError:
            minutes = None
        if minutes is None:
            raise InvalidInput.one(name, "integer", GRACE_RULE)
        if minutes < 0:
            raise InvalidInput.one(name, "not_negative", GRACE_RULE)
        if minutes > MAX_GRACE_MINUTES:
            raise InvalidInput.one(name, "maximum", GRACE_RULE)
        return minutes
    if name == "minimum_points":
        try:
            points = (
                float(text)
                if isinstance(text, str | int | float) and not isinstance(text, bool)
                else None
            )
        except ValueError:
            points = None
        if points is None or not math.isfinite(points):
            raise InvalidInput.one(
                name, "number", "The minimum points for sync is a finite number, 0 or more."
            )
        if points < 0:
            raise InvalidInput.one(
                name, "not_negative", "The minimum points for sync is a finite number, 0 or more."
            )
        return points
    if name == "roster_match":  # the tenant's, but no grade setting: say where it is set
        raise InvalidInput.one(
            name,
            "not_in_policy",
            "roster_match is not part of the grade policy: it is set for the whole tenant "
            "with `gradesync tenants roster-match`.",
        )
    allowed = ", ".join(GRADE_SETTINGS)
    raise InvalidInput.one(name, "unknown_setting", f"No setting {name!r}; settings: {allowed}.")


def with_changes(layer: PolicySettings, changes: Mapping[str, object]) -> PolicySettings:
    """`layer` with `changes` applied: a value sets the setting, None or "inherit" clears it.
    Settings not named keep their value. Every problem is reported at once; nothing is
    applied when any value is wrong."""
    problems: list[FieldProblem] = []
    values: dict[str, Any] = {}
    for name, raw in changes.items():
        try:
            values[name] = _parse(name, raw)
        except InvalidInput as exc:
            problems += exc.problems
    if problems:
        raise InvalidInput(problems)
    return replace(layer, **values)


def settings_as_json(layer: PolicySettings) -> dict[str, Any]:
    """A layer's set values as JSON (unset ones left out)."""
    out: dict[str, Any] = {}
    for f in fields(layer):
        value = getattr(layer, f.name)
        if value is not None:
            out[f.name] = value.value if isinstance(value, Enum) else value
    return out


def default_value(name: str) -> Any:
    return getattr(DEFAULT_POLICY, name)
