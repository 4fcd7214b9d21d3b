"""The rules every operation's query string follows, checked once for all of `/api/v1`.

- A parameter the operation does not list in the OpenAPI document is refused as
  `unknown_field`, located `["query", name]`: ignored, a typo (`?course=` for `?course_id=`)
  answered as if unfiltered.
- A filter naming a course, destination or activity the tenant does not have is refused as
  `unknown_course`, `unknown_destination` or `unknown_activity`, located in the query: answered,
  it read as "nothing to report" (an empty list, or a 404 as if the URL named it).

A router dependency (`router.py`), after the key is known (no key is still a 401) and the
operation's own scope check has admitted it (a key that may not call the operation gets its
403 whatever the query holds), before the operation's own parameters are read. Its 422 lists
every problem of the URL at once: these rules' and the operation's own checks of its path
and query parameters (`?course=nope&limit=0`: both).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from gradesync.services import queries
from gradesync.web.api.auth import Principal, current_principal, scope_checks

F = TypeVar("F", bound=Callable[..., Any])

_HISTORY = "gradesync_run_history"


def run_history(endpoint: F) -> F:
    """Mark an operation that reads run history (`queries.runs_with_stages`): its
    `destination_id` filter may name a destination deleted since, whose runs are kept. On the
    operation itself, so that moving or renaming its route keeps it."""
    setattr(endpoint, _HISTORY, True)
    return endpoint


def _listed(request: Request) -> dict[tuple[str, str], frozenset[str]]:
    """Each operation's query parameters, as the document lists them (read once per app)."""
    state = request.app.state
    listed: dict[tuple[str, str], frozenset[str]] | None = getattr(state, "query_params", None)
    if listed is None:
        listed = {}
        for path, item in request.app.openapi().get("paths", {}).items():
            for method, op in item.items():
                if isinstance(op, dict):
                    params: list[dict[str, Any]] = op.get("parameters", [])
                    names = {p["name"] for p in params if p.get("in") == "query"}
                    listed[(method.upper(), path)] = frozenset(names)
        state.query_params = listed
    return listed


def query_rules(prefix: str) -> Callable[..., None]:
    """The dependency for a router mounted at `prefix` (its routes know their paths without
    it)."""

    def dependency(request: Request, principal: Principal = Depends(current_principal)) -> None:
        route = request.scope.get("route")
        if isinstance(route, APIRoute):
            _check(request, principal, route, (request.method, prefix + route.path_format))

    return dependency


def _check(
    request: Request, principal: Principal, route: APIRoute, operation: tuple[str, str]
) -> None:
    known = _listed(request).get(operation)
    if known is None:  # an operation the document does not show
        return
    # the operation's own authorization first: a key that may not call it gets its 403,
    # whatever the query holds (not which parameters the operation takes)
    for admits in scope_checks(route.dependant):
        admits(principal)
    given = request.query_params
    found: list[dict[str, Any]] = [
        {
            "type": "extra_forbidden",
            "loc": ("query", name),
            "msg": f"Unknown query parameter {name!r}: this operation takes "
            + (", ".join(sorted(known)) if known else "none"),
            "input": given[name],
        }
        for name in dict.fromkeys(given.keys())
        if name not in known
    ]
    filters = [
        (name, value)
        for name, value in given.multi_items()
        if name in queries.FILTERS and name in known
    ]
    if filters:
        with request.app.state.runtime.reads() as uow:
            # a run history's filter may name a destination deleted since: its runs are kept
            history = getattr(route.endpoint, _HISTORY, False) is True
            problems = queries.filter_problems(uow, principal.tenant_id, filters, history=history)
        found += [{"type": p.rule, "loc": ("query", p.field), "msg": p.message} for p in problems]
    if found:
        # with the operation's own problems with the URL's values (`limit=0`), all at once
        raise RequestValidationError(_once(found + _own_problems(request, route.dependant)))


def _own_problems(request: Request, dependant: Dependant) -> list[dict[str, Any]]:
    """What the operation's own checks of its path and query parameters find (FastAPI's, as it
    reads them after this), its dependencies' included."""
    _, in_path = request_params_to_args(dependant.path_params, request.path_params)
    _, in_query = request_params_to_args(dependant.query_params, request.query_params)
    found = [dict(e) for e in [*in_path, *in_query]]
    for sub in dependant.dependencies:
        found += _own_problems(request, sub)
    return found


def _once(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each problem once (a parameter several dependencies read, a query model that forbids
    names it does not take)."""
    seen: set[tuple[object, ...]] = set()
    out = []
    for e in errors:
        key = (tuple(e["loc"]), e["type"])
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out
