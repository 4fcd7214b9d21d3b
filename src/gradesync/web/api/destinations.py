"""Destinations, whatever their protocol: list, show, limits, pause, resume, delete (admin
keys).

Creation is protocol-specific: `/api/v1/platforms` (LTI) and `/api/v1/sis` (OneRoster).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from gradesync.answers.destinations import DestinationOut, DestinationShownOut, dest_out
from gradesync.runtime import Runtime
from gradesync.services import destination_admin as svc
from gradesync.services import queries
from gradesync.web.api.auth import Principal, require_scope
from gradesync.web.api.deps import runtime
from gradesync.web.api.errors import UrlIdsRoute
from gradesync.web.api.schemas import LimitsIn, PauseIn

router = APIRouter(tags=["destinations"], route_class=UrlIdsRoute)
admin = require_scope("admin")


@router.get("/destinations", response_model=list[DestinationOut])
def list_destinations(
    p: Principal = Depends(admin), rt: Runtime = Depends(runtime)
) -> list[DestinationOut]:
    return [dest_out(rt, d) for d in svc.list_destinations(rt.uow, p.tenant_id)]


@router.get("/destinations/{destination_id}", response_model=DestinationShownOut)
def show_destination(
    destination_id: str, p: Principal = Depends(admin), rt: Runtime = Depends(runtime)
) -> DestinationOut:
    """A destination (never its secrets) with its results counted by delivery state."""
    d, counts = queries.destination_summary(rt.uow, p.tenant_id, destination_id)
    return dest_out(rt, d, counts)


async def _others_than(
    request: Request, model: type[BaseModel], field: str
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """For a check of `field` that needs stored state the body's schema does not see: the
    body and its schema's problems, when it gives `field` (well formed) and has other
    problems, so the check's own is listed with them in one 422. None otherwise: a body
    that is right, or only wrong there, is left to the service, which names the same."""
    try:
        raw: Any = await request.json()
    except ValueError:
        return None  # no body, or not JSON: answered as any other body that is not
    if not isinstance(raw, dict) or raw.get(field) is None:
        return None
    try:
        model.model_validate(raw)
        return None  # the body is right: the service checks the rest
    except ValidationError as exc:
        errors: list[dict[str, Any]] = [
            {**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)
        ]
    if any(e["loc"][1:2] == (field,) for e in errors):
        return None  # already named
    return raw, errors


async def _limits_bound(
    destination_id: str, request: Request, p: Principal = Depends(admin)
) -> None:
    """A concurrency over the destination's own bound (a SIS takes 64, the body's schema
    256) listed with the body's other problems, in the same 422: the bound needs the stored
    destination, which the body's check does not see. Only when the body has others: alone,
    the service refuses it (the same problem)."""
    found = await _others_than(request, LimitsIn, "concurrency")
    if found is None:
        return
    raw, errors = found
    rt: Runtime = request.app.state.runtime
    with rt.reads() as uow:
        dest = uow.destinations.get(p.tenant_id, destination_id)
    if dest is None:
        return  # the body's problems first, as for any destination
    c = raw["concurrency"]  # a whole number (the body's check named it otherwise)
    problems = svc.limit_problems(dest.kind, {"concurrency": int(c)})
    if not problems:
        return
    errors += [{"type": q.rule, "loc": ("body", q.field), "msg": q.message} for q in problems]
    raise RequestValidationError(errors)


@router.patch(
    "/destinations/{destination_id}/limits",
    response_model=DestinationOut,
    dependencies=[Depends(_limits_bound)],
)
def set_destination_limits(
    destination_id: str,
    body: LimitsIn,
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> DestinationOut:
    """How hard gradesync may press the destination, for all workers together: `concurrency`
    (requests at once) and `rate_per_second`. A limit left out keeps its value; `null` clears
    it (concurrency back to its default, no rate limit). Deliveries take it within a second."""
    return dest_out(
        rt, svc.set_limits(rt.uow, rt.clock, p.tenant_id, destination_id, body.changes())
    )


async def _pause_until_past(request: Request, p: Principal = Depends(admin)) -> None:
    """A past `until` listed with the body's other problems, in the same 422: it needs the
    clock, which the body's check does not see. Only when the body has others: alone, the
    service refuses it (the same problem)."""
    found = await _others_than(request, PauseIn, "until")
    if found is None:
        return
    raw, errors = found
    rt: Runtime = request.app.state.runtime
    until = PauseIn.model_validate({"until": raw["until"]}).until
    past = svc.until_problem(until, rt.clock.now())
    if past is None:
        return
    errors.append({"type": past.rule, "loc": ("body", past.field), "msg": past.message})
    raise RequestValidationError(errors)


@router.post(
    "/destinations/{destination_id}/pause",
    response_model=DestinationOut,
    dependencies=[Depends(_pause_until_past)],
)
def pause_destination(
    destination_id: str,
    body: PauseIn | None = None,
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> DestinationOut:
    """Hold deliveries (until `until`, or until resumed). Results keep being computed and
    wait as pending."""
    b = body or PauseIn()
    d = svc.pause(
        rt.uow,
        rt.clock,
        p.tenant_id,
        destination_id,
        actor=p.actor,
        reason=b.reason,
        until=b.until,
    )
    return dest_out(rt, d)


@router.post("/destinations/{destination_id}/resume", response_model=DestinationOut)
def resume_destination(
    destination_id: str, p: Principal = Depends(admin), rt: Runtime = Depends(runtime)
) -> DestinationOut:
    return dest_out(rt, svc.resume(rt.uow, rt.clock, rt.waker, p.tenant_id, destination_id))


@router.delete("/destinations/{destination_id}", status_code=204)
def delete_destination(
    destination_id: str, p: Principal = Depends(admin), rt: Runtime = Depends(runtime)
) -> Response:
    svc.delete(rt.uow, rt.clock, p.tenant_id, destination_id)
    return Response(status_code=204)
