"""The CPU of the shared client's layer above aiohttp's pool: httpx's client against the
fast path (`adapters/destinations/http_pool.py`).

    python -m benchmarks.http_layer [--rounds 3] [--requests 4000]

A server in a child process on 127.0.0.1 answers each request at once (a small JSON body,
keep-alive). This process sends it the AGS score shape (`request("POST", url, content=...,
headers={Authorization, Content-Type}, timeout=30.0)`, then `is_success`), 16 in flight,
through the shared client with the fast path off (every call through httpx's client: what
gradesync did before) and on, and straight through an aiohttp session (no guard, no httpx
types: the floor under both), alternating, every round. Per run: this process's CPU per
request (it does nothing else meanwhile; the server's CPU is its own process's) and the
machine's CPU pressure (`/proc/pressure/cpu`). Also: the client layer alone on each path (the
pool answering at once, no connection), and the cost of making the `httpx.Request` objects
the fast path leaves out. Figures in `benchmarks/results/http-layer.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from benchmarks import pressure, stats
from benchmarks.instant_pool import answering_at_once
from gradesync.adapters.destinations.http_pool import shared_client
from gradesync.adapters.outbound_http import SystemResolver
from gradesync.services.outbound import LOOPBACK_NETWORKS, OutboundGuard, OutboundPolicy

IN_FLIGHT = 16
PATHS = ("httpx", "fast", "aiohttp")
BODY = json.dumps(
    {
        "userId": "learner-0001",
        "scoreGiven": 7.5,
        "scoreMaximum": 10.0,
        "activityProgress": "Completed",
        "gradingProgress": "FullyGraded",
        "timestamp": "2026-12-02T10:00:00.000000+00:00",
    }
).encode()
HEADERS = {
    "Authorization": "Bearer " + "t" * 40,
    "Content-Type": "application/vnd.ims.lis.v1.score+json",
}
_ANSWER_BODY = b'{"resultUrl": "http://127.0.0.1/results/1"}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    + b"content-length: %d\r\n" % len(_ANSWER_BODY)
    + b"date: Wed, 02 Dec 2026 10:00:00 GMT\r\nserver: bench\r\n\r\n"
    + _ANSWER_BODY
)


class _Answering(asyncio.Protocol):
    """HTTP/1.1 keep-alive: the same answer to every request, as soon as it has arrived."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.buffer = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(ANSWER)


