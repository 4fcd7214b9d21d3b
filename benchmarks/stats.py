"""Percentiles and waiting helpers shared by the scenarios."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, Any]:
    if not seconds:
        return {"n": 0}
    return {
        "n": len(seconds),
        "p50_ms": round(percentile(seconds, 50) * 1000, 1),
        "p95_ms": round(percentile(seconds, 95) * 1000, 1),
        "p99_ms": round(percentile(seconds, 99) * 1000, 1),
        "max_ms": round(max(seconds) * 1000, 1),
        "mean_ms": round(sum(seconds) / len(seconds) * 1000, 1),
    }


def wait_until(check: Callable[[], T | None], timeout: float, interval: float = 0.2) -> T | None:
    """Poll `check` until it returns a truthy value or `timeout` passes (then None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def steady_rate(stored: Sequence[float]) -> float:
    """Results stored per second between the 10th and 90th percentile of the (sorted)
    arrival times, so start-up and the tail do not blur the rate."""
    n = len(stored)
    if n < 2:
        return 0.0
    lo, hi = stored[int(n * 0.1)], stored[max(int(n * 0.9) - 1, 0)]
    return (int(n * 0.9) - int(n * 0.1)) / (hi - lo) if hi > lo else 0.0


def spread(values: Sequence[float]) -> dict[str, Any]:
    """min / median / max of a few runs' figures (median: the middle one, or the mean of the
    two middle ones)."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {"n": len(ordered), "min": ordered[0], "median": round(median, 3), "max": ordered[-1]}
