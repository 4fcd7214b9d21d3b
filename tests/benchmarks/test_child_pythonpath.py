"""The processes a benchmark starts run in working directories of their own, so a relative
PYTHONPATH entry (the garbage-collector probe's `PYTHONPATH=benchmarks/gc_time`, as
docs/benchmarks.md gives it) is made absolute for them, or it would reach the driver only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from benchmarks import procs
from gradesync.testing import wait_for

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "benchmarks" / "gc_time"


def relative_probe(monkeypatch: pytest.MonkeyPatch, gc_dir: Path) -> None:
    monkeypatch.chdir(ROOT)
    current = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in ("benchmarks/gc_time", current) if p)
    )
    monkeypatch.setenv("GRADESYNC_BENCH_GC_DIR", str(gc_dir))


def test_a_child_started_elsewhere_loads_the_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relative_probe(monkeypatch, tmp_path / "gc")
    workdir = tmp_path / "child"
    workdir.mkdir()
    port = procs.free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    child = procs.start("probe", argv, port, workdir, timeout=60.0)
    try:
        written = tmp_path / "gc" / f"gc-{child.pid}.json"
        wait_for(written.exists, "the child's collector figures")
    finally:
        child.stop()


def test_gradesync_and_its_workers_get_absolute_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relative_probe(monkeypatch, tmp_path / "gc")
    entries = procs.gradesync_env(tmp_path, "sqlite://", "x" * 32)["PYTHONPATH"].split(os.pathsep)
    assert str(PROBE) in entries
    assert all(Path(p).is_absolute() for p in entries)
