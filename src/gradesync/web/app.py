"""The FastAPI application: JSON API, LTI endpoints, console, health and metrics."""

from __future__ import annotations

from fastapi import FastAPI

from gradesync import __version__
from gradesync.runtime import Runtime
from gradesync.web import health
from gradesync.web.console import pages as console_pages
from gradesync.web.console import session as console_session


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="gradesync", version=__version__, docs_url="/docs")
    app.state.runtime = runtime
    app.include_router(health.router)
    console_session.install(app, runtime.settings.resolved_secret_key())
    app.mount("/console/static", console_pages.static, name="console-static")
    app.include_router(console_pages.router)
    return app
