"""A SIS's answers shared by the API and `gradesync sis ... --json`: activities checked
against the SIS's rules, a connection's settings, its class and student mappings, its
categories and a "Post grades" (a connection's check steps: answers/checks.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gradesync.answers.problems import problem_json
from gradesync.answers.runs import asked_out
from gradesync.domain.model import CourseLink, Destination, DestinationKind, PersonLink
from gradesync.domain.remedies import Reader
from gradesync.runtime import Runtime
from gradesync.services import sis as service


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


def class_out(link: CourseLink, warning: str | None = None) -> dict[str, Any]:
    """A course (or section) mapped to a SIS class (also `gradesync sis map-class`), with
    what is worth a word (`warnings`: other courses passing back to the same class)."""
    return {
        "course_id": link.course_id,
        "class_id": link.remote_id,
        "data": link.data,
        "warnings": [warning] if warning else [],
    }


def student_out(link: PersonLink) -> dict[str, str]:
    return {"person_id": link.person_id, "student_id": link.remote_id}


def roster_out(report: service.RosterMapping) -> dict[str, list[str]]:
    """A course's learners linked to their SIS students (also `gradesync sis map-students`)."""
    return {"mapped": list(report.mapped), "unmapped": list(report.unmapped)}


def categories_out(
    cats: Sequence[dict[str, Any]], checks: Sequence[service.CategoryAlignment]
) -> dict[str, Any]:
    """The SIS's categories and how a course's groups align (also `gradesync sis
    categories`)."""
    return {
        "categories": [{"sourcedId": c["sourcedId"], "title": c.get("title")} for c in cats],
        "alignment": [
            {
                "group": a.group,
                "activities": a.activities,
                "category_id": a.category_id,
                "problem": a.problem,
            }
            for a in checks
        ],
    }


def post_out(
    rt: Runtime, tenant_id: str, result: service.PostResult, destination_id: str | None = None
) -> dict[str, Any]:
    """What "Post grades" queued (also `gradesync sis post`), its run as `GET /runs/{id}`
    shows it (stages included); `run` is null when nothing could be posted (which the API
    refuses). `destination_id`: the refused activities' remedies as `checks_out` words them."""
    return {
        "run": asked_out(rt, tenant_id, result.run, result.joined).model_dump(mode="json")
        if result.run is not None
        else None,
        "posted": result.posted,
        "held": result.held,
        "refused": checks_out(result.refused, destination_id),
    }


def connection_out(dest: Destination) -> dict[str, Any]:
    """A SIS connection's settings (never its secret) and their `version`, which the API's
    answer carries as its `ETag` too (also `gradesync sis show`)."""
    return {
        "id": dest.id,
        "kind": dest.kind.value,
        "name": dest.name,
        "config": dest.config,
        "settings": settings_out(dest),
        "version": service.settings_version(dest),
    }


def settings_out(dest: Destination) -> dict[str, Any]:
    """The connection's writable settings in the shape `PUT` takes (`ConnectionIn`): a
    client reads them, edits and sends them back with the `ETag` as `If-Match`. `config`
    also holds what `PUT` does not write (the category map alignment keeps) and the
    profile's settings at its top, as it is stored. Unset values are null, which `PUT`
    reads as "keep"."""
    config = dest.config
    return {
        "name": dest.name,
        "file_based": dest.kind is DestinationKind.ONEROSTER_CSV,
        "base_url": config.get("base_url"),
        "token_url": config.get("token_url"),
        "client_id": config.get("client_id"),
        "scopes": config.get("scopes"),
        "profile": {key: config.get(key) for key in service.PROFILE_KEYS},
    }
