"""What the chaos tests share: the sandbox LMS and gradesync in their own processes (as an
operator runs them, through `benchmarks.world`), the LMS's faults, the grades a client sent
and had acknowledged, and the checks made at the end from the LMS's side and the API's.

The desired state is computed here from the acknowledged attempts (the activities keep the
highest score; every newer attempt of a key scores higher than the ones before it, so an
older grade landing over a newer one shows as a wrong score)."""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from benchmarks.world import World, attempt, chunks

from gradesync.testing import wait_for

# The fault mix, on every AGS request gradesync makes (columns, scores, read-back):
# 10 % answered 5xx, 5 % 429 with Retry-After, 2 % connections reset without an answer.
FAULTS: dict[str, Any] = {
    group: {
        "error_rate": 0.10,
        "error_status": 502,
        "throttle_rate": 0.05,
        "retry_after": 1,
        "reset_rate": 0.02,
    }
    for group in ("scores", "lineitems", "results")
}

# Engine settings for every gradesync process of a chaos test: dead workers and their leases
# noticed within seconds; the breaker's pause shortened (five failures in a row happen now
# and then at these rates, and a 30 s pause would only lengthen the test, not test more).
ENGINE_ENV = {
    "GRADESYNC_WORKER_POLL_SECONDS": "1.0",
    "GRADESYNC_WORKER_LEASE_SECONDS": "8",
    "GRADESYNC_WORKER_STALE_SECONDS": "3",
    "GRADESYNC_WORKER_HEARTBEAT_SECONDS": "0.3",
    "GRADESYNC_WORKER_CLAIM_BATCH": "16",
    "GRADESYNC_RUN_RETRY_PATIENCE_SECONDS": "10",
    "GRADESYNC_BREAKER_COOLDOWN_SECONDS": "2",
    "GRADESYNC_RETRY_CAP_SECONDS": "4",
}

Key = tuple[str, str]  # (activity, learner)


@dataclass
class Grades:
    """Attempts sent to gradesync's ingest API, and which of them it acknowledged (2xx)."""

    world: World
    acknowledged: dict[Key, float] = field(default_factory=dict)
    refused: int = 0  # batches that got no 2xx (server down): sent again until they do
    _events: int = 0

    def send(self, scores: dict[Key, float], *, until: float = 60.0) -> None:
        """Post `scores` as new attempts, each batch again (same event ids) until it is
        acknowledged, as a client does; only acknowledged ones count as desired."""
        items = []
        for (activity, learner), score in scores.items():
            self._events += 1
            items.append(attempt(f"ev{self._events}", activity, learner, score, 10.0))
        for batch in chunks(items, 500):
            wait_for(lambda b=batch: self._post(b), "an acknowledged batch", timeout=until)  # type: ignore[misc]
        for key, score in scores.items():
            self.acknowledged[key] = max(score, self.acknowledged.get(key, score))

    def _post(self, batch: Any) -> bool:
        try:
            r = self.world.api.post("/attempts/batch", json={"attempts": list(batch)}, timeout=20)
        except httpx.HTTPError:
            self.refused += 1
            return False
        if r.status_code >= 300:
            self.refused += 1
            return False
        return True


def first_scores(activities: Iterable[str], learners: Iterable[str]) -> dict[Key, float]:
    rng = random.Random(19)
    return {(a, p): float(rng.randint(0, 4)) for a in activities for p in learners}


def newer(scores: dict[Key, float], n: int, raise_by: float, seed: int) -> dict[Key, float]:
    """`n` of the keys again, each higher than before (a newer, better attempt)."""
    rng = random.Random(seed)
    return {k: min(10.0, scores[k] + raise_by) for k in rng.sample(sorted(scores), n)}


def gradebook(world: World, course: str) -> tuple[dict[Key, float | None], list[str]]:
    """The LMS's gradebook of `course` (scoreGiven per activity and learner) and the
    activity of each of its line items, read from the sandbox."""
    courses = world.admin.inspect(course)["lms"]["courses"]
    scores: dict[Key, float | None] = {}
    items: list[str] = []
    for course_data in courses:
        for item in course_data["line_items"]:
            items.append(str(item["resourceId"]))
            for user, rec in item["scores"].items():
                scores[(str(item["resourceId"]), user)] = rec["scoreGiven"]
    return scores, items


def differences(want: dict[Key, float], got: dict[Key, float | None]) -> list[str]:
    return [
        f"{k}: want {v}, LMS has {got.get(k)}" for k, v in sorted(want.items()) if got.get(k) != v
    ]


def runs(world: World, course: str) -> list[dict[str, Any]]:
    listed = world.ok("GET", "/runs", params={"course_id": course, "limit": 500})
    return [world.ok("GET", f"/runs/{r['id']}") for r in listed]


# what a run's message says of results it left pending for a paused destination
WAITING_FOR_PAUSE = "; sent when "


def untruthful(run: dict[str, Any], paused: bool) -> list[str]:
    """What is wrong with a finished run's outcome and counts (empty: nothing); `paused`: a
    destination of the run was paused when it ended."""
    wrong = []
    c = run["counts"]
    if run["stage"] != "finished" or run["outcome"] is None:
        wrong.append(f"not finished: {run['stage']} {run['outcome']}")
        return wrong
    parts = (
        c.get("sent", 0)
        + c.get("unchanged", 0)
        + c.get("pending", 0)
        + c.get("retrying", 0)
        + sum(c.get("skipped", {}).values())
        + sum(c.get("rejected", {}).values())
    )
    if parts != c.get("keys"):
        wrong.append(f"counts do not add up to keys: {parts} != {c.get('keys')}")
    if c.get("pending") and not paused:
        wrong.append(f"{c['pending']} pending, though no destination was paused")
    problems = c.get("pending", 0) + c.get("retrying", 0) + sum(c.get("rejected", {}).values())
    if run["outcome"] == "succeeded" and problems:
        wrong.append(f"succeeded with {problems} results not delivered")
    if run["outcome"] != "succeeded" and not problems and not c.get("columns", {}).get("failed"):
        wrong.append(f"{run['outcome']} with nothing undelivered")
    return wrong


def tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def wait(
    check: Callable[[], Any],
    what: str,
    timeout: float,
    logs: Iterable[Path],
    state: Callable[[], str] | None = None,
) -> Any:
    """Wait for `check`; the deadline only ends a hang, and shows the processes' logs (and
    `state()`, what the test sees then)."""
    logs = list(logs)

    def explain() -> str:
        seen = state() if state is not None else ""
        return seen + "\n" + "\n".join(f"--- {p.name}\n{tail(p)}" for p in logs)

    return wait_for(check, what, timeout=timeout, explain=explain)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL: no shutdown step runs, as when a machine or the OOM killer takes it."""
    proc.kill()
    proc.wait(timeout=20)


class Clock:
    """Seconds since the first grade was sent, for the report line."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self) -> float:
        return round(time.monotonic() - self.start, 1)
