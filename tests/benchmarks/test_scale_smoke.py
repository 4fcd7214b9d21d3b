"""Toy-size runs of the scale benchmarks (ingest on both databases, the SIS remaster with its
resumable figures, many platforms): they run end to end and their correctness checks hold.
No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]


def bench(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads(out.read_text())  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_ingest_on_both_databases(tmp_path: Path, postgres_url: str) -> None:
    # a database of the benchmark's own beside the tests' (the benchmark drops and creates it)
    url = make_url(postgres_url)
    bench_url = url.set(database=f"{url.database}_bench").render_as_string(hide_password=False)
    figures = bench(
        tmp_path,
        "--only",
        "ingest",
        "--db",
        "sqlite,postgres",
        env={"GRADESYNC_BENCH_POSTGRES_URL": bench_url},
    )
    sizes = figures["sizes"]
    for db in ("sqlite", "postgres"):
        ing = figures[db]["ingest"]  # type: ignore[index]
        assert ing["ok"], db
        one, many = ing["one"], ing["concurrent"]  # type: ignore[index]
        assert one["clients"] == 1 and one["attempts"] == sizes["ingest_attempts"], db
        assert many["clients"] > 1 and many["attempts"] == sizes["ingest_attempts"], db
        # each half's own CPU pressure, over its own time (shorter than the scenario's)
        for half in (one, many):
            assert half["cpu_pressure"]["seconds"] < ing["cpu_pressure"]["seconds"], db


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_remaster_figures_are_written_per_size_and_a_run_resumes_from_them(
    tmp_path: Path,
) -> None:
    where = tmp_path / "remaster"
    args = ("--only", "remaster", "--db", "sqlite", "--remaster-sizes", "200")
    first = bench(tmp_path, *args, "--remaster-dir", str(where))
    (size,) = first["sqlite"]["remaster"]["per_size"]  # type: ignore[index]
    assert size["ok"] and size["resent"] == 200 and size["checks"]["sis_scores_match"]
    assert size["peak_rss_mb"] > 0 and size["cpu_pressure"]["seconds"] is not None
    saved = json.loads((where / "remaster-sqlite-200.json").read_text())
    assert saved["resent"] == 200
    progress = [
        json.loads(line)
        for line in (where / "remaster-sqlite-200.progress.jsonl").read_text().splitlines()
    ]
    assert progress[0]["phase"] == "seeded"
    assert "first_sync_done" in {p["phase"] for p in progress}

    again = bench(tmp_path, *args, "--remaster-dir", str(where), "--resume")
    (resumed,) = again["sqlite"]["remaster"]["per_size"]  # type: ignore[index]
    assert resumed["resumed_from"] == str(where / "remaster-sqlite-200.json")
    assert resumed["resent"] == 200


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_many_platforms_each_with_its_own_token(tmp_path: Path) -> None:
    figures = bench(tmp_path, "--only", "platforms", "--db", "sqlite", "--platforms", "1,3")
    pl = figures["sqlite"]["platforms"]  # type: ignore[index]
    assert [r["platforms"] for r in pl["per_size"]] == [1, 3]
    for r in pl["per_size"]:
        assert r["ok"], r["checks"]
        assert r["results"] == r["platforms"] * 10  # 10 courses, 1 learner, 1 activity each
        # one token per platform over the whole run (cached), each asked for once
        assert sorted(t["client_id"] for t in r["tokens_by_client"]) == [
            f"tool-{k}" for k in range(r["platforms"])
        ]
        assert r["tokens_issued"] == r["platforms"]
        assert r["connections_max_while_sending"] >= r["platforms"]  # one origin each
        assert r["cpu_pressure"]["seconds"] is not None
    assert pl["summary"]["platforms"] == [1, 3]


@pytest.mark.slow
def test_ingest_batches_counts_statements(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.ingest_batches",
            f"sqlite:///{tmp_path / 'ingest.db'}",
            "--batches",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    figures = json.loads(proc.stdout)
    assert figures["attempts"] == 2000 and figures["database"] == "sqlite"
    # a batch is a few statements, not one or two per attempt
    assert figures["statements_per_batch"] <= 10, figures["statements"]
    # and the roster before them: 500 people and their enrollments in as few
    assert figures["roster_statements_per_batch"] <= 10
    assert figures["roster_rows_per_s"] > 0
    assert figures["cpu_pressure"]["seconds"] is not None


@pytest.mark.slow
def test_ingest_batches_in_turn_into_two_databases(tmp_path: Path) -> None:
    """`--against`: the same batches into two databases, one batch each in turn, with each
    side's figures and their ratio."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.ingest_batches",
            f"sqlite:///{tmp_path / 'one.db'}",
            "--against",
            f"sqlite:///{tmp_path / 'two.db'}",
            "--batches",
            "2",
            "--roster-batches",
            "3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    figures = json.loads(proc.stdout)
    first, second = figures["first"], figures["second"]
    # the roster too, batch by batch in turn: three batches of 500 people and enrollments
    assert first["roster_statements_per_batch"] == second["roster_statements_per_batch"] <= 10
    roster = first["roster_rows_per_s"] / second["roster_rows_per_s"]
    assert figures["roster_first_over_second"] == pytest.approx(roster, abs=0.001)
    assert first["roster_cpu_ms_per_batch"] > 0 and second["roster_cpu_ms_per_batch"] > 0
    assert figures["roster_cpu_pressure"]["seconds"] is not None
    assert first["attempts"] == second["attempts"] == 2000
    assert first["statements_per_batch"] == second["statements_per_batch"] <= 10
    ratio = first["attempts_per_s"] / second["attempts_per_s"]
    assert figures["first_over_second"] == pytest.approx(ratio, abs=0.001)
    assert figures["cpu_pressure"]["seconds"] is not None


