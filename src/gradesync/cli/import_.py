"""`gradesync import attempts FILE.csv`: attempts from a CSV gradebook export.

Two layouts are recognised from the header:

- long: one attempt per row, columns `person_id, activity_id, score_given` and optionally
  `score_maximum` (default: the activity's points), `completed_at` (ISO 8601 with zone),
  `source_event_id`, `comment`;
- wide (a gradebook): one learner per row, a `person_id` column (or `--person-column`) and one
  column per activity, headed by the activity id or "Any title (activity id)". Other columns
  (name, email, section, totals) are ignored and listed.

Every row is checked, with every rule an import through the API meets, before anything is
written (`--dry-run` checks the same). Event ids not given in the file are derived
from (person, activity, score, completed_at), so importing the same file twice records nothing
new. Rows are stored in batches of 500, each batch all-or-nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from gradesync.cli._common import (
    EXIT_BAD_INPUT,
    EXIT_NOT_FOUND,
    JSON_OUT,
    TENANT,
    CliError,
    console,
    print_json,
    report,
    runtime,
)
from gradesync.domain.errors import FieldProblem, InvalidInput
from gradesync.domain.model import Activity, Attempt
from gradesync.services.ingest import IngestBatch
from gradesync.services.ingest import check as check_batch

app = typer.Typer(help="Import facts from files.", no_args_is_help=True)

CHUNK = 500
_PAREN_ID = re.compile(r"\(([^()]+)\)\s*$")


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    column: str  # the score's
    attempt: Attempt
    person_column: str = "person_id"
    long: bool = True  # a long file names its columns after the attempt's fields


class FileProblems(Exception):
    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.message} [{p.rule}]" for p in problems))


def _at(line: int, column: str | None = None) -> str:
    """Where in the file: the field a problem names."""
    return f"line {line}" + (f", {column}" if column else "")


def _parse_time(value: str, line: int, col: str, problems: list[FieldProblem]) -> datetime | None:
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        problems.append(
            FieldProblem(_at(line, col), "datetime", f"{value!r} is not an ISO 8601 date-time")
        )
        return None
    if dt.tzinfo is None:
        problems.append(
            FieldProblem(
                _at(line, col), "timezone_required", f"{value!r} has no time zone; add Z or +01:00"
            )
        )
        return None
    return dt


def _parse_score(value: str, line: int, col: str, problems: list[FieldProblem]) -> float | None:
    try:
        v = float(value.strip())
    except ValueError:
        problems.append(FieldProblem(_at(line, col), "number", f"{value!r} is not a number"))
        return None
    if not math.isfinite(v):
        problems.append(FieldProblem(_at(line, col), "finite", f"{value!r} is not a finite number"))
        return None
    return v


def _event_id(person: str, activity: str, score: float | None, at: datetime) -> str:
    raw = f"{person}|{activity}|{score!r}|{at.astimezone(UTC).isoformat()}"
    return "csv:" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def _text(path: Path) -> str:
    """The file's text: UTF-8 (a byte order mark allowed), else the line and column (1-based,
    in bytes) of the first byte that is not."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise FileProblems(
            [
                FieldProblem(
                    _at(line),
                    "utf8",
                    f"byte {data[exc.start]:#04x} at column {column} is not UTF-8: save the "
                    "file as UTF-8 (CSV UTF-8 in a spreadsheet)",
                )
            ]
        ) from None


def _no_repeated_columns(header: list[str]) -> None:
    """A column named twice would be read once, the last one winning: refused, by name."""
    seen: dict[str, int] = {}
    problems = []
    for i, h in enumerate(header, start=1):
        if h and h in seen:
            problems.append(
                FieldProblem(
                    _at(1, h),
                    "duplicate_column",
                    f"{h!r} heads columns {seen[h]} and {i}: name each column once",
                )
            )
        seen.setdefault(h, i)
    if problems:
        raise FileProblems(problems)


