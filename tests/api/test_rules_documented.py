"""Every rule a `422` (or the `400`) can name is in docs/api.md: clients program against
`rule`, so one they cannot look up is a defect. The rules are found where they are made:
the schema's (`errors._RULES`), the general ones (`statuses.RULES`), and every
`InvalidInput.one`, `FieldProblem` or `problem` call with a literal rule in the code the API
reaches (the command line's own are not API answers)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from gradesync.web.api import errors, statuses
from tests.support.api import ApiEnv

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


# where an LMS's check steps are made (a SIS's: adapters/destinations/oneroster*.py)
CHECK_STEPS = (
    "adapters/destinations/ags.py",
    "adapters/destinations/lti11.py",
    "services/check_test_result.py",
    "services/destination_check.py",
    "services/diagnostics.py",
)


def test_every_lms_check_step_names_a_documented_code() -> None:
    """A step of `POST /destinations/{id}/check` is for a program by its `code`: every step
    made names one, and each literal code is in docs/api.md."""
    codes: dict[str, str] = {}
    for name in CHECK_STEPS:
        tree = ast.parse((SRC / name).read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and ast.unparse(node.func) == "ProbeStep"):
                continue
            given = [k.value for k in node.keywords if k.arg == "code"] + node.args[4:5]
            assert given, f"{name}:{node.lineno} makes a step without a code"
            for part in ast.walk(given[0]):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    codes[part.value] = f"{name}:{node.lineno}"
    assert len(codes) > 15  # the scan found them
    doc = DOC.read_text()
    assert {c: where for c, where in codes.items() if f"`{c}`" not in doc} == {}


def test_every_error_status_the_api_answers_is_in_the_errors_table(api: ApiEnv) -> None:
    """The Errors table of docs/api.md has a row for every 4xx and 5xx status an `/api/v1`
    operation says it answers (401 and 403 are the table on keys above it; the LTI
    endpoints answer pages, docs/lti13.md): a malformed body's `400` was explained only
    below the table."""
    spec = api.client.get("/openapi.json").json()
    answered = {
        int(status)
        for path, item in spec["paths"].items()
        if path.startswith("/api/v1/")
        for op in item.values()
        for status in op.get("responses", {})
        if status.isdigit() and int(status) >= 400 and int(status) not in (401, 403)
    }
    doc = DOC.read_text()
    table = doc.split("## Errors", 1)[1].split("\n\n", 2)[1]
    rows = {int(m) for m in re.findall(r"^\| (\d{3}) \|", table, re.M)}
    assert 400 in answered and answered <= rows, sorted(answered - rows)
