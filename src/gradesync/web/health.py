"""Liveness and readiness (and the favicon every browser asks for)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request, response: Response) -> dict[str, str]:
    ready, body = request.app.state.runtime.readiness()
    if not ready:
        response.status_code = 503
    return body  # type: ignore[no-any-return]


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    """Browsers ask for it with every console page: no icon, and no 404 in their console."""
    return Response(status_code=204, headers={"Cache-Control": "max-age=86400"})
