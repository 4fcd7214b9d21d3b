"""A check's steps as the API answers them and `--json` prints them: a destination's own
check (`POST /destinations/{id}/check`, `gradesync destinations check`) and a SIS connection's
(`POST /sis/connections/{id}/check`, `gradesync sis add`) have one step shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gradesync.domain.diagnosis import ProbeStep


def step_out(s: ProbeStep) -> dict[str, Any]:
    """A step of a check, its remedy in the words it was read over in."""
    return {
        "name": s.name,
        "passed": s.passed,
        "code": s.code,
        "evidence": s.evidence,
        "remedy": s.remedy,
    }


def destination_check_out(destination_id: str, steps: Sequence[ProbeStep]) -> dict[str, Any]:
    """A destination's end-to-end check: `ok` when every step passed."""
    return {
        "destination_id": destination_id,
        "ok": all(s.passed for s in steps),
        "steps": [step_out(s) for s in steps],
    }
