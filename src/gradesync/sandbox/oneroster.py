"""OneRoster 1.2 gradebook service (REST binding) with an OAuth 2 client-credentials token.

Payloads are checked against the official OpenAPI schemas, then against what the SIS holds
(classes, students, categories, line items) and its profile (title length, due date in term).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from urllib.parse import unquote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .common import AccessToken, HTTPProblem, iso, json_response, now
from .config import OR_CREATEPUT, OR_DELETE, OR_READONLY
from .context import ONEROSTER_BASE, ONEROSTER_TOKEN_PATH, Sandbox
from .oneroster_filter import FilterError, parse
from .oneroster_schema import problems
from .state import SisObject

MAX_LIMIT = 1000

# collection name -> (wrapper key for one, schema for one, state attribute)
KINDS = {
    "categories": ("category", "SingleCategoryDType", "sis_categories", "CategoryDType"),
    "lineItems": ("lineItem", "SingleLineItemDType", "sis_line_items", "LineItemDType"),
    "results": ("result", "SingleResultDType", "sis_results", "ResultDType"),
}


def imsx(status: int, minor: str, description: str, **headers: str) -> Response:
    return json_response(
        {
            "imsx_codeMajor": "failure",
            "imsx_severity": "error",
            "imsx_description": description,
            "imsx_CodeMinor": {
                "imsx_codeMinorField": [
                    {
                        "imsx_codeMinorFieldName": "TargetEndSystem",
                        "imsx_codeMinorFieldValue": minor,
                    }
                ]
            },
        },
        status,
        **headers,
    )


def _token_fail(status: int, message: str, **headers: str) -> Response:
    return imsx(status, "unauthorisedrequest" if status == 401 else "forbidden", message, **headers)


def _sb(request: Request) -> Sandbox:
    return request.app.state.sandbox  # type: ignore[no-any-return]


def _auth(request: Request, scope: str) -> AccessToken:
    token = _sb(request).sis_tokens.check(request, (scope,), _token_fail)
    if isinstance(token, Response):
        raise HTTPProblem(token)
    return token


# ---- token ----


async def token_endpoint(request: Request) -> Response:
    sb = _sb(request)
    form = await request.form()
    client_id = str(form.get("client_id") or "")
    secret = str(form.get("client_secret") or "")
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return json_response(
                {"error": "invalid_client", "error_description": "Authorization: bad Basic value"},
                401,
            )
        user, _, password = decoded.partition(":")
        client_id, secret = unquote(user), unquote(password)
    if form.get("grant_type") != "client_credentials":
        return json_response(
            {
                "error": "unsupported_grant_type",
                "error_description": "grant_type: must be 'client_credentials'",
            },
            400,
        )
    client = sb.state.sis_clients.get(client_id)
    if client is None or not secret or client.client_secret != secret:
        return json_response(
            {"error": "invalid_client", "error_description": "client_id/client_secret: not valid"},
            401,
            **{"WWW-Authenticate": 'Basic realm="oneroster"'},
        )
    requested = str(form.get("scope") or "").split() or list(client.scopes)
    granted = [s for s in requested if s in client.scopes]
    if not granted:
        return json_response(
            {
                "error": "invalid_scope",
                "error_description": f"scope: none of {requested} is allowed; "
                f"allowed: {client.scopes}",
            },
            400,
        )
    ttl = sb.config.token_ttl_seconds
    token = sb.sis_tokens.issue(client_id, frozenset(granted), ttl)
    return json_response(
        {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": ttl,
            "scope": " ".join(granted),
        }
    )


# ---- reads ----


def _paged(
    request: Request, key: str, objects: list[dict[str, Any]], schema_fields: set[str]
) -> Response:
    query = request.query_params
    try:
        limit = int(query.get("limit", 100))
        offset = int(query.get("offset", 0))
    except ValueError:
        return imsx(400, "invalid_selection_field", "limit/offset: must be integers")
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        return imsx(400, "invalid_selection_field", f"limit: 1..{MAX_LIMIT}; offset: 0 or more")
    if "filter" in query:
        try:
            keep = parse(query["filter"], schema_fields)
        except FilterError as exc:
            return imsx(400, "invalid_filter_field", str(exc))
        objects = [o for o in objects if keep(o)]
    sort = query.get("sort")
    if sort:
        if sort.split(".")[0] not in schema_fields:
            return imsx(400, "invalid_selection_field", f"sort: unknown field {sort!r}")
        objects = sorted(
            objects, key=lambda o: str(o.get(sort, "")), reverse=query.get("orderBy") == "desc"
        )
    fields = [f for f in query.get("fields", "").split(",") if f]
    unknown = [f for f in fields if f not in schema_fields]
    if unknown:
        return imsx(400, "invalid_selection_field", f"fields: unknown field(s) {unknown}")
    total = len(objects)
    page = objects[offset : offset + limit]
    if fields:
        page = [{f: o[f] for f in fields if f in o} for o in page]
    base = str(request.url).split("?", 1)[0]
    params = dict(query)

    def link(off: int, rel: str) -> str:
        params.update(limit=str(limit), offset=str(off))
        return f'<{base}?{urlencode(params)}>; rel="{rel}"'

    links = [link(0, "first")]
    if offset + limit < total:
        links.append(link(offset + limit, "next"))
    if offset > 0:
        links.append(link(max(0, offset - limit), "prev"))
    links.append(link(max(0, (total - 1) // limit * limit), "last"))
    return json_response(
        {key: page}, 200, **{"X-Total-Count": str(total), "Link": ", ".join(links)}
    )


def _fields_of(schema: str) -> set[str]:
    from .oneroster_schema import spec

    return set(spec()["components"]["schemas"][schema]["properties"])


def _store(sb: Sandbox, kind: str) -> dict[str, SisObject]:
    return getattr(sb.state, KINDS[kind][2])  # type: ignore[no-any-return]


def collection(kind: str, scope_filter: Callable[..., bool] | None = None) -> Any:
    async def handler(request: Request) -> Response:
        sb = _sb(request)
        try:
            _auth(request, OR_READONLY)
            params = request.path_params
            class_id = params.get("class_id")
            if class_id is not None and class_id not in sb.state.sis_classes:
                return imsx(404, "unknownobject", f"class {class_id!r} does not exist")
            if "line_item_id" in params and params["line_item_id"] not in sb.state.sis_line_items:
                return imsx(
                    404, "unknownobject", f"lineItem {params['line_item_id']!r} does not exist"
                )
            if "student_id" in params and params["student_id"] not in sb.state.sis_students:
                return imsx(
                    404, "unknownobject", f"student {params['student_id']!r} does not exist"
                )
        except HTTPProblem as problem:
            return problem.response
        objects = [o.data for o in _store(sb, kind).values()]
        if scope_filter is not None:
            objects = [o for o in objects if scope_filter(sb, o, **params)]
        return _paged(request, kind, objects, _fields_of(KINDS[kind][3]))

    return handler


def _result_class(sb: Sandbox, result: dict[str, Any]) -> str | None:
    item = sb.state.sis_line_items.get(result["lineItem"]["sourcedId"])
    return item.data["class"]["sourcedId"] if item else None


def _class_categories(sb: Sandbox, category: dict[str, Any], class_id: str) -> bool:
    classes = sb.state.sis_category_classes.get(category["sourcedId"], set())
    if class_id in classes:
        return True
    return any(
        li.data["class"]["sourcedId"] == class_id
        and li.data["category"]["sourcedId"] == category["sourcedId"]
        for li in sb.state.sis_line_items.values()
    )


def get_one(kind: str) -> Any:
    wrapper = KINDS[kind][0]

    async def handler(request: Request) -> Response:
        sb = _sb(request)
        try:
            _auth(request, OR_READONLY)
        except HTTPProblem as problem:
            return problem.response
        sourced_id = request.path_params["sourced_id"]
        obj = _store(sb, kind).get(sourced_id)
        if obj is None:
            return imsx(404, "unknownobject", f"{wrapper} {sourced_id!r} does not exist")
        return json_response({wrapper: obj.data})

    return handler


def delete_one(kind: str) -> Any:
    wrapper = KINDS[kind][0]

    async def handler(request: Request) -> Response:
        sb = _sb(request)
        try:
            _auth(request, OR_DELETE)
        except HTTPProblem as problem:
            return problem.response
        sourced_id = request.path_params["sourced_id"]
        obj = _store(sb, kind).get(sourced_id)
        if obj is None:
            return imsx(404, "unknownobject", f"{wrapper} {sourced_id!r} does not exist")
        # OneRoster deletes are soft: the object stays, marked for deletion.
        obj.data["status"] = "tobedeleted"
        obj.data["dateLastModified"] = iso(now())
        return Response(status_code=204)

    return handler


# ---- writes ----


def _invalid(message: str) -> HTTPProblem:
    return HTTPProblem(imsx(422, "invaliddata", message))


def _check_line_item(sb: Sandbox, item: dict[str, Any]) -> None:
    state = sb.state
    class_id = item["class"]["sourcedId"]
    klass = state.sis_classes.get(class_id)
    if klass is None:
        raise _invalid(f"lineItem.class.sourcedId: class {class_id!r} does not exist")
    school = item["school"]["sourcedId"]
    if school not in state.sis_schools:
        raise _invalid(f"lineItem.school.sourcedId: school {school!r} does not exist")
    if school != klass.school:
        raise _invalid(
            f"lineItem.school.sourcedId: class {class_id!r} belongs to school {klass.school!r}"
        )
    category = item["category"]["sourcedId"]
    if category not in state.sis_categories:
        known = sorted(state.sis_categories)
        raise _invalid(
            f"lineItem.category.sourcedId: category {category!r} does not exist; known: {known}"
        )
    limit = state.sis_profile.max_title_length
    if limit is not None and len(item["title"]) > limit:
        raise _invalid(f"lineItem.title: longer than {limit} characters")
    assign = datetime.fromisoformat(item["assignDate"])
    due = datetime.fromisoformat(item["dueDate"])
    if due < assign:
        raise _invalid("lineItem.dueDate: must not be before assignDate")
    if state.sis_profile.due_date_in_term and klass.term is not None:
        term = state.sis_terms[klass.term]
        if not date.fromisoformat(term.start) <= due.date() <= date.fromisoformat(term.end):
            raise _invalid(f"lineItem.dueDate: must be inside the term {term.start}..{term.end}")


def _check_result(sb: Sandbox, result: dict[str, Any]) -> None:
    state = sb.state
    item_id = result["lineItem"]["sourcedId"]
    item = state.sis_line_items.get(item_id)
    if item is None:
        raise _invalid(f"result.lineItem.sourcedId: lineItem {item_id!r} does not exist")
    student = result["student"]["sourcedId"]
    if student not in state.sis_students:
        raise _invalid(f"result.student.sourcedId: student {student!r} does not exist")
    class_id = item.data["class"]["sourcedId"]
    if student not in state.sis_classes[class_id].students:
        raise _invalid(
            f"result.student.sourcedId: {student!r} is not enrolled in class {class_id!r}"
        )
    if "class" in result and result["class"]["sourcedId"] != class_id:
        raise _invalid(f"result.class.sourcedId: the lineItem belongs to class {class_id!r}")
    score = result.get("score")
    low, high = item.data.get("resultValueMin"), item.data.get("resultValueMax")
    if score is not None and (
        (low is not None and score < low) or (high is not None and score > high)
    ):
        raise _invalid(f"result.score: must be within {low}..{high}")


def put_one(kind: str) -> Any:
    wrapper, schema, _, _ = KINDS[kind]

    async def handler(request: Request) -> Response:
        sb = _sb(request)
        sourced_id = request.path_params["sourced_id"]
        try:
            token = _auth(request, OR_CREATEPUT)
            try:
                body = json.loads(await request.body())
            except ValueError:
                return imsx(400, "invaliddata", "body: not valid JSON")
            found = problems(schema, body)
            if found:
                return imsx(400, "invaliddata", "; ".join(found[:20]))
            obj = body[wrapper]
            if obj["sourcedId"] != sourced_id:
                return imsx(
                    400, "invaliddata", f"{wrapper}.sourcedId: must equal {sourced_id!r} (URL)"
                )
            if kind == "lineItems":
                _check_line_item(sb, obj)
            elif kind == "results":
                _check_result(sb, obj)
        except HTTPProblem as problem:
            return problem.response
        store = _store(sb, kind)
        created = sourced_id not in store
        store[sourced_id] = SisObject(data=obj, created_by=token.client_id)
        return Response(status_code=201 if created else 204)

    return handler


routes = [
    Route(ONEROSTER_TOKEN_PATH, token_endpoint, methods=["POST"]),
    Route(f"{ONEROSTER_BASE}/categories", collection("categories"), methods=["GET"]),
    Route(f"{ONEROSTER_BASE}/lineItems", collection("lineItems"), methods=["GET"]),
    Route(f"{ONEROSTER_BASE}/results", collection("results"), methods=["GET"]),
    Route(
        f"{ONEROSTER_BASE}/classes/{{class_id}}/lineItems",
        collection("lineItems", lambda sb, o, class_id: o["class"]["sourcedId"] == class_id),
        methods=["GET"],
    ),
    Route(
        f"{ONEROSTER_BASE}/classes/{{class_id}}/categories",
        collection("categories", lambda sb, o, class_id: _class_categories(sb, o, class_id)),
        methods=["GET"],
    ),
    Route(
        f"{ONEROSTER_BASE}/classes/{{class_id}}/results",
        collection("results", lambda sb, o, class_id: _result_class(sb, o) == class_id),
        methods=["GET"],
    ),
    Route(
        f"{ONEROSTER_BASE}/classes/{{class_id}}/lineItems/{{line_item_id}}/results",
        collection(
            "results",
            lambda sb, o, class_id, line_item_id: (
                o["lineItem"]["sourcedId"] == line_item_id and _result_class(sb, o) == class_id
            ),
        ),
        methods=["GET"],
    ),
    Route(
        f"{ONEROSTER_BASE}/classes/{{class_id}}/students/{{student_id}}/results",
        collection(
            "results",
            lambda sb, o, class_id, student_id: (
                o["student"]["sourcedId"] == student_id and _result_class(sb, o) == class_id
            ),
        ),
        methods=["GET"],
    ),
    *[
        Route(f"{ONEROSTER_BASE}/{kind}/{{sourced_id}}", factory(kind), methods=[method])
        for kind in KINDS
        for factory, method in ((get_one, "GET"), (put_one, "PUT"), (delete_one, "DELETE"))
    ],
]
