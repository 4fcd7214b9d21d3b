"""A run's stage history as people read it: each attempt's stages once, and a resume once.

The stored history appends a line whenever a run changes stage. A run whose worker stopped
(or whose database was lost) goes back to the queue and is resumed: stored, that is a
"queued" line saying why, then a "computing" line for the claim that took it up again, then
the stages once more. Shown as stored, the stages seem to repeat for no reason. Shown here,
the two lines of the interruption are one `resumed` line (when it resumed, why it had
stopped and who took it up), and every line says which `attempt` of the run it belongs to, so
the stages after it read as the second attempt they are. A resumed run that had got past
computing does not compute again (what it computed stands), so its claim's "computing" line
is not shown as a stage it went through; one stopped while computing computes again, and
says so (with what was noted while it did, e.g. the results it carries from a remaster: the
claim's line stored those after its own note).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

RESUMED = "resumed"  # the line a resume is shown as (not a stage a run is ever in)
_QUEUED, _COMPUTING = "queued", "computing"
_PAST_COMPUTING = frozenset({"provisioning", "sending", "verifying"})  # as services.sync says


def resumed_by(worker: str) -> str:
    """The note of the claim that took a stopped run up again (its stored "computing" line)."""
    return f"resumed by {worker}"


def shown_stages(stored: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The stored stage lines ({stage, at, note?, worker?}) as a person reads them: each
    with its `attempt` (1, then 2 after the first resume, ...), a requeue and the claim that
    resumed it as one `resumed` line, and no "computing" line for a resume that did not
    compute again. A run requeued and not yet resumed keeps its "queued" line with why."""
    out: list[dict[str, Any]] = []
    attempt, started, computed = 1, False, False
    waiting: dict[str, Any] | None = None  # a requeue not yet followed by its resume
    for line in stored:
        stage = line.get("stage")
        if stage == _QUEUED and started:
            waiting = dict(line)
            continue
        if waiting is not None:
            attempt += 1
            if stage == _COMPUTING:
                why = waiting.get("note")
                # what was noted after the claim's note is its computing's, when it computes
                # again (it does not if what the first attempt computed stands)
                how, noted = (line.get("note"), None) if computed else _claim_note(line)
                note = "; ".join(str(n) for n in (why, how) if n) or None
                out.append({**line, "stage": RESUMED, "note": note, "attempt": attempt})
                waiting = None
                if not computed:
                    again = {"stage": _COMPUTING, "at": line.get("at"), "attempt": attempt}
                    out.append({**again, "note": noted} if noted else again)
                continue
            out.append({**waiting, "attempt": attempt})
            waiting = None
        if stage == _COMPUTING:
            started = True
        if stage in _PAST_COMPUTING:
            started = computed = True
        out.append({**line, "attempt": attempt})
    if waiting is not None:
        out.append({**waiting, "attempt": attempt + 1})
    return out


def _claim_note(line: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """A resume's stored "computing" line's note: the claim's own (who resumed the run), and
    what was noted after it while the run computed again."""
    note, worker = line.get("note"), line.get("worker")
    if not note or not worker:
        return note, None
    own = resumed_by(str(worker))
    if note.startswith(f"{own}; "):
        return own, note[len(own) + 2 :]
    return note, None
