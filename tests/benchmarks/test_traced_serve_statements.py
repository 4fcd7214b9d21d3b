"""`GRADESYNC_BENCH_STATEMENTS` (benchmarks/traced_serve.py): the statements a server runs and
the work it hands to threads are counted, and what happened between two marks (SIGRTMIN+2,
`Child.mark`) is told apart from what happened outside them. Run in a child process: the
diagnostic patches the thread pool and listens on every engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import asyncio, os, signal, sys
from pathlib import Path
from sqlalchemy import create_engine, text
from benchmarks import traced_serve

traced_serve._count_statements(Path(sys.argv[1]))
engine = create_engine("sqlite://")

def outside():
    with engine.connect() as c:
        c.execute(text("SELECT 1"))

def inside():
    with engine.connect() as c:
        for _ in range(3):
            c.execute(text("SELECT 2"))

async def main():
    await asyncio.to_thread(outside)
    os.kill(os.getpid(), traced_serve.STATEMENTS_SIGNAL)  # the window starts
    await asyncio.to_thread(inside)
    os.kill(os.getpid(), traced_serve.STATEMENTS_SIGNAL)  # and ends
    await asyncio.to_thread(outside)

asyncio.run(main())
"""


def test_the_window_between_two_marks_holds_only_what_ran_in_it(tmp_path: Path) -> None:
    out = tmp_path / "statements.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    subprocess.run(
        [sys.executable, "-c", CHILD, str(out)], check=True, env=env, cwd=ROOT, timeout=120
    )
    figures = json.loads(out.read_text())
    whole = {s["sql"]: s["count"] for s in figures["statements"]}
    assert whole["SELECT 1"] == 2 and whole["SELECT 2"] == 3
    window = figures["windows"]
    assert window["marks"] == 2
    assert {s["sql"]: s["count"] for s in window["statements"]} == {"SELECT 2": 3}
    work = {w["call"]: w["count"] for w in window["thread_work"]}
    assert work == {"__main__.inside": 1}
    assert {w["call"]: w["count"] for w in figures["thread_work"]} == {
        "__main__.outside": 2,
        "__main__.inside": 1,
    }
    assert window["loop_thread_cpu_s"] >= 0 and window["process_cpu_s"] >= 0
