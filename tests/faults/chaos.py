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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from benchmarks.world import World, attempt, chunks
from sqlalchemy import Boolean, DateTime, String, column, text

from gradesync.adapters.db.database import Database
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


# The run's patience (ENGINE_ENV): a timed pause ending within it is waited out.
PATIENCE = timedelta(seconds=float(ENGINE_ENV["GRADESYNC_RUN_RETRY_PATIENCE_SECONDS"]))

# Each run's end with its destinations' pauses, written by the database in the transaction
# that finishes the run: whether a pause excuses the results a run left pending is judged
# from what the destination was then, not from the run's own message, and not from a read
# after the run (a 429's pause of a second is over, or another has begun, by then).
_RUN_ENDS_TABLE = (
    "CREATE TABLE chaos_run_ends (run_id VARCHAR(64), finished_at TIMESTAMP WITH TIME ZONE,"
    " destination_id VARCHAR(255), paused_until TIMESTAMP WITH TIME ZONE, enabled BOOLEAN)"
)
_RUN_ENDS_INSERT = (
    "INSERT INTO chaos_run_ends SELECT NEW.id, NEW.finished_at, d.id, d.paused_until,"
    " d.enabled FROM destinations d WHERE d.tenant_id = NEW.tenant_id"
    " AND (NEW.destination_id IS NULL OR d.id = NEW.destination_id);"
)
_RUN_ENDS = {
    "sqlite": [
        _RUN_ENDS_TABLE,
        "CREATE TRIGGER chaos_run_ends AFTER UPDATE OF stage ON sync_runs"
        " WHEN NEW.stage = 'finished' AND OLD.stage != 'finished'"
        f" BEGIN {_RUN_ENDS_INSERT} END",
    ],
    "postgresql": [
        _RUN_ENDS_TABLE,
        "CREATE FUNCTION chaos_run_ends() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN {_RUN_ENDS_INSERT} RETURN NEW; END $$",
        "CREATE TRIGGER chaos_run_ends AFTER UPDATE OF stage ON sync_runs FOR EACH ROW"
        " WHEN (NEW.stage = 'finished' AND OLD.stage <> 'finished')"
        " EXECUTE FUNCTION chaos_run_ends()",
    ],
}
_NO_RUN_ENDS = {
    "sqlite": ["DROP TRIGGER IF EXISTS chaos_run_ends", "DROP TABLE IF EXISTS chaos_run_ends"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS chaos_run_ends ON sync_runs",
        "DROP FUNCTION IF EXISTS chaos_run_ends()",
        "DROP TABLE IF EXISTS chaos_run_ends",
    ],
}

# (finished_at, paused_until, enabled) of each destination of a run when it finished
RunEnd = tuple[datetime, datetime | None, bool]


def record_run_ends(db: Database) -> None:
    """From now on, the database records each run's end with its destinations' pauses."""
    _execute(db, _RUN_ENDS[db.engine.dialect.name])


def forget_run_ends(db: Database) -> None:
    _execute(db, _NO_RUN_ENDS[db.engine.dialect.name])


def _execute(db: Database, statements: list[str]) -> None:
    with db.engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def run_ends(db: Database) -> dict[str, list[RunEnd]]:
    query = text("SELECT run_id, finished_at, paused_until, enabled FROM chaos_run_ends").columns(
        column("run_id", String),
        column("finished_at", DateTime(timezone=True)),
        column("paused_until", DateTime(timezone=True)),
        column("enabled", Boolean),
    )
    out: dict[str, list[RunEnd]] = {}
    with db.engine.connect() as conn:
        for run_id, finished_at, paused_until, enabled in conn.execute(query):
            out.setdefault(run_id, []).append(
                (_aware(finished_at), _aware(paused_until), bool(enabled))
            )
    return out


def _aware(at: datetime | None) -> Any:
    return at if at is None or at.tzinfo is not None else at.replace(tzinfo=UTC)


def held_past_patience(ends: Iterable[RunEnd]) -> bool:
    """Whether a destination of the run, when it finished, was turned off or paused past the
    run's patience: the only pauses a run does not wait out, and so the only reason it may
    leave results pending."""
    return any(
        not enabled or (until is not None and until > finished + PATIENCE)
        for finished, until, enabled in ends
    )


def untruthful(run: dict[str, Any], held: bool) -> list[str]:
    """What is wrong with a finished run's outcome and counts (empty: nothing); `held`: a
    destination of the run was turned off or paused past its patience when it finished
    (`held_past_patience`)."""
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
    if c.get("pending") and not held:
        wrong.append(
            f"{c['pending']} pending, though no destination was turned off or paused past "
            "the run's patience when it finished"
        )
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
