"""A refused value as JSON, in the API's shape: `{"loc", "field", "rule", "msg", "type"}`.
`loc` and `type` keep FastAPI's usual shape for generic clients; `field` and `rule` are the
stable part to program against (web/api/errors.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gradesync.domain.errors import FieldProblem


def _loc(field: str, where: str = "body") -> list[str | int]:
    loc: list[str | int] = [where]
    if field == where:  # the body as a whole (e.g. a batch over its size in all)
        return loc
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", field):
        loc.append(int(index) if index else name)
    return loc


@dataclass(frozen=True, slots=True)
class UrlProblem(FieldProblem):
    """A problem with a value the URL gave, not the body: named as its path or query
    parameter."""

    where: str = "path"  # or "query"


def problem_json(p: FieldProblem, where: str = "body") -> dict[str, Any]:
    return {
        "loc": _loc(p.field, p.where if isinstance(p, UrlProblem) else where),
        "field": p.field,
        "rule": p.rule,
        "msg": p.message,
        "type": p.rule,
    }
