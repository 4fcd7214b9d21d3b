"""The CPU of gradesync's layers over aiohttp for one score: `ObservedClient.put_result` on an
AGS client over the shared client, the pool answering at once (no connection, no aiohttp).

    python -m benchmarks.send_layers [--rounds 5] [--calls 5000] [--src DIR ...]

What one result sent costs on the event loop's thread above the pool: the log context bound,
the score's body built and encoded, the token taken from the cache, the URL and header lines
found, the request counted, the answer made an `httpx.Response` and its text read for the
delivery log. The token is cached before; the answer is a 200 with four header lines. Per
round: this thread's CPU per call (`time.thread_time`), the best of `--rounds`; with
`--src` each checkout's src directory is measured in a child process of its own, the
checkouts in turn every round (old and new code side by side on a shared machine). Each
figure records the machine's CPU pressure (`/proc/pressure/cpu`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks import pressure, stats
from benchmarks.instant_pool import answering_at_once

_BODY = b'{"resultUrl": "http://127.0.0.1:9/results/1"}'
_HEAD = (
    (b"Content-Type", b"application/json"),
    (b"Content-Length", b"%d" % len(_BODY)),
    (b"Date", b"Wed, 02 Dec 2026 10:00:00 GMT"),
    (b"Server", b"uvicorn"),
)


async def score_client(
    base: str, wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport]
) -> tuple[httpx.AsyncClient, Any, Callable[[], Coroutine[Any, Any, Any]]]:
    """An AGS client for a platform at `base` as the runtime makes it (`ObservedClient` over
    the shared client, `wrap` around the pool), its token cached, and one score's send."""
    from gradesync.adapters.destinations.http_pool import shared_client
    from gradesync.adapters.destinations.observed import ObservedClient
    from gradesync.adapters.destinations.registry import DestinationContext, build_client
    from gradesync.adapters.destinations.tokens import TokenCache
    from gradesync.adapters.outbound_http import SystemResolver
    from gradesync.domain.model import (
        CourseLink,
        Destination,
        DestinationKind,
        ItemLink,
        PersonLink,
    )
    from gradesync.domain.policy import DesiredResult
    from gradesync.services.destination import ResultTarget
    from gradesync.services.outbound import LOOPBACK_NETWORKS, OutboundGuard, OutboundPolicy

    guard = OutboundGuard(OutboundPolicy.allowing(LOOPBACK_NETWORKS), SystemResolver())
    http = shared_client(
        timeout=httpx.Timeout(30.0, connect=10.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        guard=guard,
        wrap=wrap,
    )
    tokens = TokenCache()
    d = Destination(
        "bench",
        "layers",
        DestinationKind.LTI13_AGS,
        "layers",
        config={
            "issuer": base,
            "client_id": "c",
            "auth_token_url": f"{base}/token",
            "key_set_url": f"{base}/jwks",
            "deployment_ids": ["1"],
        },
    )
    inner = build_client(d, DestinationContext(http=http, tokens=tokens))
    client = ObservedClient(inner)

    async def fetch() -> tuple[str, float, frozenset[str]]:
        return "t" * 40, 3600.0, frozenset(inner.scopes)  # type: ignore[attr-defined]

    await tokens.get(inner._token_key(), fetch)  # type: ignore[attr-defined]
    target = ResultTarget(
        CourseLink("bench", "layers", "c1", f"{base}/c1/lineitems"),
        ItemLink("bench", "layers", "a1", f"{base}/c1/lineitems/1"),
        PersonLink("bench", "layers", "p1", "learner-0001"),
    )
    result = DesiredResult(
        7.5, 10.0, "FullyGraded", "Completed", None, False, False, False,
        datetime(2026, 12, 1, tzinfo=UTC), "best", "e1", 10.0,
    )  # fmt: skip
    stamp = datetime.now(UTC)

    def send() -> Coroutine[Any, Any, Any]:
        return client.put_result(target, result, stamp)

    return http, client, send


async def _per_call(calls: int, rounds: int) -> list[float]:
    from gradesync.adapters.destinations.observed import CountingTransport

    wrap = answering_at_once(_HEAD, _BODY, CountingTransport)  # as the runtime wraps it
    http, _, send = await score_client("http://127.0.0.1:9", wrap)
    for _ in range(500):  # warm: caches filled, code paths taken once
        await send()
    out = []
    for _ in range(rounds):
        cpu0 = time.thread_time()
        for _ in range(calls):
            receipt = await send()
        out.append(round((time.thread_time() - cpu0) / calls * 1e6, 1))
        assert receipt.status == 200 and receipt.message
    await http.aclose()
    return out


def _one(calls: int, rounds: int) -> dict[str, Any]:
    window = pressure.Window.start()
    per_call = asyncio.run(_per_call(calls, rounds))
    import gradesync

    return {
        "gradesync": str(Path(gradesync.__file__).parent),
        "cpu_us_per_call": min(per_call),
        "rounds_us": per_call,
        "cpu_pressure": window.stop(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.send_layers", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per figure (best kept)")
    ap.add_argument("--calls", type=int, default=5000, help="calls per round")
    ap.add_argument("--src", action="append", default=[], help="a checkout's src (repeatable)")
    ap.add_argument("--turns", type=int, default=3, help="with --src: turns over the checkouts")
    ap.add_argument("--out", type=Path, help="also write the figures here")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one or not args.src:
        figures: dict[str, Any] = _one(args.calls, args.rounds)
    else:
        runs: dict[str, list[dict[str, Any]]] = {src: [] for src in args.src}
        for _ in range(args.turns):
            for src in args.src:
                env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
                argv = [sys.executable, "-m", "benchmarks.send_layers", "--one"]
                argv += ["--rounds", str(args.rounds), "--calls", str(args.calls)]
                done = subprocess.run(argv, env=env, capture_output=True, check=True, text=True)
                runs[src].append(json.loads(done.stdout))
        figures = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "checkouts": {
                src: {
                    "cpu_us_per_call": stats.spread([r["cpu_us_per_call"] for r in rs]),
                    "runs": rs,
                }
                for src, rs in runs.items()
            },
        }
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
