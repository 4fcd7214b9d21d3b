"""Every benchmark command docs/benchmarks.md tells a reader to run answers `--help` with its
usage, and refuses a bad argument naming it, without running anything."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "benchmarks.md").read_text()
MODULES = sorted(set(re.findall(r"python -m (benchmarks(?:\.\w+)?)", DOC)))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


def test_the_page_names_the_commands() -> None:
    assert {"benchmarks", "benchmarks.claim_plan", "benchmarks.profile"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_each_command_documented_answers_help(module: str) -> None:
    got = run(module, "--help")
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith(f"usage: python -m {module} "), got.stdout


def test_claim_plan_refuses_a_row_count_that_is_not_a_number() -> None:
    got = run("benchmarks.claim_plan", "sqlite:////nonexistent/claims.db", "many")
    assert got.returncode == 2
    assert "rows" in got.stderr and "invalid int value" in got.stderr


def test_profile_refuses_a_missing_file_naming_it(tmp_path: Path) -> None:
    got = run("benchmarks.profile", str(tmp_path / "none.txt"))
    assert got.returncode == 2
    assert "raw: no such file" in got.stderr


def test_http_layer_help_says_its_whole_first_paragraph() -> None:
    said = " ".join(run("benchmarks.http_layer", "--help").stdout.split())
    assert "httpx's client against the fast path" in said
