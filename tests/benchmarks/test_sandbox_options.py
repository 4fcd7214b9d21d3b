"""`--sandbox-latency-ms` and `--sandbox-cap`: the throughput side by side against a
destination of another size. The options reach the sandbox (read back from it), gradesync's
destination (read back from its API) and every hand-written client's N; bad values are
refused before anything runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--sandbox-cap", "0"], "--sandbox-cap: a whole number from 1 to 256"),
        (["--sandbox-cap", "257"], "--sandbox-cap: a whole number from 1 to 256"),
        (["--sandbox-latency-ms", "0"], "--sandbox-latency-ms: a whole number of milliseconds"),
    ],
)
def test_bad_values_are_refused_naming_the_option(
    argv: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "figures.json"
    with pytest.raises(SystemExit) as exit_:
        main(["--quick", "--only", "throughput", "--db", "sqlite", "--out", str(out), *argv])
    assert exit_.value.code == 2
    assert named in capsys.readouterr().err
    assert not out.exists()  # nothing ran


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_cap_and_latency_reach_the_sandbox_gradesync_and_every_client(
    tmp_path: Path,
) -> None:
    out = tmp_path / "side-by-side.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--only",
            "throughput,baseline",
            "--db",
            "sqlite",
            "--sandbox-cap",
            "12",
            "--sandbox-latency-ms",
            "10",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    figures = json.loads(out.read_text())
    # the quick sizes are 20 ms and 8 at once: these are the options', not the defaults
    assert figures["sandbox"] == {"latency_ms": 10, "cap": 12, "capacity_per_s": 1200.0}
    assert "10 ms, 12 at once, 1,200 results/s" in out.with_suffix(".md").read_text()
    cmp = figures["sqlite"]["comparison"]
    assert cmp["capacity_per_s"] == 1200.0
    assert cmp["settings"] == {
        "sandbox_latency_ms": 10.0,
        "sandbox_cap": 12,
        "gradesync_concurrency": 12,
        "clients_concurrency": 12,
    }
    clients = cmp["clients"]
    for name in ("pylti1p3-threads", "bare-async", "bare-aiohttp", "bare-aiohttp-uvloop"):
        assert [r["concurrency"] for r in clients[name]["runs"]] == [12] * figures["sizes"][
            "rounds"
        ], name
        assert all(r["ok"] for r in clients[name]["runs"]), name
    for r in clients["gradesync"]["runs"]:
        assert r["capacity_per_s"] == 1200.0 and r["results_stored"] == r["results"] > 0
