"""Attempts carry no foreign keys to their activity and person (migration 0024): ingest checks
both, and what it checked holds because nothing deletes a tenant, course, activity or person.
A change that adds such a deletion fails here, and must delete the attempts with it (then
extend the allowance below)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).parents[2] / "src" / "gradesync"
FACT_TABLES = {"tenants", "courses", "activities", "people"}
# sandbox/ is the test LMS, with tables of its own
SKIP = {"sandbox"}
RAW_DELETE = re.compile(r"\bDELETE\s+FROM\s+\"?(\w+)", re.IGNORECASE)


def _deleted_tables(path: Path) -> set[str]:
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        # sqlalchemy's delete(t.people) / delete(schema.people) / delete(people)
        if isinstance(node, ast.Call) and ast.unparse(node.func) in {"delete", "sa.delete"}:
            for arg in node.args[:1]:
                found.add(ast.unparse(arg).rsplit(".", 1)[-1])
        # table.delete()
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "delete"
            and not node.args
        ):
            found.add(ast.unparse(node.func.value).rsplit(".", 1)[-1])
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= {m.lower() for m in RAW_DELETE.findall(node.value)}
    return found


def test_nothing_deletes_a_tenant_course_activity_or_person() -> None:
    offenders = {
        str(path.relative_to(SRC)): sorted(_deleted_tables(path) & FACT_TABLES)
        for path in SRC.rglob("*.py")
        if not SKIP & set(path.relative_to(SRC).parts)
    }
    assert {p: t for p, t in offenders.items() if t} == {}


def test_the_scan_sees_each_way_of_deleting(tmp_path: Path) -> None:
    code = tmp_path / "x.py"
    code.write_text(
        "delete(t.people)\n"
        "schema.courses.delete()\n"
        "conn.execute(text('DELETE FROM activities WHERE id = 1'))\n"
        'conn.exec_driver_sql("delete from \\"tenants\\"")\n'
        "delete(t.users)\n"
    )
    assert _deleted_tables(code) & FACT_TABLES == FACT_TABLES
