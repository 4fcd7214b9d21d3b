"""The rules of the ids gradesync stores: a source's ids (courses, activities, learners,
attempts' events) and the SIS sourcedIds it sends (students, classes, schools, sections,
categories). One rule for every entrypoint, so the API, the CLI and the console refuse alike."""

from __future__ import annotations

import re

from gradesync.domain.errors import FieldProblem

MAX_ID = 255
# C0 (NUL has a rule of its own), DEL and C1: no part of an id a SIS hands out, and a line
# break or a tab in one would split a row of the CSV files a file-based SIS imports
_CONTROL = re.compile(r"[\x01-\x1f\x7f-\x9f]")


def id_problems(field: str, value: str, what: str) -> list[FieldProblem]:
    """An id: not blank, at most MAX_ID characters, no NUL character (PostgreSQL cannot
    store one; refused on every backend alike)."""
    if not value or not value.strip():
        return [FieldProblem(field, "required", f"{what} is required and must not be blank.")]
    if len(value) > MAX_ID:
        return [FieldProblem(field, "too_long", f"{what} is at most {MAX_ID} characters.")]
    if "\x00" in value:
        return [
            FieldProblem(
                field, "nul_character", f"{what} must not contain a NUL character (\\u0000)."
            )
        ]
    return []


def sis_id_problems(
    field: str, value: str | None, what: str, *, required: bool = True
) -> list[FieldProblem]:
    """A SIS sourcedId (or an id one is matched to, as a person's SIS id or an enrollment's
    section): the rule of ids, and no control character. Not `required`, None or a blank
    passes."""
    if not required and (value is None or not value.strip()):
        return []
    problems = id_problems(field, value or "", what)
    if not problems and (found := _CONTROL.search(value or "")):
        problems.append(
            FieldProblem(
                field,
                "control_character",
                f"{what} must not contain a control character (found U+{ord(found[0]):04X}).",
            )
        )
    return problems


def control_character(value: str) -> str | None:
    """The first control character of `value` (NUL, C0, DEL or C1), as U+XXXX; None when it
    has none. An LTI 1.1 result id holding one cannot go back in a grade request (XML 1.0
    carries no NUL nor most of C0) and a NUL cannot be stored on PostgreSQL."""
    if "\x00" in value:
        return "U+0000"
    found = _CONTROL.search(value)
    return f"U+{ord(found[0]):04X}" if found else None


def is_sis_id(value: str | None) -> bool:
    """Whether `value` may stand as a SIS sourcedId (a launch's `lis_person_sourcedid` that
    may not is left out, not refused: the launch goes on)."""
    return bool(value) and not sis_id_problems("", value, "")
