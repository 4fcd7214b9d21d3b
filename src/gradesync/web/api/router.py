"""Everything under /api/v1, mounted by `web.app.create_app` with `api.install(app)`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI

from gradesync.web.api import (
    courses,
    descriptions,
    destinations,
    errors,
    ingest,
    policies,
    query,
    runs,
    schedules,
    statuses,
    tool_keys,
)
from gradesync.web.api import diagnosis as diagnostics
from gradesync.web.api import lti11 as lti11_consumers
from gradesync.web.api import platforms as lti_platforms
from gradesync.web.api import sis as sis_passback

# every operation: an unknown query parameter, or a filter naming nothing stored, is refused
PREFIX = "/api/v1"
router = APIRouter(prefix=PREFIX, dependencies=[Depends(query.query_rules(PREFIX))])
router.include_router(ingest.router)
router.include_router(courses.router)
router.include_router(policies.router)
router.include_router(runs.router)
router.include_router(destinations.router)
router.include_router(diagnostics.router)
router.include_router(lti_platforms.router)
router.include_router(lti11_consumers.router)
router.include_router(tool_keys.router)
router.include_router(sis_passback.router)
router.include_router(schedules.router)


def install(app: FastAPI) -> None:
    errors.install(app)
    app.include_router(router)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        # the whole app's document (health and LTI endpoints too), with every field,
        # parameter and operation described
        now = app.state.runtime.clock.now()
        return statuses.declare(descriptions.describe(generate(), now))

    app.openapi = openapi  # type: ignore[method-assign]
