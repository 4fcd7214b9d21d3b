"""LTI Names and Role Provisioning Services 2.0: a course's membership, paged, with the
differences since an earlier read.

As strict as the AGS endpoints: the token must grant the context membership scope, the
Accept header must name the membership container media type, `limit` is bounded, and pages
are linked with `Link: <...>; rel="next"`. Every page carries a `rel="differences"` link:
read later, it lists only the members whose membership changed since this read (members
who left appear with status Inactive or Deleted).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .common import error, json_response
from .config import NRPS_SCOPE
from .context import AGS_PREFIX, Sandbox
from .state import Course

MEMBERSHIP_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
ROLES = {
    "learner": "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner",
    "instructor": "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor",
}
ROLE_NAMES = {"Learner": "learner", "Instructor": "instructor"}
MAX_LIMIT = 1000


def memberships_url(base: str, course_id: str) -> str:
    return f"{base}{AGS_PREFIX}/{course_id}/memberships"


def _accepts(request: Request) -> bool:
    accepted = [
        part.split(";", 1)[0].strip().lower()
        for part in request.headers.get("accept", "").split(",")
    ]
    return MEMBERSHIP_TYPE in accepted


def _member(sb: Sandbox, sub: str, role: str, status: str) -> dict[str, Any]:
    user = sb.state.users[sub]
    member: dict[str, Any] = {"user_id": sub, "status": status, "roles": [ROLES[role]]}
    for key, value in (
        ("name", user.name),
        ("given_name", user.given_name),
        ("family_name", user.family_name),
        ("email", user.email),
        ("lis_person_sourcedid", user.sis_id),
    ):
        if value:
            member[key] = value
    return member


def _members(course: Course) -> list[tuple[str, str, str]]:
    """(sub, role, status) of everyone the course lists, in a stable order."""
    rows = [(sub, "learner", "Active") for sub in course.learners]
    rows += [(sub, "instructor", "Active") for sub in course.instructors]
    rows += [(sub, role, status) for sub, (status, role) in course.departed.items()]
    return sorted(rows)


async def memberships(request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    token = sb.lti_tokens.check(request, (NRPS_SCOPE,))
    if isinstance(token, Response):
        return token
    course = sb.state.courses.get(request.path_params["course_id"])
    if course is None:
        return error(404, f"Course {request.path_params['course_id']!r} not found")
    if not _accepts(request):
        return error(406, f"Accept: must name {MEMBERSHIP_TYPE}")
    query = request.query_params
    try:
        limit = int(query.get("limit", sb.config.page_size))
        page = int(query.get("page", 1))
        since = int(query["since"]) if "since" in query else None
    except ValueError:
        return error(400, "limit/page/since: must be integers")
    if not 1 <= limit <= MAX_LIMIT:
        return error(400, f"limit: must be between 1 and {MAX_LIMIT}")
    if page < 1:
        return error(400, "page: must be 1 or more")
    role = query.get("role")
    if role is not None and role not in ROLE_NAMES and role not in ROLES.values():
        return error(400, f"role: must be one of {sorted(ROLE_NAMES)} or a full role URI")
    wanted_role = ROLE_NAMES.get(role or "", role)
    rows = [
        row
        for row in _members(course)
        if (since is None or course.membership_changes.get(row[0], 0) > since)
        and (wanted_role is None or row[1] == wanted_role or ROLES[row[1]] == wanted_role)
    ]
    chunk = rows[(page - 1) * limit : page * limit]
    base = sb.base(request)
    url = memberships_url(base, course.id)
    params = {k: v for k, v in query.items() if k != "page"}
    links = []
    if page * limit < len(rows):
        links.append(f'<{url}?{urlencode({**params, "page": page + 1})}>; rel="next"')
    differences = {k: v for k, v in params.items() if k not in ("since",)}
    differences["since"] = str(sb.state.membership_counter)
    links.append(f'<{url}?{urlencode(differences)}>; rel="differences"')
    body = {
        "id": f"{url}?{urlencode({**params, 'page': page})}",
        "context": {"id": course.id, "label": course.label, "title": course.title},
        "members": [_member(sb, sub, r, status) for sub, r, status in chunk],
    }
    return json_response(body, 200, MEMBERSHIP_TYPE, Link=", ".join(links))


routes = [Route(AGS_PREFIX + "/{course_id}/memberships", memberships, methods=["GET"])]
