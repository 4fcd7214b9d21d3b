"""Destinations, whatever their protocol: list, show, limits, pause, resume, delete (admin
keys).

Creation is protocol-specific: `/api/v1/platforms` (LTI) and `/api/v1/sis` (OneRoster).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from gradesync.domain.model import Destination
from gradesync.runtime import Runtime
from gradesync.services import destination_admin as svc
from gradesync.services import queries
from gradesync.web.api.auth import Principal, require_scope
from gradesync.web.api.deps import runtime
from gradesync.web.api.errors import UrlIdsRoute
from gradesync.web.api.schemas import DestinationOut, LimitsIn, PauseIn

router = APIRouter(tags=["destinations"], route_class=UrlIdsRoute)
admin = require_scope("admin")


def dest_out(rt: Runtime, d: Destination, ledger: dict[str, int] | None = None) -> DestinationOut:
    return DestinationOut.model_validate({**svc.public_view(d, rt.clock.now()), "ledger": ledger})


@router.get("/destinations", response_model=list[DestinationOut])
def list_destinations(
    p: Principal = Depends(admin), rt: Runtime = Depends(runtime)
) -> list[DestinationOut]:
    return [dest_out(rt, d) for d in svc.list_destinations(rt.uow, p.tenant_id)]


@router.get("/destinations/{destination_id}", response_model=DestinationOut)
def show_destination(
    destination_id: str, p: Principal = Depends(admin), rt: Runtime = Depends(runtime)
) -> DestinationOut:
    """A destination (never its secrets) with its results counted by delivery state."""
    d, counts = queries.destination_summary(rt.uow, p.tenant_id, destination_id)
    return dest_out(rt, d, counts)


@router.patch("/destinations/{destination_id}/limits", response_model=DestinationOut)
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


@router.post("/destinations/{destination_id}/pause", response_model=DestinationOut)
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
    svc.delete(rt.uow, p.tenant_id, destination_id)
    return Response(status_code=204)
