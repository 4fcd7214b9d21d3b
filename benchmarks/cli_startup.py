"""How long the `gradesync` command takes to show its help: `gradesync --help`, `gradesync
runs --help` and `gradesync policy show --help`, each run as a subprocess (the console script
next to this interpreter) RUNS times, the three taken in turn. Per command: the median wall
time and the median CPU of the child (user + system, from `resource.getrusage` of the
children), in milliseconds. That is the start-up every command pays before its own work.

    python -m benchmarks.cli_startup [--runs N] [--out FILE]
    python -m benchmarks.cli_startup --src before=/work/main/src --src after=src --rounds 3 \\
        --out benchmarks/results/cli-startup.json   # two checkouts, alternating

Without `--src` the command imports gradesync as this environment does; each `--src
LABEL=DIR` runs it with PYTHONPATH=DIR instead, the checkouts one after the other in each of
`--rounds` rounds, so that a machine getting busier weighs on each alike. Prints one JSON
object (and writes it to FILE): each round's figures with the CPU pressure over it, and per
checkout and command the median of its rounds' medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import pressure

COMMANDS = (("--help",), ("runs", "--help"), ("policy", "show", "--help"))
GRADESYNC = str(Path(sys.executable).with_name("gradesync"))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _once(args: tuple[str, ...], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one `gradesync ARGS` to its exit."""
    c0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run([GRADESYNC, *args], env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0, _children_cpu() - c0


def _imported_from(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", "import gradesync; print(gradesync.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def measure(runs: int, env: dict[str, str]) -> dict[str, Any]:
    """RUNS of each command (after one unmeasured run each), the commands in turn."""
    window = pressure.Window.start()
    for args in COMMANDS:
        _once(args, env)  # the files read once: a warm page cache, as for an admin
    times: dict[str, list[tuple[float, float]]] = {" ".join(a): [] for a in COMMANDS}
    for _ in range(runs):
        for args in COMMANDS:
            times[" ".join(args)].append(_once(args, env))
    return {
        "gradesync": _imported_from(env),
        "commands": {
            f"gradesync {name}": {
                "wall_ms": round(statistics.median(w for w, _ in took) * 1e3, 1),
                "cpu_ms": round(statistics.median(c for _, c in took) * 1e3, 1),
                "wall_ms_min": round(min(w for w, _ in took) * 1e3, 1),
            }
            for name, took in times.items()
        },
        "cpu_pressure": window.stop(),
    }


def run(runs: int, sources: list[tuple[str, str | None]], rounds: int) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for i in range(rounds):
        for label, src in sources:
            env = dict(os.environ)
            if src is not None:
                env["PYTHONPATH"] = str(Path(src).resolve())
            results.append({"label": label, "round": i + 1} | measure(runs, env))
    medians = {
        label: {
            command: {
                key: round(
                    statistics.median(
                        r["commands"][command][key] for r in results if r["label"] == label
                    ),
                    1,
                )
                for key in ("wall_ms", "cpu_ms")
            }
            for command in results[0]["commands"]
        }
        for label, _ in sources
    }
    return {"runs_per_command": runs, "rounds": results, "median_of_rounds": medians}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cli_startup")
    parser.add_argument("--runs", type=int, default=20, help="runs of each command per round")
    parser.add_argument(
        "--src",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="a checkout's src directory, as PYTHONPATH (repeatable; default: as installed)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds over the checkouts")
    parser.add_argument("--out", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    sources: list[tuple[str, str | None]] = []
    for spec in args.src:
        label, sep, src = spec.partition("=")
        if not sep or not label or not src:
            parser.error(f"--src {spec!r}: write LABEL=DIR")
        sources.append((label, src))
    figures = json.dumps(run(args.runs, sources or [("installed", None)], args.rounds))
    if args.out:
        args.out.write_text(figures + "\n")
    print(figures)


if __name__ == "__main__":
    main()