def module_figures(tmp_path: Path, module: str, *args: str) -> dict[str, Any]:
    """Run `python -m benchmarks.<module> ARGS --out FILE`: its figures, which it also
    printed (the two must agree)."""
    out = tmp_path / f"{module}.json"
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    figures: dict[str, Any] = json.loads(out.read_text())
    assert figures == json.loads(proc.stdout)
    return figures


@pytest.mark.slow
def test_storage_calls_reports_each_call(tmp_path: Path) -> None:
    figures = module_figures(tmp_path, "storage_calls")
    names = ("upsert_1_rows_us", "ledger_get_keys_16_us", "ledger_save_many_6_rows_us")
    settles = ("ledger_settle_6_rows_us", "ledger_settle_16_rows_us")
    writes = tuple(f"settle_writer_16_outcomes_{way}_us" for way in ("as_claimed", "read_again"))
    for name in (*names, *settles, *writes):
        assert figures[name] > 0
    assert figures["cpu_pressure"]["seconds"] is not None


@pytest.mark.slow
def test_claim_calls_reports_each_claim_size(tmp_path: Path) -> None:
    figures = module_figures(tmp_path, "claim_calls", "--rounds", "1", "--calls", "2")
    for limit in (100, 200, 400):
        low, median, high = figures[f"claim_{limit}_rows_us"]
        assert 0 < low <= median <= high
        assert figures[f"claim_{limit}_rows_us_per_row"] > 0
    assert figures["cpu_pressure"]["seconds"] is not None


@pytest.mark.slow
def test_cli_startup_reports_each_command_of_each_checkout(tmp_path: Path) -> None:
    src = str(ROOT / "src")
    figures = module_figures(
        tmp_path, "cli_startup", "--runs", "1", "--src", f"a={src}", "--src", f"b={src}"
    )
    assert [(r["label"], r["gradesync"]) for r in figures["rounds"]] == [
        ("a", f"{src}/gradesync/__init__.py"),
        ("b", f"{src}/gradesync/__init__.py"),
    ]
    for label in ("a", "b"):
        commands = figures["median_of_rounds"][label]
        assert set(commands) == {
            "gradesync --help",
            "gradesync runs --help",
            "gradesync policy show --help",
        }
        assert all(c["wall_ms"] > 0 and c["cpu_ms"] > 0 for c in commands.values())


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_ingest_api_posts_the_same_batches_to_both_databases_in_turn(
    tmp_path: Path, postgres_url: str
) -> None:
    url = make_url(postgres_url)
    bench_url = url.set(database=f"{url.database}_inturn").render_as_string(hide_password=False)
    figures = module_figures(
        tmp_path, "ingest_api", bench_url, "--rounds", "1", "--batches", "1", "--clients", "2"
    )
    (only,) = figures["rounds"]
    for half, batches in (("one", 1), ("concurrent", 2)):
        sides = only[half]
        for db in ("postgres", "sqlite"):
            assert sides[db]["attempts"] == batches * 1000
            assert sides[db]["serve_cpu_ms_per_batch"] > 0
        # each side's seconds and the ratio are rounded to three decimals: with a batch or
        # two, a few milliseconds, the rounding alone moves the ratio by more than 1 %
        s, p, r = sides["sqlite"]["seconds"], sides["postgres"]["seconds"], 0.0005
        assert (s - r) / (p + r) - r <= sides["pg_over_sqlite"] <= (s + r) / (p - r) + r
        assert sides["cpu_pressure"]["seconds"] is not None
        assert figures[f"{half}_pg_over_sqlite"]["median"] == sides["pg_over_sqlite"]
