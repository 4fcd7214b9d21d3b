"""The sandbox, in its own process, plus one read-only route for the benchmark:
`GET /_bench/arrivals` lists, for every score the LMS gradebook holds, when it was stored
(wall clock, seconds since the epoch). The latency benchmark reads arrival times from here
instead of polling the gradebook, so polling neither costs the sandbox CPU nor blurs the
figures by the polling interval.

    python -m benchmarks.sandbox_host --port 8765 [--faults JSON] [--mode generic]
"""

from __future__ import annotations

import argparse
import json

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gradesync.sandbox.app import SandboxApp, create_app
from gradesync.sandbox.config import SandboxConfig


def build(port: int, mode: str, faults: str | None, rng_seed: int) -> SandboxApp:
    config = SandboxConfig.model_validate(
        {
            "mode": mode,
            "base_url": f"http://127.0.0.1:{port}",
            "rng_seed": rng_seed,
            **({"faults": json.loads(faults)} if faults else {}),
        }
    )
    app = create_app(config)

    async def arrivals(request: Request) -> JSONResponse:
        """[[course, resourceId, user, scoreGiven, stored_at, history], ...]"""
        wanted = request.query_params.get("course")
        rows = []
        for course in app.sandbox.state.courses.values():
            if wanted and course.id != wanted:
                continue
            for item in course.line_items.values():
                for user, rec in item.scores.items():
                    stored = rec.updated_at.timestamp() if rec.updated_at else None
                    rows.append(
                        [course.id, item.resource_id, user, rec.score_given, stored, rec.history]
                    )
        return JSONResponse({"rows": rows})

    async def line_items(request: Request) -> JSONResponse:
        """Line items per course (duplicates are a correctness failure)."""
        return JSONResponse(
            {
                c.id: [[i.resource_id, i.label] for i in c.line_items.values()]
                for c in app.sandbox.state.courses.values()
            }
        )

    # Starlette matches routes in order; ours never collide with the sandbox's.
    app.router.routes.insert(0, Route("/_bench/arrivals", arrivals))
    app.router.routes.insert(0, Route("/_bench/line_items", line_items))
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sandbox_host")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", default="generic")
    parser.add_argument("--faults")
    parser.add_argument("--rng-seed", type=int, default=1)
    args = parser.parse_args()
    app = build(args.port, args.mode, args.faults, args.rng_seed)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=60,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
