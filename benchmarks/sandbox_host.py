"""The sandbox, in its own process, plus one read-only route for the benchmark:
`GET /_bench/arrivals` lists, for every score the LMS gradebook holds, when it was stored
(wall clock, seconds since the epoch). The latency benchmark reads arrival times from here
instead of polling the gradebook, so polling neither costs the sandbox CPU nor blurs the
figures by the polling interval.

For the SIS (OneRoster) scenario: `--seed FILE` loads seed data (JSON) at start, and
`GET /_bench/sis` tells how many result and line item PUTs the SIS answered 2xx, how many
results it holds and the sum of their scores (counted by a thin ASGI wrapper, so the
sandbox itself is unchanged).

    python -m benchmarks.sandbox_host --port 8765 [--faults JSON] [--seed FILE] [--mode generic]
"""

from __future__ import annotations

import argparse
import json
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gradesync.sandbox.app import SandboxApp, create_app
from gradesync.sandbox.config import SandboxConfig

SIS_PREFIX = "/ims/oneroster/"
# 2xx answers to OneRoster writes, by collection ("results", "lineItems", "categories")
SIS_PUTS: Counter[str] = Counter()
# 2xx answers per result path: a result accepted more often than it was sent is a duplicate
RESULT_PUTS: Counter[str] = Counter()


class CountSisWrites:
    """Counts the OneRoster PUTs the sandbox accepted (2xx), per collection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "PUT" or not path.startswith(SIS_PREFIX):
            await self.app(scope, receive, send)
            return
        kind = path.rstrip("/").rsplit("/", 2)[-2]

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                SIS_PUTS[kind] += 1
                if kind == "results":
                    RESULT_PUTS[path] += 1
            await send(message)

        await self.app(scope, receive, counted)


def build(
    port: int,
    mode: str,
    faults: str | None,
    rng_seed: int,
    seed: dict[str, Any] | None = None,
    *,
    per_host: bool = False,
) -> SandboxApp:
    config = SandboxConfig.model_validate(
        {
            "mode": mode,
            # per host: no fixed base URL, so issuer and URLs follow the request's Host
            "base_url": None if per_host else f"http://127.0.0.1:{port}",
            "rng_seed": rng_seed,
            **({"faults": json.loads(faults)} if faults else {}),
            **({"seed": seed} if seed else {}),
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

    async def stored(request: Request) -> JSONResponse:
        """How many scores the LMS holds, in the courses whose id starts with `course_prefix`
        if given (a count, cheap to poll while a client sends: the full arrivals of every
        earlier run would take the sandbox's time from the requests it is answering)."""
        prefix = request.query_params.get("course_prefix", "")
        count = sum(
            1
            for course in app.sandbox.state.courses.values()
            if course.id.startswith(prefix)
            for item in course.line_items.values()
            for rec in item.scores.values()
            if rec.score_given is not None
        )
        return JSONResponse({"scores": count})

    async def line_items(request: Request) -> JSONResponse:
        """Line items per course (duplicates are a correctness failure)."""
        return JSONResponse(
            {
                c.id: [[i.resource_id, i.label] for i in c.line_items.values()]
                for c in app.sandbox.state.courses.values()
            }
        )

    async def sis(request: Request) -> JSONResponse:
        """Accepted OneRoster PUTs per collection, and the results the SIS holds; how many
        results were accepted how many times, and the paths of those accepted most."""
        results = app.sandbox.state.sis_results.values()
        times = Counter(RESULT_PUTS.values())
        most = max(times, default=0)
        return JSONResponse(
            {
                "puts": dict(SIS_PUTS),
                "results_accepted_times": {str(k): v for k, v in sorted(times.items())},
                # some results accepted more often than others: which (a duplicate send)
                "most_accepted": [p for p, n in RESULT_PUTS.items() if n == most][:10]
                if len(times) > 1
                else [],
                "results_stored": len(app.sandbox.state.sis_results),
                "score_sum": sum(float(r.data.get("score") or 0.0) for r in results),
                "line_items_stored": len(app.sandbox.state.sis_line_items),
            }
        )

    # Starlette matches routes in order; ours never collide with the sandbox's.
    app.router.routes.insert(0, Route("/_bench/sis", sis))
    app.router.routes.insert(0, Route("/_bench/arrivals", arrivals))
    app.router.routes.insert(0, Route("/_bench/stored", stored))
    app.router.routes.insert(0, Route("/_bench/line_items", line_items))
    return app


def platform_host(k: int) -> str:
    """The loopback address platform `k` of `--hosts` answers on (127.0.0.1 is platform 0):
    one origin per platform, so each has its own connections in an HTTP client's pool."""
    if k == 0:
        return "127.0.0.1"
    return f"127.1.{k // 200}.{k % 200 + 10}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sandbox_host")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", default="generic")
    parser.add_argument("--faults")
    parser.add_argument("--rng-seed", type=int, default=1)
    parser.add_argument("--seed", type=Path, help="seed data (JSON) loaded at start")
    parser.add_argument(
        "--hosts",
        type=int,
        default=1,
        help="answer on this many loopback addresses (see platform_host), each an LMS of its "
        "own: its issuer and URLs follow the address a request came to",
    )
    args = parser.parse_args()
    seed = json.loads(args.seed.read_text()) if args.seed else None
    app = build(args.port, args.mode, args.faults, args.rng_seed, seed, per_host=args.hosts > 1)
    config = uvicorn.Config(
        CountSisWrites(app),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=60,
        backlog=4096,
    )
    server = uvicorn.Server(config)
    if args.hosts <= 1:
        server.run()
        return
    sockets = []
    for k in range(args.hosts):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((platform_host(k), args.port))
        sock.listen(4096)
        sockets.append(sock)
    server.run(sockets=sockets)


if __name__ == "__main__":
    main()
