"""The machine's CPU pressure during a figure's run, from Linux's pressure stall information
(`/proc/pressure/cpu`): on a shared machine a figure means little without it.

`some` is the share of time at least one runnable task waited for a CPU. Recorded per run:
the kernel's 10 s average at the start and at the end, and the stall time over the run
(`total`, microseconds) with its share of the run's wall time."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PSI = Path("/proc/pressure/cpu")


def read() -> dict[str, float] | None:
    """{"avg10": %, "total_us": us} of the `some` line, or None where PSI is not available."""
    try:
        text = PSI.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        kind, *fields = line.split()
        if kind == "some":
            values = dict(f.split("=", 1) for f in fields)
            return {"avg10": float(values["avg10"]), "total_us": float(values["total"])}
    return None


@dataclass
class Window:
    """CPU pressure between `start()` and `stop()`."""

    started: dict[str, float] | None = None
    t0: float = 0.0

    @classmethod
    def start(cls) -> Window:
        return cls(read(), time.monotonic())

    def stop(self) -> dict[str, Any]:
        end, elapsed = read(), time.monotonic() - self.t0
        if self.started is None or end is None:
            return {"available": False}
        stall = end["total_us"] - self.started["total_us"]
        return {
            "some_avg10_start": self.started["avg10"],
            "some_avg10_end": end["avg10"],
            "some_stall_us": int(stall),
            "some_share": round(stall / 1e6 / elapsed, 3) if elapsed > 0 else None,
            "seconds": round(elapsed, 2),
        }
