"""What the sandbox holds, as JSON for tests and as a small HTML page for people."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .ags import result_json
from .common import iso, json_response
from .context import Sandbox
from .state import LineItem


def _line_item(sb: Sandbox, base: str, item: LineItem) -> dict[str, Any]:
    scores = {}
    for user, rec in item.scores.items():
        result = result_json(sb, base, item, user, rec)
        scores[user] = {
            "scoreGiven": rec.score_given,
            "scoreMaximum": rec.score_maximum,
            "resultScore": result.get("resultScore"),
            "columnPointsWhenStored": rec.column_points,
            "comment": rec.comment,
            "timestamp": iso(rec.timestamp),
            "activityProgress": rec.activity_progress,
            "gradingProgress": rec.grading_progress,
            "source": rec.source,
            "attempts": rec.attempts,
            "history": rec.history,
        }
    return {
        "id": item.id,
        "url": sb.line_item_url(base, item),
        "label": item.label,
        "scoreMaximum": item.score_maximum,
        "resourceLinkId": item.resource_link_id,
        "resourceId": item.resource_id,
        "tag": item.tag,
        "client_id": item.client_id,
        "published": item.published,
        "allowed_attempts": item.allowed_attempts,
        "scores": scores,
    }


def snapshot(sb: Sandbox, base: str, course_id: str | None = None) -> dict[str, Any]:
    state = sb.state
    courses = []
    for course in state.courses.values():
        if course_id is not None and course.id != course_id:
            continue
        courses.append(
            {
                "id": course.id,
                "title": course.title,
                "concluded": course.concluded,
                "learners": sorted(course.learners),
                "instructors": sorted(course.instructors),
                "sections": list(course.sections.values()),
                "resource_links": [
                    {"id": link.id, "title": link.title, "client_id": link.client_id}
                    for link in course.resource_links.values()
                ],
                "line_items": [_line_item(sb, base, i) for i in course.line_items.values()],
            }
        )
    return {
        "mode": state.mode,
        "issuer": base,
        "lms": {"courses": courses},
        "sis": {
            "profile": state.sis_profile.model_dump(),
            "classes": [
                {
                    "sourcedId": c.sourced_id,
                    "title": c.title,
                    "school": c.school,
                    "term": c.term,
                    "students": sorted(c.students),
                }
                for c in state.sis_classes.values()
            ],
            "categories": [o.data for o in state.sis_categories.values()],
            "lineItems": [o.data for o in state.sis_line_items.values()],
            "results": [o.data for o in state.sis_results.values()],
        },
        "counters": sb.faults.counters(),
    }


async def inspect_json(request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    return json_response(snapshot(sb, sb.base(request), request.query_params.get("course")))


@cache
def _template() -> jinja2.Template:
    text = resources.files(__package__).joinpath("inspect.html").read_text(encoding="utf-8")
    return jinja2.Environment(autoescape=True).from_string(text)


async def inspect_html(request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    data = snapshot(sb, sb.base(request))
    return HTMLResponse(_template().render(data=data, faults=sb.faults.describe()))
