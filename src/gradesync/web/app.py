"""The FastAPI application: JSON API, LTI endpoints, console, health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from gradesync import __version__
from gradesync.lti import lti11_launch
from gradesync.lti import routes as lti13_routes
from gradesync.runtime import Runtime
from gradesync.web import api_reference, health
from gradesync.web import metrics as metrics_route
from gradesync.web.api import router as api
from gradesync.web.console import pages as console_pages
from gradesync.web.console.session import sign_in_from_launch
from gradesync.web.observe import RequestObserver
from gradesync.web.unavailable import DatabaseUnavailableAnswer

API_DESCRIPTION = """Grades from where learners earn them into the gradebooks that count (LTI 1.3
AGS, LTI 1.1 Outcomes, OneRoster 1.2).

Authenticate with a tenant API key: `Authorization: Bearer gs_...` (create one with
`gradesync keys create --tenant TENANT --name NAME --scope admin`). Post facts (`/api/v1/ingest`,
`/api/v1/attempts`); gradesync computes each learner's grade, sends it and records what
happened (`/api/v1/runs`, `/api/v1/courses/{course_id}/learners/{person_id}/grades`). Bad input
is answered 422 naming every field and rule at fault, and nothing is stored. While gradesync's
database cannot be reached, every route answers 503 with `Retry-After`: send the same request
again (an attempt with the same `source_event_id` is stored once).
"""

DOCS_STATIC = "/docs/static"  # where fastapi-offline serves the API reference's assets


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """`gradesync serve` sets `app.state.run_worker`: the in-process worker starts here and
    sweeps pending work at once (distributed mode: only the procrastinate waker)."""
    runtime: Runtime = app.state.runtime
    started = False
    scheduler = None
    if getattr(app.state, "run_worker", False):
        if runtime.distributed:
            runtime.waker = runtime.remote_waker()
        else:
            await runtime.start_worker()
            started = True
        # scheduled syncs (docs/schedules.md): safe in every serve process at once
        from gradesync.adapters.queue.scheduler import start_scheduler

        scheduler = start_scheduler(runtime.uow, runtime.clock, runtime.waker)
    try:
        yield
    finally:
        if scheduler is not None:
            await scheduler.stop()
        if started:
            await runtime.stop_worker()
        elif getattr(app.state, "run_worker", False):
            # no worker here (distributed mode): the pool this process's own requests to
            # destinations went through (checks, Deep Linking's look-ups) is closed all the same
            await runtime.close_destination_context()


def create_app(runtime: Runtime) -> FastAPI:
    # Swagger UI (/docs) and ReDoc (/redoc) from assets shipped in a package, not a CDN,
    # so the API reference works offline; ReDoc's own page leaves out its CDN logo
    app = FastAPIOffline(
        title="gradesync",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=_lifespan,
        static_url=DOCS_STATIC,
        redoc_url=None,
    )
    app.include_router(
        api_reference.build_router(app.title, app.openapi_url or "", f"{DOCS_STATIC}/favicon.png")
    )
    app.state.runtime = runtime
    app.include_router(health.router)
    app.include_router(metrics_route.router)
    api.install(app)
    app.include_router(lti11_launch.router)
    app.include_router(lti13_routes.build_router(sign_in_from_launch))
    console_pages.install(
        app, runtime.settings.resolved_secret_key(), https_only=runtime.settings.cookies_secure
    )
    # added before the observer, so inside it: a 503 is counted and logged like any answer
    app.add_middleware(DatabaseUnavailableAnswer, answers=runtime.database_answers)
    app.add_middleware(RequestObserver, access_log=runtime.settings.access_log)
    return app
