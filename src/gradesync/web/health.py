"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request, response: Response) -> dict[str, str]:
    db = request.app.state.runtime.db
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # readiness reports, it does not raise
        response.status_code = 503
        return {"status": "database unavailable", "detail": type(exc).__name__}
    if not db.is_up_to_date():
        response.status_code = 503
        return {"status": "schema behind: run `gradesync db upgrade`"}
    return {"status": "ready"}
