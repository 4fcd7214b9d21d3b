"""Admin JSON endpoints under /_sandbox: configure the world over HTTP, set faults, inspect.

These are never faulted and need no token: the sandbox listens on loopback for tests/demos.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from . import lti11, lti13
from .ags import instructor_grade, line_item_json
from .common import json_response
from .config import (
    FAULT_GROUPS,
    CourseSeed,
    FaultSpec,
    LineItemFilters,
    LineItemSeed,
    Lti11ConsumerSeed,
    Mode,
    ResourceLinkSeed,
    SeedData,
    SisCategorySeed,
    SisClassSeed,
    SisClientSeed,
    SisProfile,
    SisStudentSeed,
    SisTermSeed,
    ToolSeed,
    UserSeed,
)
from .context import (
    AUTHORIZE_PATH,
    DEEP_LINK_RETURN_PATH,
    JWKS_PATH,
    LOGIN_START_PATH,
    LTI11_OUTCOMES_PATH,
    ONEROSTER_BASE,
    ONEROSTER_TOKEN_PATH,
    TOKEN_PATH,
    Sandbox,
)
from .inspection import inspect_html, inspect_json
from .state import SeedError

Handler = Callable[[Request], Awaitable[Response]]
_FAULTS = TypeAdapter(dict[str, FaultSpec])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnrollmentBody(_Body):
    user: str = Field(min_length=1)
    role: str = "learner"


class CoursePatch(_Body):
    title: str | None = None
    concluded: bool | None = None


class LineItemPatch(_Body):
    label: str | None = Field(default=None, min_length=1)
    scoreMaximum: float | None = Field(default=None, gt=0)
    published: bool | None = None
    allowed_attempts: int | None = Field(default=None, ge=1)
    clear_allowed_attempts: bool = False
    points_kept: bool | None = None


class GradeBody(_Body):
    user: str = Field(min_length=1)
    score: float | None = Field(default=None, ge=0)
    comment: str | None = None


class ConfigPatch(_Body):
    """Any of the fields; `max_page_size: null` lifts the cap."""

    mode: Mode | None = None
    max_page_size: int | None = Field(default=None, ge=1)
    line_item_filters: LineItemFilters | None = None

    @model_validator(mode="after")
    def _something_set(self) -> ConfigPatch:
        if not self.model_fields_set:
            raise ValueError("name at least one of mode, max_page_size, line_item_filters")
        for name in ("mode", "line_item_filters"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name}: must not be null")
        return self


class ExpireBody(_Body):
    client_id: str | None = None
    service: str = Field(default="all", pattern="^(lti|oneroster|all)$")


def _problem(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise SeedError("body: not valid JSON") from None


def _validation(exc: ValidationError) -> Response:
    details = [
        f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}" for e in exc.errors()
    ]
    return json_response({"error": "; ".join(details), "details": details}, 422)


def endpoint(fn: Callable[[Sandbox, Request, Any], Any]) -> Handler:
    """Wrap an admin action: parse JSON, map seed/validation errors to clear 4xx answers."""

    async def handler(request: Request) -> Response:
        sb: Sandbox = request.app.state.sandbox
        try:
            body = await _body(request) if request.method in ("POST", "PUT", "PATCH") else {}
            result = fn(sb, request, body)
        except ValidationError as exc:
            return _validation(exc)
        except SeedError as exc:
            status = 404 if "does not exist" in str(exc) else 422
            return _problem(status, str(exc))
        if isinstance(result, Response):
            return result
        status = 201 if request.method == "POST" else 200
        return json_response(result if result is not None else {"ok": True}, status)

    return handler


def _urls(sb: Sandbox, request: Request) -> dict[str, Any]:
    base = sb.base(request)
    return {
        "issuer": base,
        "mode": sb.state.mode,
        "max_page_size": sb.state.max_page_size,
        "line_item_filters": sb.state.line_item_filters,
        "jwks_url": base + JWKS_PATH,
        "authorization_url": base + AUTHORIZE_PATH,
        "token_url": base + TOKEN_PATH,
        "login_start_url": base + LOGIN_START_PATH,
        "deep_link_return_url": base + DEEP_LINK_RETURN_PATH,
        "ags_line_items_url_template": base + "/api/lti/courses/{course_id}/line_items",
        "lti11_outcomes_url": base + LTI11_OUTCOMES_PATH,
        "oneroster_base_url": base + ONEROSTER_BASE,
        "oneroster_token_url": base + ONEROSTER_TOKEN_PATH,
        "platform_key_id": sb.platform_key.kid,
    }


def _item(sb: Sandbox, request: Request) -> Any:
    course = sb.state.course(request.path_params["course_id"])
    item = course.line_items.get(request.path_params["item_id"])
    if item is None:
        raise SeedError(f"line item {request.path_params['item_id']} does not exist in {course.id}")
    return item


def _patch_line_item(sb: Sandbox, request: Request, body: Any) -> Any:
    item = _item(sb, request)
    patch = LineItemPatch.model_validate(body)
    if patch.label is not None:
        item.label = patch.label
    if patch.scoreMaximum is not None:
        item.score_maximum = patch.scoreMaximum
    if patch.published is not None:
        item.published = patch.published
    if patch.allowed_attempts is not None:
        item.allowed_attempts = patch.allowed_attempts
    if patch.clear_allowed_attempts:
        item.allowed_attempts = None
    if patch.points_kept is not None:
        item.points_kept = patch.points_kept
    return _item_out(sb, request, item)


def _item_out(sb: Sandbox, request: Request, item: Any) -> dict[str, Any]:
    data = line_item_json(sb, sb.base(request), item)
    data.update(
        number=item.id,
        published=item.published,
        allowed_attempts=item.allowed_attempts,
        client_id=item.client_id,
        points_kept=item.points_kept,
    )
    return data


def _grade(sb: Sandbox, request: Request, body: Any) -> Any:
    item = _item(sb, request)
    grade = GradeBody.model_validate(body)
    instructor_grade(item, grade.user, grade.score, grade.comment)
    return {"ok": True, "timestamp": item.scores[grade.user].timestamp.isoformat()}


def _patch_course(sb: Sandbox, request: Request, body: Any) -> Any:
    course = sb.state.course(request.path_params["course_id"])
    patch = CoursePatch.model_validate(body)
    if patch.title is not None:
        course.title = patch.title
    if patch.concluded is not None:
        course.concluded = patch.concluded
    return {"id": course.id, "title": course.title, "concluded": course.concluded}


def _enroll(sb: Sandbox, request: Request, body: Any) -> Any:
    enrollment = EnrollmentBody.model_validate(body)
    sb.state.enroll(request.path_params["course_id"], enrollment.user, enrollment.role)


def _unenroll(sb: Sandbox, request: Request, body: Any) -> Any:
    status = request.query_params.get("status", "Deleted")
    sb.state.unenroll(request.path_params["course_id"], request.path_params["user"], status)


def _registration_token(sb: Sandbox, request: Request, body: Any) -> Any:
    """A one-time token for LTI Dynamic Registration, and the URL to open the tool's
    registration page with (what an LMS admin's "register a tool by URL" does)."""
    token = secrets.token_urlsafe(24)
    sb.registration_tokens.add(token)
    return {
        "registration_token": token,
        "openid_configuration": sb.base(request) + "/.well-known/openid-configuration",
    }


def _add_tool(sb: Sandbox, request: Request, body: Any) -> Any:
    tool = sb.state.add_tool(ToolSeed.model_validate(body))
    sb.tool_keys.forget(tool.client_id)  # a re-registration may bring new keys
    return {"client_id": tool.client_id, **_urls(sb, request)}


def _faults(sb: Sandbox, request: Request, body: Any) -> Any:
    if request.method == "DELETE":
        sb.faults.set({}, replace=True, rng_seed=None)
    elif request.method in ("PUT", "PATCH"):
        if not isinstance(body, dict):
            raise SeedError("body: must be an object of group -> fault settings")
        seed = body.pop("rng_seed", None)
        if seed is not None and not isinstance(seed, int):
            raise SeedError("rng_seed: must be an integer")
        unknown = [g for g in body if g not in FAULT_GROUPS]
        if unknown:
            raise SeedError(f"unknown fault group(s) {unknown}; allowed: {list(FAULT_GROUPS)}")
        specs = _FAULTS.validate_python(body)
        sb.faults.set(specs, replace=request.method == "PUT", rng_seed=seed)
    return Response(
        json.dumps({"faults": sb.faults.describe(), "counters": sb.faults.counters()}),
        media_type="application/json",
    )


def _expire(sb: Sandbox, request: Request, body: Any) -> Any:
    what = ExpireBody.model_validate(body)
    count = 0
    if what.service in ("lti", "all"):
        count += sb.lti_tokens.expire(what.client_id)
    if what.service in ("oneroster", "all"):
        count += sb.sis_tokens.expire(what.client_id)
    return {"expired": count}


def _set_config(sb: Sandbox, request: Request, body: Any) -> Any:
    patch = ConfigPatch.model_validate(body)
    for name in patch.model_fields_set:
        setattr(sb.state, name, getattr(patch, name))
    return _urls(sb, request)


def _counters(sb: Sandbox, request: Request, body: Any) -> Any:
    if request.method == "POST":
        sb.faults.reset_counters()
    return sb.faults.counters()


def _add_line_item(sb: Sandbox, request: Request, body: Any) -> Any:
    item = sb.state.add_line_item(
        request.path_params["course_id"], LineItemSeed.model_validate(body)
    )
    return _item_out(sb, request, item)


def _set_profile(sb: Sandbox, request: Request, body: Any) -> Any:
    sb.state.sis_profile = SisProfile.model_validate(body)
    return sb.state.sis_profile.model_dump()


async def _health(request: Request) -> Response:
    return json_response({"ok": True})


async def _home(request: Request) -> Response:
    return RedirectResponse("/_sandbox/", status_code=302)


def _r(path: str, fn: Callable[[Sandbox, Request, Any], Any], *methods: str) -> Route:
    return Route("/_sandbox" + path, endpoint(fn), methods=list(methods))


routes = [
    Route("/", _home, methods=["GET"]),
    Route("/_sandbox/", inspect_html, methods=["GET"]),
    Route("/_sandbox/health", _health, methods=["GET"]),
    Route("/_sandbox/inspect", inspect_json, methods=["GET"]),
    _r("/config", lambda sb, req, body: _urls(sb, req), "GET"),
    _r("/config", _set_config, "PATCH"),
    _r("/seed", lambda sb, req, body: sb.state.apply_seed(SeedData.model_validate(body)), "POST"),
    _r(
        "/users",
        lambda sb, req, body: sb.state.add_user(UserSeed.model_validate(body)).__dict__,
        "POST",
    ),
    _r(
        "/courses",
        lambda sb, req, body: {"id": sb.state.add_course(CourseSeed.model_validate(body)).id},
        "POST",
    ),
    _r("/courses/{course_id}", _patch_course, "PATCH"),
    _r("/courses/{course_id}/enrollments", _enroll, "POST"),
    _r("/registration_tokens", _registration_token, "POST"),
    _r("/courses/{course_id}/enrollments/{user}", _unenroll, "DELETE"),
    _r(
        "/courses/{course_id}/resource_links",
        lambda sb, req, body: (
            sb.state.add_resource_link(
                req.path_params["course_id"], ResourceLinkSeed.model_validate(body)
            ).__dict__
        ),
        "POST",
    ),
    _r("/courses/{course_id}/line_items", _add_line_item, "POST"),
    _r("/courses/{course_id}/line_items/{item_id:int}", _patch_line_item, "PATCH"),
    _r("/courses/{course_id}/line_items/{item_id:int}/grades", _grade, "POST"),
    _r("/tools", _add_tool, "POST"),
    _r("/launches", lambda sb, req, body: lti13.start_launch(sb, req, body), "POST"),
    _r(
        "/lti11/consumers",
        lambda sb, req, body: sb.state.add_lti11_consumer(Lti11ConsumerSeed.model_validate(body)),
        "POST",
    ),
    _r("/lti11/launches", lambda sb, req, body: lti11.sign_launch(sb, req, body), "POST"),
    _r("/tokens/expire", _expire, "POST"),
    _r(
        "/tokens/issued",
        lambda sb, req, body: {
            "lti": sb.lti_tokens.issued_list(),
            "oneroster": sb.sis_tokens.issued_list(),
        },
        "GET",
    ),
    _r(
        "/sis/clients",
        lambda sb, req, body: sb.state.sis_clients.__setitem__(
            (c := SisClientSeed.model_validate(body)).client_id, c
        ),
        "POST",
    ),
    _r(
        "/sis/terms",
        lambda sb, req, body: sb.state.add_sis_term(SisTermSeed.model_validate(body)),
        "POST",
    ),
    _r(
        "/sis/students",
        lambda sb, req, body: sb.state.add_sis_student(SisStudentSeed.model_validate(body)),
        "POST",
    ),
    _r(
        "/sis/classes",
        lambda sb, req, body: {
            "sourcedId": sb.state.add_sis_class(SisClassSeed.model_validate(body)).sourced_id
        },
        "POST",
    ),
    _r(
        "/sis/categories",
        lambda sb, req, body: sb.state.add_sis_category(SisCategorySeed.model_validate(body)),
        "POST",
    ),
    _r("/sis/profile", _set_profile, "PUT"),
    _r("/faults", _faults, "GET", "PUT", "PATCH", "DELETE"),
    _r("/counters", _counters, "GET"),
    _r("/counters/reset", _counters, "POST"),
]