async def _serve() -> None:
    server = await asyncio.get_running_loop().create_server(_Answering, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


async def _run(path: str, url: httpx.URL, requests: int) -> dict[str, Any]:
    if path == "aiohttp":
        return await _run_bare(url, requests)
    guard = OutboundGuard(OutboundPolicy.allowing(LOOPBACK_NETWORKS), SystemResolver())
    timeout, limits = httpx.Timeout(30.0, connect=10.0), httpx.Limits(max_connections=200)
    async with shared_client(
        timeout=timeout, limits=limits, guard=guard, fast=path == "fast"
    ) as http:
        failed = 0

        async def sender(n: int) -> None:
            nonlocal failed
            for _ in range(n):
                resp = await http.request(
                    "POST", url, content=BODY, headers=dict(HEADERS), timeout=30.0
                )
                failed += not resp.is_success

        await asyncio.gather(*(sender(20) for _ in range(IN_FLIGHT)))  # connections open
        window = pressure.Window.start()
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(sender(requests // IN_FLIGHT) for _ in range(IN_FLIGHT)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    sent = requests // IN_FLIGHT * IN_FLIGHT
    return {
        "path": path,
        "requests": sent,
        "failed": failed,
        "cpu_us_per_request": round(cpu / sent * 1e6, 1),
        "requests_per_s": round(sent / wall, 1),
        "cpu_pressure": window.stop(),
    }


async def _run_bare(url: httpx.URL, requests: int) -> dict[str, Any]:
    """The same requests straight through an aiohttp session: no guard, no httpx types, the
    floor under both paths above."""
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as session:
        failed = 0

        async def sender(n: int) -> None:
            nonlocal failed
            for _ in range(n):
                async with session.post(str(url), data=BODY, headers=HEADERS) as resp:
                    await resp.read()
                    failed += resp.status >= 300

        await asyncio.gather(*(sender(20) for _ in range(IN_FLIGHT)))
        window = pressure.Window.start()
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(sender(requests // IN_FLIGHT) for _ in range(IN_FLIGHT)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    sent = requests // IN_FLIGHT * IN_FLIGHT
    return {
        "path": "aiohttp",
        "requests": sent,
        "failed": failed,
        "cpu_us_per_request": round(cpu / sent * 1e6, 1),
        "requests_per_s": round(sent / wall, 1),
        "cpu_pressure": window.stop(),
    }


async def _layer_alone(path: str, url: httpx.URL, n: int = 5000) -> float:
    """CPU µs per request with the pool answering at once, no connection: the client layer
    alone (the figure of the profile that led to the fast path)."""
    head = ((b"content-type", b"application/json"), (b"content-length", b"%d" % len(_ANSWER_BODY)))
    guard = OutboundGuard(OutboundPolicy.allowing(LOOPBACK_NETWORKS), SystemResolver())
    async with shared_client(
        timeout=httpx.Timeout(30.0), limits=httpx.Limits(), guard=guard,
        wrap=answering_at_once(head, _ANSWER_BODY),
        fast=path == "fast",
    ) as http:  # fmt: skip
        cpu0 = time.process_time()
        for _ in range(n):
            resp = await http.request(
                "POST", url, content=BODY, headers=dict(HEADERS), timeout=30.0
            )
            assert resp.is_success
        return round((time.process_time() - cpu0) / n * 1e6, 1)


def _pieces(url: httpx.URL, n: int = 20000) -> dict[str, Any]:
    """µs to make the request objects the fast path makes only when asked for, and the
    client layer alone on each path."""
    client = httpx.AsyncClient()

    def each(make: Any) -> float:
        cpu0 = time.process_time()
        for _ in range(n):
            make()
        return round((time.process_time() - cpu0) / n * 1e6, 1)

    alone: dict[str, list[float]] = {p: [] for p in PATHS[:2]}
    for _ in range(3):  # alternating
        for p in PATHS[:2]:
            alone[p].append(asyncio.run(_layer_alone(p, url)))
    return {
        "httpx_request_method_url_us": each(lambda: httpx.Request("POST", url)),
        "build_request_us": each(
            lambda: client.build_request("POST", url, content=BODY, headers=HEADERS, timeout=30.0)
        ),
        "layer_alone_us": {p: stats.spread(v) for p, v in alone.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.http_layer",
        description=" ".join(__doc__.split("\n\n")[0].split()) if __doc__ else None,
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/http-layer.json"))
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        asyncio.run(_serve())
        return 0
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.http_layer", "--serve"], stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        url = httpx.URL(f"http://127.0.0.1:{int(server.stdout.readline())}/lineitems/1/scores")
        runs: dict[str, list[dict[str, Any]]] = {p: [] for p in PATHS}
        for r in range(args.rounds):
            for path in PATHS if r % 2 == 0 else PATHS[::-1]:  # alternating which goes first
                got = asyncio.run(_run(path, url, args.requests))
                runs[path].append(got)
                print(
                    f"round {r + 1} {path:6s} {got['cpu_us_per_request']:7.1f} µs CPU/request  "
                    f"{got['requests_per_s']:7.1f}/s  "
                    f"pressure {got['cpu_pressure'].get('some_share')}  failed={got['failed']}",
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait(timeout=10)
    summary = {
        p: {
            "cpu_us_per_request": stats.spread([x["cpu_us_per_request"] for x in rs]),
            "requests_per_s": stats.spread([x["requests_per_s"] for x in rs]),
            "pressure_share": stats.spread(
                [x["cpu_pressure"].get("some_share") or 0.0 for x in rs]
            ),
            "ok": all(x["failed"] == 0 for x in rs),
        }
        for p, rs in runs.items()
    }
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "httpx": httpx.__version__,
        "aiohttp": aiohttp.__version__,
        "load_average": os.getloadavg(),
        "in_flight": IN_FLIGHT,
        "summary": summary,
        "pieces": _pieces(url),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"summary": summary, "pieces": result["pieces"]}, indent=2))
    return 0 if all(s["ok"] for s in summary.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
