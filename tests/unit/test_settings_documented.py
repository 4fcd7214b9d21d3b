"""Every environment variable gradesync reads is documented, under its full name: each setting
in the settings table of docs/operations.md with its real default, and the variables commands
take their values from (`GRADESYNC_TENANT`, a password, a secret) somewhere in the docs. A
variable only in `--help` (`GRADESYNC_NEW_PASSWORD`), or shortened to `..._MAX_TRIES` in the
table, could not be found by its name."""

from __future__ import annotations

import re
from pathlib import Path

from gradesync.config import Settings

ROOT = Path(__file__).resolve().parents[2]
_VARIABLE = re.compile(r"\bGRADESYNC_[A-Z0-9_]*[A-Z0-9]\b")


def _docs() -> str:
    return "\n".join(
        p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    )


def _settings_table() -> dict[str, str]:
    """{variable: its default column} of docs/operations.md's settings table."""
    doc = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    table = doc[doc.index("| variable | default | |") :].split("\n\n", 1)[0]
    rows: dict[str, str] = {}
    for line in table.splitlines()[2:]:
        names, default = line.split("|")[1:3]
        for name in _VARIABLE.findall(names):
            rows[name] = default.strip()
    return rows


def test_every_variable_read_by_gradesync_is_documented() -> None:
    read = {
        name
        for path in (ROOT / "src" / "gradesync").rglob("*.py")
        for name in _VARIABLE.findall(path.read_text(encoding="utf-8"))
    }
    documented = set(_VARIABLE.findall(_docs()))
    assert sorted(read - documented) == []


def test_every_setting_is_in_the_settings_table_with_its_default() -> None:
    rows = _settings_table()
    problems = []
    for name, field in Settings.model_fields.items():
        variable = f"GRADESYNC_{name.upper()}"
        if variable not in rows:
            problems.append(f"{variable} is not in the table")
            continue
        default = field.default
        if isinstance(default, bool):
            wanted = str(default).lower()
        elif isinstance(default, int | float | str) and default != "":
            wanted = f"{default:g}" if isinstance(default, int | float) else default
        else:
            continue  # computed or empty: the table says what it is in words
        shown = rows[variable].strip("`")
        if shown != wanted and not (isinstance(default, int | float) and _number(shown) == default):
            problems.append(
                f"{variable}: the table says {rows[variable]!r}, the default is {default!r}"
            )
    assert problems == []
    # and nothing in the table that is no setting
    assert sorted(set(rows) - {f"GRADESYNC_{n.upper()}" for n in Settings.model_fields}) == []


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
