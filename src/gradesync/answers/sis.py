"""A SIS's answers shared by the API and `gradesync sis ... --json`: the steps of a connection
check, and activities checked against the SIS's rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gradesync.answers.problems import problem_json
from gradesync.domain.remedies import Reader
from gradesync.services import sis as service
from gradesync.services.destination import CheckStep


def step_out(s: CheckStep) -> dict[str, Any]:
    """A step of a SIS's check (also `gradesync sis add/check --json`)."""
    return {
        "name": s.name,
        "passed": s.passed,
        "code": s.code,
        "evidence": s.evidence,
        "remedy": s.remedy,
    }


def checks_out(
    checks: Sequence[service.ActivityCheck], destination_id: str | None = None
) -> list[dict[str, Any]]:
    """Activities checked against the SIS's rules (also `gradesync sis select/validate`).
    With the SIS connection's `destination_id`, each problem's remedy names the API's route
    (`ActivityCheck.read_over`); without, the command line's command."""
    if destination_id is not None:
        checks = [c.read_over(Reader.API, destination_id) for c in checks]
    return [
        {
            "activity_id": c.activity_id,
            "title": c.title,
            "selected": c.selected,
            "ok": c.ok,
            "problems": [problem_json(p) for p in c.problems],
        }
        for c in checks
    ]
