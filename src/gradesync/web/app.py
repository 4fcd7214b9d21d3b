"""The FastAPI application: JSON API, LTI endpoints, console, health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gradesync import __version__
from gradesync.lti import lti11_launch
from gradesync.lti import routes as lti13_routes
from gradesync.runtime import Runtime
from gradesync.web import health
from gradesync.web import metrics as metrics_route
from gradesync.web.api import router as api
from gradesync.web.console import pages as console_pages
from gradesync.web.observe import RequestObserver


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


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="gradesync", version=__version__, docs_url="/docs", lifespan=_lifespan)
    app.state.runtime = runtime
    app.include_router(health.router)
    app.include_router(metrics_route.router)
    api.install(app)
    app.include_router(lti11_launch.router)
    app.include_router(lti13_routes.router)
    console_pages.install(app, runtime.settings.resolved_secret_key())
    app.add_middleware(RequestObserver, access_log=runtime.settings.access_log)
    return app
