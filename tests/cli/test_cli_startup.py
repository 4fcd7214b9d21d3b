"""The command's help, and a command line refused while parsing, load neither the web stack
(fastapi, the API's modules) nor the database layer (the runtime, SQLAlchemy): each command
imports them when it runs (benchmarks/cli_startup.py times the difference)."""

from __future__ import annotations

import json
import subprocess
import sys

# every group's and every command's --help, then one refused command line, in one process;
# then the modules it loaded that a command imports only when it runs
SCRIPT = """
import contextlib, io, json, sys
import typer
from gradesync.cli import app, main

def paths(group, prefix=()):
    for name, cmd in sorted(group.commands.items()):
        yield (*prefix, name)
        if hasattr(cmd, "commands"):
            yield from paths(cmd, (*prefix, name))

codes = {}
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    for path in [(), *paths(typer.main.get_group(app))]:
        sys.argv = ["gradesync", *path, "--help"]
        try:
            main()
        except SystemExit as exc:
            codes[" ".join(path)] = exc.code
    sys.argv = ["gradesync", "runs", "list", "--no-such-option"]
    try:
        main()
    except SystemExit as exc:
        codes["refused"] = exc.code
heavy = ("fastapi", "starlette", "sqlalchemy", "alembic", "psycopg")
ours = ("gradesync.web", "gradesync.runtime", "gradesync.adapters.db")
loaded = sorted(
    m for m in sys.modules if m.split(".")[0] in heavy or m.startswith(ours)
)
print(json.dumps({"codes": codes, "loaded": loaded}))
"""


def test_help_and_a_refused_command_line_load_neither_the_web_api_nor_the_database() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    codes = out["codes"]
    assert len(codes) > 60 and {"", "runs", "policy show", "sis post"} <= set(codes)
    assert codes.pop("refused") == 2  # bad input
    assert set(codes.values()) == {0}
    assert out["loaded"] == []
