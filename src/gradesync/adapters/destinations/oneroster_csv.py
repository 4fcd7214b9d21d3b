"""Writing a OneRoster 1.2 CSV set: manifest.csv plus categories, lineItems and results,
as files in a directory or as one zip (the usual way a SIS imports them)."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

from gradesync.services.sis_export import FILES, HEADERS, CsvExport

# Every file the 1.2 binding names; ours are bulk|delta, the others absent.
MANIFEST_FILES = (
    "academicSessions",
    "categories",
    "classes",
    "classResources",
    "courses",
    "courseResources",
    "demographics",
    "enrollments",
    "lineItemLearningObjectiveIds",
    "lineItems",
    "lineItemScoreScales",
    "orgs",
    "resources",
    "resultLearningObjectiveIds",
    "results",
    "resultScoreScales",
    "roles",
    "scoreScales",
    "userProfiles",
    "userResources",
    "users",
)


def _csv(header: tuple[str, ...], rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def render(export: CsvExport, *, system_name: str = "gradesync") -> dict[str, str]:
    """File name -> CSV text (RFC 4180, CRLF, UTF-8)."""
    manifest = [
        {"propertyName": "manifest.version", "value": "1.0"},
        {"propertyName": "oneroster.version", "value": "1.2"},
        *(
            {
                "propertyName": f"file.{name}",
                "value": export.mode.value if name in FILES else "absent",
            }
            for name in MANIFEST_FILES
        ),
        {"propertyName": "source.systemName", "value": system_name},
        {"propertyName": "source.systemCode", "value": "gradesync"},
    ]
    files = {"manifest.csv": _csv(("propertyName", "value"), manifest)}
    for name in FILES:
        files[f"{name}.csv"] = _csv(HEADERS[name], export.rows[name])
    return files


def write(export: CsvExport, target: Path, *, as_zip: bool = False) -> list[Path]:
    """Write the set into the directory `target` (created), or to the zip file `target`."""
    files = render(export)
    if as_zip:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, text in files.items():
                archive.writestr(name, text.encode("utf-8"))
        return [target]
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = target / name
        path.write_text(text, encoding="utf-8", newline="")
        written.append(path)
    return written
