"""The OneRoster `filter` query parameter: `field op 'value'` joined by AND or OR.

Operators: = != > >= < <= ~ (contains). Fields may be dotted (`class.sourcedId`). One kind of
logical operator per filter, as the specification allows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_CLAUSE = re.compile(r"\s*([A-Za-z][\w.]*)\s*(!=|>=|<=|=|>|<|~)\s*'((?:[^']|'')*)'\s*")
_JOIN = re.compile(r"(AND|OR)\b")


class FilterError(ValueError):
    pass


def _value(obj: dict[str, Any], field: str) -> Any:
    current: Any = obj
    for part in field.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def _compare(actual: Any, op: str, expected: str) -> bool:
    if actual is None:
        return op == "!="
    if isinstance(actual, bool):
        actual = str(actual).lower()
    if isinstance(actual, int | float):
        try:
            number = float(expected)
        except ValueError:
            left: Any = str(actual)
            right: Any = expected
        else:
            left, right = float(actual), number
    else:
        left, right = str(actual), expected
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op == "~":
        return str(expected).lower() in str(actual).lower()
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    if op == "<":
        return bool(left < right)
    return bool(left <= right)


def parse(text: str, allowed_fields: set[str]) -> Callable[[dict[str, Any]], bool]:
    """Compile a filter; raises FilterError naming the problem."""
    clauses: list[tuple[str, str, str]] = []
    joins: set[str] = set()
    position = 0
    while True:
        match = _CLAUSE.match(text, position)
        if match is None:
            raise FilterError(f"filter: cannot parse at {text[position:]!r}; use field='value'")
        field, op, raw = match.groups()
        if field.split(".")[0] not in allowed_fields:
            raise FilterError(f"filter: unknown field {field!r}")
        clauses.append((field, op, raw.replace("''", "'")))
        position = match.end()
        if position >= len(text):
            break
        join = _JOIN.match(text, position)
        if join is None:
            raise FilterError(f"filter: expected AND or OR at {text[position:]!r}")
        joins.add(join.group(1))
        position = join.end()
    if len(joins) > 1:
        raise FilterError("filter: use either AND or OR, not both")
    combine = any if joins == {"OR"} else all

    def matches(obj: dict[str, Any]) -> bool:
        return combine(_compare(_value(obj, f), op, v) for f, op, v in clauses)

    return matches
