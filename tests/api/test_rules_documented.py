"""Every rule a `422` (or the `400`) can name is in docs/api.md: clients program against
`rule`, so one they cannot look up is a defect. The rules are found where they are made:
the schema's (`errors._RULES`), the general ones (`statuses.RULES`), and every
`InvalidInput.one`, `FieldProblem` or `problem` call with a literal rule in the code the API
reaches (the command line's own are not API answers)."""

from __future__ import annotations

import ast
from pathlib import Path

from gradesync.web.api import errors, statuses

SRC = Path(__file__).parents[2] / "src" / "gradesync"
DOC = Path(__file__).parents[2] / "docs" / "api.md"
MAKERS = {"InvalidInput.one", "FieldProblem", "problem"}


def _rules_in_code() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in SRC.rglob("*.py"):
        if {"cli", "sandbox"} & set(path.relative_to(SRC).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) in MAKERS
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            ):
                found.setdefault(node.args[1].value, str(path.relative_to(SRC)))
    return found


def test_every_rule_the_api_names_is_documented() -> None:
    rules = dict.fromkeys([*errors._RULES.values(), *statuses.RULES], "web/api") | _rules_in_code()
    assert len(rules) > 60  # the scan found the calls (a rename of the makers would hide them)
    doc = DOC.read_text()
    missing = {rule: where for rule, where in rules.items() if f"`{rule}`" not in doc}
    assert not missing, f"rules missing from docs/api.md (rule: where it is made): {missing}"
