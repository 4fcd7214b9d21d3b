"""`/metrics` for Prometheus.

Open by default, like `/healthz`; the `metrics_token` setting (GRADESYNC_METRICS_TOKEN, in the
environment or the config file) requires `Authorization: Bearer <token>` (labels name tenants
and destinations).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
async def scrape(request: Request) -> Response:
    token = request.app.state.runtime.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
    body = await run_in_threadpool(request.app.state.runtime.metrics_text)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
