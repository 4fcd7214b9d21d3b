"""LTI Assignment and Grade Services 2.0: line items, scores and results, with LMS rules."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .common import AccessToken, error, iso, json_response, now, parse_timestamp
from .config import AGS_LINEITEM, AGS_LINEITEM_READONLY, AGS_RESULT_READONLY, AGS_SCORE
from .context import AGS_PREFIX, Sandbox
from .state import Course, LineItem, ScoreRecord

LINEITEM_TYPE = "application/vnd.ims.lis.v2.lineitem+json"
CONTAINER_TYPE = "application/vnd.ims.lis.v2.lineitemcontainer+json"
RESULTS_TYPE = "application/vnd.ims.lis.v2.resultcontainer+json"
SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
CANVAS_SUBMISSION = "https://canvas.instructure.com/lti/submission"

ACTIVITY_PROGRESS = frozenset({"Initialized", "Started", "InProgress", "Submitted", "Completed"})
GRADING_PROGRESS = frozenset({"FullyGraded", "Pending", "PendingManual", "Failed", "NotReady"})

MAX_PAGE = 1000


class Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def _sandbox(request: Request) -> Sandbox:
    return request.app.state.sandbox  # type: ignore[no-any-return]


def _course(sb: Sandbox, request: Request) -> Course:
    course = sb.state.courses.get(request.path_params["course_id"])
    if course is None:
        raise Rejected(404, f"Course {request.path_params['course_id']!r} not found")
    return course


def _item(sb: Sandbox, request: Request, token: AccessToken) -> LineItem:
    course = _course(sb, request)
    item = course.line_items.get(request.path_params["item_id"])
    if item is None:
        raise Rejected(404, "The specified LTI line item could not be found")
    if item.client_id is not None and item.client_id != token.client_id:
        raise Rejected(412, "This line item belongs to another tool")
    return item


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise Rejected(400, "body: not valid JSON") from None
    if not isinstance(body, dict):
        raise Rejected(400, "body: must be a JSON object")
    return body


def _page(request: Request, default: int) -> tuple[int, int]:
    try:
        limit = int(request.query_params.get("limit", default))
        page = int(request.query_params.get("page", 1))
    except ValueError:
        raise Rejected(400, "limit/page: must be integers") from None
    if not 1 <= limit <= MAX_PAGE:
        raise Rejected(400, f"limit: must be between 1 and {MAX_PAGE}")
    if page < 1:
        raise Rejected(400, "page: must be 1 or more")
    return limit, page


def _links(base_url: str, request: Request, page: int, limit: int, total: int) -> str:
    last = max(1, math.ceil(total / limit))
    params = dict(request.query_params)

    def url(number: int) -> str:
        params.update(page=str(number), limit=str(limit))
        return f"{base_url}?{urlencode(params)}"

    links = [f'<{url(page)}>; rel="current"', f'<{url(1)}>; rel="first"']
    if page < last:
        links.append(f'<{url(page + 1)}>; rel="next"')
    if page > 1:
        links.append(f'<{url(page - 1)}>; rel="prev"')
    links.append(f'<{url(last)}>; rel="last"')
    return ", ".join(links)


def line_item_json(sb: Sandbox, base: str, item: LineItem) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": sb.line_item_url(base, item),
        "label": item.label,
        "scoreMaximum": item.score_maximum,
    }
    for key, value in (
        ("resourceId", item.resource_id),
        ("tag", item.tag),
        ("resourceLinkId", item.resource_link_id),
        ("startDateTime", item.start),
        ("endDateTime", item.end),
        ("gradesReleased", item.grades_released),
    ):
        if value is not None:
            data[key] = value
    return data


def _line_item_fields(body: dict[str, Any], course: Course, partial: bool) -> dict[str, Any]:
    """Validate a line item body; returns the fields to set."""
    fields: dict[str, Any] = {}
    if "label" in body or not partial:
        label = body.get("label")
        if not isinstance(label, str) or not label.strip():
            raise Rejected(400, "label: required, a non-blank string")
        fields["label"] = label
    if "scoreMaximum" in body or not partial:
        maximum = body.get("scoreMaximum")
        if isinstance(maximum, bool) or not isinstance(maximum, int | float) or maximum <= 0:
            raise Rejected(400, "scoreMaximum: required, a number greater than 0")
        fields["score_maximum"] = float(maximum)
    for key, attr in (("resourceId", "resource_id"), ("tag", "tag")):
        if key in body:
            if body[key] is not None and not isinstance(body[key], str):
                raise Rejected(400, f"{key}: must be a string")
            fields[attr] = body[key]
    if "resourceLinkId" in body and body["resourceLinkId"] is not None:
        link = body["resourceLinkId"]
        if not isinstance(link, str) or link not in course.resource_links:
            raise Rejected(400, f"resourceLinkId: {link!r} is not a resource link of this course")
        fields["resource_link_id"] = link
    for key, attr in (("startDateTime", "start"), ("endDateTime", "end")):
        if body.get(key) is not None:
            try:
                parse_timestamp(body[key], key)
            except ValueError as exc:
                raise Rejected(400, str(exc)) from None
            fields[attr] = body[key]
    if "gradesReleased" in body:
        if not isinstance(body["gradesReleased"], bool):
            raise Rejected(400, "gradesReleased: must be true or false")
        fields["grades_released"] = body["gradesReleased"]
    return fields


async def line_items(request: Request) -> Response:
    sb = _sandbox(request)
    write = request.method == "POST"
    token = sb.lti_tokens.check(
        request, (AGS_LINEITEM,) if write else (AGS_LINEITEM, AGS_LINEITEM_READONLY)
    )
    if isinstance(token, Response):
        return token
    base = sb.base(request)
    try:
        course = _course(sb, request)
        if write:
            if _media_type(request) not in (LINEITEM_TYPE, "application/json"):
                raise Rejected(415, f"Content-Type: must be {LINEITEM_TYPE}")
            body = await _json_body(request)
            fields = _line_item_fields(body, course, partial=False)
            item = LineItem(
                id=sb.state.new_id(), course_id=course.id, client_id=token.client_id, **fields
            )
            course.line_items[item.id] = item
            sb.state.line_items[item.id] = item
            return json_response(line_item_json(sb, base, item), 201, LINEITEM_TYPE)
        limit, page = _page(request, sb.config.page_size)
    except Rejected as exc:
        return error(exc.status, exc.message)
    if sb.state.max_page_size is not None:
        limit = min(limit, sb.state.max_page_size)  # a platform pages as it chooses
    query = request.query_params
    honoured = sb.state.line_item_filters == "honoured"  # else advisory, and not applied
    wanted = {
        key: query.get(key) if honoured else None
        for key in ("resource_link_id", "resource_id", "tag")
    }
    matches = [
        item
        for item in course.line_items.values()
        if item.client_id in (None, token.client_id)
        and (
            wanted["resource_link_id"] is None
            or item.resource_link_id == wanted["resource_link_id"]
        )
        and (wanted["resource_id"] is None or item.resource_id == wanted["resource_id"])
        and (wanted["tag"] is None or item.tag == wanted["tag"])
    ]
    chunk = matches[(page - 1) * limit : page * limit]
    container = sb.line_items_url(base, course.id)
    return json_response(
        [line_item_json(sb, base, item) for item in chunk],
        200,
        CONTAINER_TYPE,
        Link=_links(container, request, page, limit, len(matches)),
    )


async def line_item(request: Request) -> Response:
    sb = _sandbox(request)
    method = request.method
    needed = (AGS_LINEITEM, AGS_LINEITEM_READONLY) if method == "GET" else (AGS_LINEITEM,)
    token = sb.lti_tokens.check(request, needed)
    if isinstance(token, Response):
        return token
    base = sb.base(request)
    try:
        item = _item(sb, request, token)
        if method == "GET":
            return json_response(line_item_json(sb, base, item), 200, LINEITEM_TYPE)
        if method == "DELETE":
            sb.state.remove_line_item(item)
            return Response(status_code=204)
        if _media_type(request) not in (LINEITEM_TYPE, "application/json"):
            raise Rejected(415, f"Content-Type: must be {LINEITEM_TYPE}")
        body = await _json_body(request)
        if "id" in body and str(body["id"]).split("?")[0] != sb.line_item_path(base, item):
            raise Rejected(400, "id: does not match the line item URL")
        fields = _line_item_fields(body, sb.state.courses[item.course_id], True)
        if item.points_kept:
            fields.pop("score_maximum", None)  # answered, not applied: the LMS keeps its points
        for key, value in fields.items():
            setattr(item, key, value)
        return json_response(line_item_json(sb, base, item), 200, LINEITEM_TYPE)
    except Rejected as exc:
        return error(exc.status, exc.message)


def _validate_score(body: dict[str, Any]) -> dict[str, Any]:
    user = body.get("userId")
    if not isinstance(user, str) or not user:
        raise Rejected(400, "userId: required, a non-empty string")
    try:
        timestamp = parse_timestamp(body.get("timestamp"), "timestamp")
    except ValueError as exc:
        raise Rejected(400, str(exc)) from None
    activity = body.get("activityProgress")
    if activity not in ACTIVITY_PROGRESS:
        raise Rejected(400, f"activityProgress: must be one of {sorted(ACTIVITY_PROGRESS)}")
    grading = body.get("gradingProgress")
    if grading not in GRADING_PROGRESS:
        raise Rejected(400, f"gradingProgress: must be one of {sorted(GRADING_PROGRESS)}")
    given = body.get("scoreGiven")
    maximum = body.get("scoreMaximum")
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, int | float) or given < 0:
            raise Rejected(400, "scoreGiven: must be a number >= 0")
        if maximum is None:
            raise Rejected(400, "scoreMaximum: required when scoreGiven is present")
    if maximum is not None and (
        isinstance(maximum, bool) or not isinstance(maximum, int | float) or maximum <= 0
    ):
        raise Rejected(400, "scoreMaximum: must be a number > 0")
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise Rejected(400, "comment: must be a string")
    submission = body.get("submission")
    if submission is not None:
        if not isinstance(submission, dict):
            raise Rejected(400, "submission: must be an object")
        for key in ("startedAt", "submittedAt"):
            if submission.get(key) is not None:
                try:
                    parse_timestamp(submission[key], f"submission.{key}")
                except ValueError as exc:
                    raise Rejected(400, str(exc)) from None
    new_submission = True
    extension = body.get(CANVAS_SUBMISSION)
    if extension is not None:
        if not isinstance(extension, dict):
            raise Rejected(400, f"{CANVAS_SUBMISSION}: must be an object")
        flag = extension.get("new_submission", True)
        if not isinstance(flag, bool):
            raise Rejected(400, f"{CANVAS_SUBMISSION}.new_submission: must be true or false")
        new_submission = flag
    return {
        "user": user,
        "timestamp": timestamp,
        "activity": activity,
        "grading": grading,
        "given": None if given is None else float(given),
        "maximum": None if maximum is None else float(maximum),
        "comment": comment,
        "new_submission": new_submission,
    }


async def scores(request: Request) -> Response:
    sb = _sandbox(request)
    token = sb.lti_tokens.check(request, (AGS_SCORE,))
    if isinstance(token, Response):
        return token
    mode = sb.state.mode
    try:
        item = _item(sb, request, token)
        if _media_type(request) != SCORE_TYPE:
            raise Rejected(415, f"Content-Type: must be {SCORE_TYPE}")
        score = _validate_score(await _json_body(request))
        # No await below this line: the checks and the write happen as one step.
        course = sb.state.courses[item.course_id]
        if course.concluded:
            raise Rejected(
                422, "This course has concluded. AGS requests will no longer be accepted."
            )
        if not item.published:
            raise Rejected(422, "This assignment is still unpublished")
        user = score["user"]
        if user not in course.learners:
            raise Rejected(422, "User not found in course or is not a student")
        record = item.scores.get(user)
        if record is not None:
            _check_timestamp(mode, item, user, record, score)
        attempts = record.attempts if record else 0
        if score["new_submission"]:
            if item.allowed_attempts is not None and attempts >= item.allowed_attempts:
                raise Rejected(
                    422,
                    "The maximum number of allowed attempts has been reached for this submission",
                )
            attempts += 1
        given = score["given"]
        if mode == "moodle" and score["grading"] != "FullyGraded":
            given = None  # Moodle stores no grade until the score is FullyGraded
        item.scores[user] = ScoreRecord(
            timestamp=score["timestamp"],
            score_given=given,
            score_maximum=score["maximum"] if given is not None else None,
            comment=score["comment"],  # omitted comment clears the old one
            activity_progress=score["activity"],
            grading_progress=score["grading"],
            source="tool",
            attempts=attempts,
            history=(record.history if record else 0) + 1,
            updated_at=now(),
            # a column keeping its points holds the score as sent, read on its own points
            column_points=score["maximum"] if item.points_kept else item.score_maximum,
        )
    except Rejected as exc:
        return error(exc.status, exc.message)
    if mode == "moodle":
        return Response(status_code=204)
    result_url = f"{sb.line_item_path(sb.base(request), item)}/results/{user}"
    return json_response({"resultUrl": result_url}, 200)


def _check_timestamp(
    mode: str, item: LineItem, user: str, record: ScoreRecord, score: dict[str, Any]
) -> None:
    incoming = score["timestamp"]
    if incoming > record.timestamp:
        return
    if mode == "moodle":
        raise Rejected(
            409,
            f"Refusing score with an earlier or equal timestamp for item {item.id} and user {user}",
        )
    if incoming < record.timestamp:
        raise Rejected(
            400,
            f"timestamp: provided timestamp of {iso(incoming)} is before the last updated "
            f"timestamp of {iso(record.timestamp)}",
        )


def instructor_grade(item: LineItem, user: str, score: float | None, comment: str | None) -> None:
    """Set a grade as if an instructor typed it into the LMS gradebook (timestamp = now)."""
    record = item.scores.get(user)
    moment = now()
    if record is None:
        item.scores[user] = ScoreRecord(
            timestamp=moment,
            score_given=score,
            score_maximum=item.score_maximum if score is not None else None,
            comment=comment,
            activity_progress="Completed",
            grading_progress="FullyGraded",
            source="instructor",
            history=1,
            updated_at=moment,
            column_points=item.score_maximum,
        )
    else:
        item.scores[user] = replace(
            record,
            timestamp=moment,
            score_given=score,
            score_maximum=item.score_maximum if score is not None else None,
            comment=comment,
            grading_progress="FullyGraded",
            source="instructor",
            history=record.history + 1,
            updated_at=moment,
            column_points=item.score_maximum,
        )


def result_json(
    sb: Sandbox, base: str, item: LineItem, user: str, rec: ScoreRecord
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": f"{sb.line_item_path(base, item)}/results/{user}",
        "scoreOf": sb.line_item_url(base, item),
        "userId": user,
        "resultMaximum": item.score_maximum,
        "timestamp": iso(rec.timestamp),
    }
    if rec.score_given is not None and rec.score_maximum:
        # Scaled to the line item's points as they were when the score was stored, as Canvas
        # does for a different scoreMaximum (points changed since rescale nothing stored)
        points = rec.column_points if rec.column_points is not None else item.score_maximum
        data["resultScore"] = rec.score_given * points / rec.score_maximum
    if rec.comment is not None:
        data["comment"] = rec.comment
    return data


async def results(request: Request) -> Response:
    sb = _sandbox(request)
    token = sb.lti_tokens.check(request, (AGS_RESULT_READONLY,))
    if isinstance(token, Response):
        return token
    base = sb.base(request)
    try:
        item = _item(sb, request, token)
        limit, page = _page(request, sb.config.page_size)
    except Rejected as exc:
        return error(exc.status, exc.message)
    wanted = request.query_params.get("user_id")
    records = [(user, rec) for user, rec in item.scores.items() if wanted is None or user == wanted]
    chunk = records[(page - 1) * limit : page * limit]
    container = f"{sb.line_item_path(base, item)}/results"
    return json_response(
        [result_json(sb, base, item, user, rec) for user, rec in chunk],
        200,
        RESULTS_TYPE,
        Link=_links(container, request, page, limit, len(records)),
    )


routes = [
    Route(AGS_PREFIX + "/{course_id}/line_items", line_items, methods=["GET", "POST"]),
    Route(
        AGS_PREFIX + "/{course_id}/line_items/{item_id:int}",
        line_item,
        methods=["GET", "PUT", "DELETE"],
    ),
    Route(AGS_PREFIX + "/{course_id}/line_items/{item_id:int}/scores", scores, methods=["POST"]),
    Route(AGS_PREFIX + "/{course_id}/line_items/{item_id:int}/results", results, methods=["GET"]),
]
