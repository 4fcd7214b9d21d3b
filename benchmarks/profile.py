"""Summaries of a py-spy raw profile (collapsed stacks: `frame;frame;... count`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

IDLE = ("select (selectors.py", "_run_once (asyncio", "wait (threading.py", "_worker (concurrent")


def summarize(raw: Path, top: int = 15) -> dict[str, Any]:
    if not raw.exists():
        return {"error": "py-spy wrote no profile"}
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        samples += n
        self_counts[frames[-1]] += n
        for f in set(frames):
            total_counts[f] += n
        mine = [f for f in frames if "gradesync/" in f and "/sandbox/" not in f]
        if mine:
            ours[mine[-1]] += n

    def pct(c: Counter[str]) -> list[list[Any]]:
        return [[f, round(100 * n / max(samples, 1), 1)] for f, n in c.most_common(top)]

    return {
        "file": str(raw),
        "samples": samples,
        "self_top_pct": pct(self_counts),
        "inclusive_top_pct": pct(total_counts),
        "innermost_gradesync_frame_pct": pct(ours),
    }


# Where a `gradesync serve` sample belongs: first the work it serves (an API request, a
# computing pass: outer frames), then the delivery stage (outer), then the layer its
# innermost known frame is in.
_OUTER = (
    ("ingest (API)", ("Runtime.ingest", "/web/api/", "starlette/", "fastapi/", "h11", "httptools")),
    ("compute", ("compute_dirty", "services/compute.py")),
    ("settle writer", ("SettleWriter._write",)),
    ("claim and prepare", ("Deliverer.claim", "claimable", "Deliverer.prepare", "_prepare")),
    ("pause re-read", ("_read_pause",)),
    ("worker share", ("share.py",)),
)
_INNER = (
    ("HTTP: aiohttp", "aiohttp/"),
    ("HTTP: httpx", "httpx/"),
    ("HTTP: httpcore", "httpcore/"),
    ("HTTP: yarl, multidict", "yarl/"),
    ("HTTP: yarl, multidict", "multidict/"),
    ("HTTP: adapter and transport glue", "destinations/"),
    ("JSON", "json/"),
    ("SQL elsewhere", "sqlalchemy/"),
    ("SQL elsewhere", "sqlite3"),
    ("deliver loop", "services/delivery/"),
    ("thread hand-off", "concurrent/futures"),
    ("thread hand-off", "threading.py"),
    ("asyncio loop", "asyncio/"),
)


def split(raw: Path) -> dict[str, Any]:
    """Shares of a serve profile by where each sample belongs (see `_OUTER`, `_INNER`),
    of all samples and of the delivery side (all but ingest and compute)."""
    counts: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        name = next((n for n, keys in _OUTER if any(k in stack for k in keys)), None)
        if name is None:
            for frame in reversed(stack.split(";")):
                name = next((n for n, key in _INNER if key in frame), None)
                if name is not None:
                    break
        counts[name or "other"] += int(count)
    total = sum(counts.values())
    delivery = total - counts["ingest (API)"] - counts["compute"]
    return {
        "samples": total,
        "delivery_samples": delivery,
        "all_pct": {k: round(100 * v / max(total, 1), 1) for k, v in counts.most_common()},
        "delivery_pct": {
            k: round(100 * v / max(delivery, 1), 1)
            for k, v in counts.most_common()
            if k not in ("ingest (API)", "compute")
        },
    }


def cli(argv: list[str] | None = None) -> None:
    import argparse
    import json

    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.profile",
        description="A py-spy raw profile of `gradesync serve` split by delivery stage (JSON).",
    )
    ap.add_argument("raw", type=Path, help="a py-spy raw profile (`--profile` writes them)")
    args = ap.parse_args(argv)
    if not args.raw.is_file():
        ap.error(f"raw: no such file: {args.raw}")
    print(json.dumps(split(args.raw), indent=2))


if __name__ == "__main__":
    cli()
