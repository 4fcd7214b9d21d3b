"""Errors as JSON: every 422 names the field and the rule, whichever layer found it.

Shape: `{"detail": [{"loc": ["body", "attempts", 3, "score_given"],
"field": "attempts[3].score_given", "rule": "not_negative", "msg": "...", "type": "..."}]}`.
`loc` and `type` keep FastAPI's usual shape for generic clients; `field` and `rule` are the
stable part to program against.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from gradesync.answers.problems import UrlProblem, problem_json
from gradesync.domain.errors import Conflict, FieldProblem, InvalidInput, NotFound

# pydantic error types -> our rule names (the same names the ingest service uses)
_RULES = {
    "missing": "required",
    "extra_forbidden": "unknown_field",
    "finite_number": "finite",
    "greater_than_equal": "not_negative",
    "greater_than": "positive",
    "less_than_equal": "maximum",
    "timezone_aware": "timezone_required",
    "datetime_parsing": "datetime",
    "datetime_from_date_parsing": "datetime",
    "datetime_type": "datetime",
    "datetime_object_invalid": "datetime",
    "datetime_format": "datetime",
    "date_format": "date",
    "date_parsing": "date",
    "date_type": "date",
    "date_from_datetime_parsing": "date",
    "date_from_datetime_inexact": "date",
    "float_type": "number",
    "float_parsing": "number",
    "int_type": "integer",
    "int_parsing": "integer",
    "int_from_float": "integer",
    "string_type": "string",
    "string_too_long": "too_long",
    "string_too_short": "required",
    "bool_type": "boolean",
    "bool_parsing": "boolean",
    "enum": "one_of",
    "literal_error": "one_of",
    "list_type": "list",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
    "json_invalid": "json",
    "too_long": "too_long",
    "too_short": "too_short",
    "string_pattern_mismatch": "pattern",
}

_LISTS = {"courses", "activities", "people", "enrollments", "overrides", "attempts"}


def field_name(loc: Sequence[str | int]) -> str:
    """("body", "attempts", 3, "score_given") -> "attempts[3].score_given"."""
    out = ""
    for part in loc:
        if part in ("body", "query", "path", "header"):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def strip_prefix(
    exc: InvalidInput, prefix: str, path: Mapping[str, str] | None = None
) -> InvalidInput:
    """Problems of a one-object endpoint named as in its body: "courses[0].title" ->
    "title"; a field the URL gave (`path`: field -> path parameter) as that parameter:
    "courses[0].id" -> "course_id", located in the path (the body has no such field)."""
    problems: list[FieldProblem] = []
    for p in exc.problems:
        name = p.field[len(prefix) :] if p.field.startswith(prefix) else p.field
        if path and name in path:
            problems.append(UrlProblem(path[name], p.rule, p.message))
        else:
            problems.append(FieldProblem(name, p.rule, p.message))
    return InvalidInput(problems)


def _query_names(route: APIRoute) -> set[str]:
    """The route's query parameters, those of a query model (`GET /runs`) one by one."""
    names: set[str] = set()
    for param in route.dependant.query_params:
        kind = param.field_info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names |= {f.alias or n for n, f in kind.model_fields.items()}
        else:
            names.add(param.alias)
    return names


class UrlIdsRoute(APIRoute):
    """A route whose service problems naming one of its URL's parameters are the URL's, as
    docs/api.md says: a path parameter's (`destination_id` for
    `/connections/{destination_id}/check`, `course_id` for `/courses/{course_id}/sync`) located
    in the path, a query parameter's (`until` of `GET /runs?since=...&until=...`) in the query;
    other problems stay the body's. Every API router uses it (`APIRouter(route_class=
    UrlIdsRoute)`): its use cases name their fields as the URL does, and no route has a body
    field named as one of its URL's parameters (the test of URL problems checks that)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        where = {name: "query" for name in _query_names(self)}
        where.update({name: "path" for name in self.param_convertors})

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except InvalidInput as exc:
                if not any(p.field in where for p in exc.problems):
                    raise
                raise InvalidInput(
                    [
                        UrlProblem(p.field, p.rule, p.message, where[p.field])
                        if p.field in where and not isinstance(p, UrlProblem)
                        else p
                        for p in exc.problems
                    ]
                ) from exc

        return route


def _pydantic_problem(err: dict[str, Any]) -> dict[str, Any]:
    loc = list(err.get("loc", ()))
    etype = str(err.get("type", "invalid"))
    rule = _RULES.get(etype, etype)
    bound = (err.get("ctx") or {}).get("ge", (err.get("ctx") or {}).get("gt"))
    if rule in ("not_negative", "positive") and bound not in (None, 0):
        rule = "minimum"  # `limit: 0` where 1 is the least is not a negative number
    # a list over its length limit is a batch that is too large
    if etype == "too_long" and len(loc) == 2 and loc[1] in _LISTS:
        rule = "batch_too_large"
    msg = str(err.get("msg", "invalid"))
    if etype == "json_invalid":
        # FastAPI puts the character offset where a field's name would be ("[1]"), from 0
        at = f" at character {loc[1] + 1}" if len(loc) > 1 and isinstance(loc[1], int) else ""
        why = (err.get("ctx") or {}).get("error") or msg
        loc, msg = ["body"], f"The body is not valid JSON{at}: {why}."
    elif rule == "timezone_required":
        msg = "Give a time zone with the date-time, e.g. 2025-01-31T23:59:00Z or +01:00."
    elif rule == "finite":
        msg = "Must be a finite number (not NaN or infinity)."
    elif rule == "batch_too_large":
        limit = (err.get("ctx") or {}).get("max_length")
        msg = f"A request holds at most {limit} items here; split it into smaller batches."
    return {"loc": loc, "field": field_name(loc), "rule": rule, "msg": msg, "type": etype}


async def validation_refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [_pydantic_problem(e) for e in exc.errors()]
    # a body that is not JSON at all is a bad request (docs/security.md, the OpenAPI
    # document's 400), told in the 422's shape: the rule is `json`
    status = 400 if any(p["rule"] == "json" for p in problems) else 422
    return JSONResponse(status_code=status, content={"detail": problems})


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidInput)
    return JSONResponse(
        status_code=422, content={"detail": [problem_json(p) for p in exc.problems]}
    )


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NotFound)
    return JSONResponse(status_code=404, content={"detail": f"{exc.what} not found"})


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": str(exc)})


async def http_refused(request: Request, exc: Exception) -> Response:
    """FastAPI's HTTP errors as it answers them, but a JSON body that is not UTF-8 (which
    FastAPI answers with a bare string) in the shape of any other body that is not JSON."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        why = f"The body is not valid JSON: it is not UTF-8 ({exc.__cause__.reason})."
        problem = {"loc": ["body"], "field": "body", "rule": "json", "msg": why}
        return JSONResponse(status_code=400, content={"detail": [{**problem, "type": "json"}]})
    return await http_exception_handler(request, exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, http_refused)
    app.add_exception_handler(RequestValidationError, validation_refused)
    app.add_exception_handler(InvalidInput, _invalid)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Conflict, _conflict)