def read_rows(
    path: Path,
    tenant: str,
    activities: dict[str, Activity],
    default_time: datetime,
    person_column: str,
) -> tuple[list[Row], list[str], list[FieldProblem]]:
    """Parse the file into attempts (not yet checked against the people stored).
    Returns (rows, ignored columns, the problems found reading them); raises FileProblems
    when the file cannot be read as attempts at all (not UTF-8, no header, a column named
    twice, no known column).
    A row with a problem is kept with what could be read (a blank or unreadable score as
    none, a blank person as blank, a date as the default, a maximum not known as 1), for the
    ingest's rules to find its other problems in the same pass: any problem stops the import,
    so such a row is never stored."""
    problems: list[FieldProblem] = []
    rows: list[Row] = []
    ignored: list[str] = []
    with io.StringIO(_text(path), newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        if not header:
            raise FileProblems(
                [
                    FieldProblem(
                        "file", "header_required", "the file is empty: expected a header row"
                    )
                ]
            )
        _no_repeated_columns(header)
        long = {"person_id", "activity_id", "score_given"} <= set(header)
        columns: dict[str, str] = {}
        if not long:
            if person_column not in header:
                raise FileProblems(
                    [
                        FieldProblem(
                            "header",
                            "columns",
                            f"no {person_column!r} column: a long file needs person_id, "
                            "activity_id, score_given; a gradebook needs a person id column "
                            "(see --person-column)",
                        )
                    ]
                )
            for h in header:
                if h == person_column:
                    continue
                m = _PAREN_ID.search(h)
                aid = h if h in activities else (m.group(1) if m else None)
                if aid is not None and aid in activities:
                    columns[h] = aid
                else:
                    ignored.append(h)
            if not columns:
                raise FileProblems(
                    [
                        FieldProblem(
                            "header",
                            "columns",
                            "no column names a known activity (by id or '(id)')",
                        )
                    ]
                )
        for n, rec in enumerate(reader, start=2):
            if long:
                aid = (rec.get("activity_id") or "").strip()
                cells = [("score_given", aid, rec.get("score_given") or "")]
            else:
                cells = [(h, aid, rec.get(h) or "") for h, aid in columns.items()]
            person_col = "person_id" if long else person_column
            person = (rec.get(person_col) or "").strip()
            if not person:
                # the row's scores are still read, for their own problems in the same report
                problems.append(FieldProblem(_at(n, person_col), "required", "no person id"))
            for col, aid, cell in cells:
                blank = cell.strip() in ("", "-")
                if blank and not long:
                    continue  # a gradebook's learner without this grade
                act = activities.get(aid)
                if not aid:
                    problems.append(FieldProblem(_at(n, "activity_id"), "required", "empty"))
                elif act is None:
                    problems.append(
                        FieldProblem(
                            _at(n, "activity_id"), "unknown_activity", f"no activity {aid!r}"
                        )
                    )
                if blank:
                    problems.append(FieldProblem(_at(n, "score_given"), "required", "empty"))
                    score = None
                else:
                    score = _parse_score(cell, n, col, problems)
                maximum = act.points_possible if act is not None else None
                if long and (rec.get("score_maximum") or "").strip():
                    maximum = _parse_score(rec["score_maximum"], n, "score_maximum", problems)
                at = default_time
                if long and (rec.get("completed_at") or "").strip():
                    parsed = _parse_time(rec["completed_at"], n, "completed_at", problems)
                    at = parsed or default_time
                if score is not None and maximum is None:
                    # its activity unknown or its maximum unreadable, both reported: with a
                    # stand-in the ingest's rules still say what is wrong with the score itself
                    # (a negative one) in the same report, and no maximum is said missing
                    maximum = 1.0
                event = (rec.get("source_event_id") or "").strip() if long else ""
                comment = (rec.get("comment") or "").strip() or None if long else None
                rows.append(
                    Row(
                        n,
                        col,
                        Attempt(
                            tenant_id=tenant,
                            source_event_id=event or _event_id(person, aid, score, at),
                            activity_id=aid,
                            person_id=person,
                            score_given=score,
                            score_maximum=maximum,
                            completed_at=at,
                            comment=comment,
                        ),
                        person_col,
                        long,
                    )
                )
    return rows, ignored, problems


def _reused_events(rows: list[Row]) -> list[FieldProblem]:
    """An event id given again in a later batch of the file for a different attempt (the
    ingest's own check compares within one batch and with what is stored)."""

    def what(a: Attempt) -> tuple[object, ...]:
        return (a.activity_id, a.person_id, a.score_given, a.score_maximum, a.completed_at)

    first: dict[str, tuple[Attempt, int]] = {}
    out = []
    for i, r in enumerate(rows):
        a = r.attempt
        seen, batch = first.setdefault(a.source_event_id, (a, i // CHUNK))
        if batch != i // CHUNK and what(seen) != what(a):
            out.append(
                FieldProblem(
                    _at(r.line, "source_event_id"),
                    "event_id_reused",
                    f"{a.source_event_id!r} is given earlier in the file for another attempt",
                )
            )
    return out


def _column(r: Row, field: str) -> str:
    """Where in the file an attempt's field was read: its own column in a long file; in a
    gradebook the score's or the person's, else the score's with the field (a maximum is the
    activity's points, a time the option's)."""
    if field in ("", "score_given"):
        return _at(r.line, r.column)
    if field == "person_id":
        return _at(r.line, r.person_column)
    return _at(r.line, field) if r.long else f"{_at(r.line, r.column)} ({field})"


def _where(batch: list[Row], exc: InvalidInput) -> list[FieldProblem]:
    """The batch's problems, named by line and column of the file."""
    out = []
    for p in exc.problems:
        m = re.match(r"attempts\[(\d+)\]\.?(.*)", p.field)
        if m:
            p = FieldProblem(_column(batch[int(m.group(1))], m.group(2)), p.rule, p.message)
        out.append(p)
    return out


def _check_batches(check: Callable[[list[Row]], None], rows: list[Row]) -> list[FieldProblem]:
    """The ingest's own rules, batch by batch, and an event id reused across batches. The
    ingest checks what is stored (people, event ids) only once a batch's shape is right: the
    rows of a batch with no problem of their own are checked again, for one pass to find
    every problem of the file."""
    found = _reused_events(rows)
    for start in range(0, len(rows), CHUNK):
        batch = rows[start : start + CHUNK]
        try:
            check(batch)
        except InvalidInput as exc:
            found += _where(batch, exc)
            bad = {_line_of(p) for p in found}
            rest = [r for r in batch if r.line not in bad]
            if rest and len(rest) < len(batch):
                try:
                    check(rest)
                except InvalidInput as again:
                    found += _where(rest, again)
    return found


def _once(problems: list[FieldProblem]) -> list[FieldProblem]:
    """Each problem once (the ingest finds an unknown person or activity the file's reading
    found too; a gradebook row names its person for each score), in the file's order."""
    seen: set[tuple[str, str]] = set()
    out = []
    for p in sorted(problems, key=_line_of):
        if (p.field, p.rule) not in seen:
            seen.add((p.field, p.rule))
            out.append(p)
    return out


def _line_of(p: FieldProblem) -> int:
    """The line a problem names (`line 12, score_given` -> 12)."""
    m = re.match(r"line (\d+)", p.field)
    return int(m.group(1)) if m else 0


@app.command()
def attempts(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    tenant: str = TENANT,
    course: str | None = typer.Option(
        None, "--course", help="Restrict to this course's activities (recommended for gradebooks)."
    ),
    completed_at: datetime | None = typer.Option(
        None,
        "--completed-at",
        help="When the attempts were completed, UTC unless a zone is given "
        "(default: the file's modification time).",
    ),
    person_column: str = typer.Option("person_id", help="Gradebook column holding person ids."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the file; store nothing."),
    as_json: bool = JSON_OUT,
) -> None:
    """Import attempts from a CSV file (long or gradebook layout), with progress."""
    if completed_at is None:
        default_time = datetime.fromtimestamp(file.stat().st_mtime, UTC)
    else:
        default_time = completed_at if completed_at.tzinfo else completed_at.replace(tzinfo=UTC)
    with runtime() as rt:
        with rt.uow() as uow:
            if course is not None:
                if uow.courses.get(tenant, course) is None:
                    # as `sync --course`: a course named and not there is not found, not a
                    # file with no known activity
                    said = f"No course {course!r}."
                    problem = FieldProblem("--course", "unknown_course", said)
                    raise report(CliError(EXIT_NOT_FOUND, said, (problem,)))
                acts = {a.id: a for a in uow.activities.for_course(tenant, course)}
            else:
                acts = {
                    a.id: a
                    for c in uow.courses.all(tenant)
                    for a in uow.activities.for_course(tenant, c.id)
                }
        try:
            rows, ignored, unreadable = read_rows(file, tenant, acts, default_time, person_column)
            with rt.uow() as uow:
                people = uow.people.get_many(tenant, {r.attempt.person_id for r in rows})
            unknown = [
                FieldProblem(
                    _column(r, "person_id"),
                    "unknown_person",
                    f"no person {r.attempt.person_id!r}",
                )
                for r in rows
                if r.attempt.person_id and r.attempt.person_id not in people  # blank: reported
            ]

            def check(batch: list[Row]) -> None:
                check_batch(rt.uow, tenant, IngestBatch(attempts=[r.attempt for r in batch]))

            # every rule the stored rows must meet, before any is stored (a dry run too), and
            # every problem at once: those of reading the file with the ingest's own
            found = _check_batches(check, rows)
            if unreadable or unknown or found:
                raise FileProblems(_once(unreadable + unknown + found))
        except FileProblems as exc:
            raise report(
                CliError(
                    EXIT_BAD_INPUT,
                    "nothing was imported",
                    tuple(exc.problems),
                    remedy="fix the file and import it again; nothing was imported",
                )
            ) from exc
        out = {"rows": len(rows), "ignored_columns": ignored, "dry_run": dry_run}
        if ignored and not as_json:
            console.print(f"ignored columns: {', '.join(ignored)}", highlight=False)
        if dry_run:
            if as_json:
                print_json(out | {"recorded": 0, "duplicates": 0})
            else:
                console.print(f"{len(rows)} attempts would be imported (dry run: nothing stored)")
            return
        recorded = duplicates = 0
        with Progress(
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            disable=as_json,
        ) as progress:
            task = progress.add_task("import", total=len(rows))
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start : start + CHUNK]
                batch = IngestBatch(attempts=[r.attempt for r in chunk])
                try:
                    res = rt.ingest(tenant, batch)
                except InvalidInput as exc:
                    progress.stop()
                    raise report(
                        CliError(
                            EXIT_BAD_INPUT,
                            f"stopped: {recorded} attempts stored before line {chunk[0].line}",
                            tuple(_where(chunk, exc)),
                            remedy=f"{recorded} attempts were stored before line "
                            f"{chunk[0].line}; fix the file and import it again (stored rows "
                            "are recognised)",
                        )
                    ) from exc
                recorded += res.recorded
                duplicates += res.duplicates
                progress.update(task, advance=len(chunk))
    if as_json:
        print_json(out | {"recorded": recorded, "duplicates": duplicates})
        return
    console.print(f"imported {recorded} attempts ({duplicates} already stored)")
