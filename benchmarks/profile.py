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
