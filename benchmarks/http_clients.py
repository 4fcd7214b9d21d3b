"""The HTTP client under gradesync's delivery path, measured side by side.

    python -m benchmarks.http_clients [--rounds 3] [--results 4000] [--profile DIR]

One sandbox LMS (50 ms per request, 16 at once: capacity 320 results/s), and in this
process gradesync's own AGS adapter (`AgsClient.put_result`: token cache, URL checks, score
body, classification) sending the same shape of work as the throughput scenario with 16
requests in flight, over each transport in turn, alternating, every round:

- `httpx-httpcore`: httpx over httpcore's pool, behind the outbound guard, with the cheap
  idle-connection check gradesync used (`http_pool.httpcore_client`);
- `httpx-aiohttp`: httpx's client over aiohttp's pool, behind the outbound guard
  (`http_pool.shared_client`, what `gradesync serve` uses).

Per run: the steady rate (the sandbox's arrival times, as every other client is measured),
this process's CPU per 1,000 results (it does nothing else meanwhile) and the machine's CPU
pressure. With `--profile DIR`, each run is also sampled by py-spy (GIL-holding samples).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt

from benchmarks import fair, pressure, procs, profile, stats
from benchmarks.httpcore_client import httpcore_client
from benchmarks.sizes import FULL
from gradesync.adapters.destinations.ags import AgsClient
from gradesync.adapters.destinations.http_pool import shared_client
from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.adapters.outbound_http import SystemResolver
from gradesync.domain.model import CourseLink, Destination, DestinationKind, ItemLink, PersonLink
from gradesync.domain.policy import DesiredResult
from gradesync.sandbox.testing import SandboxAdmin
from gradesync.services.destination import ResultTarget
from gradesync.services.outbound import LOOPBACK_NETWORKS, OutboundGuard, OutboundPolicy

TIMEOUT = httpx.Timeout(30.0, connect=10.0)
LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)
CLIENTS: dict[str, Callable[[OutboundGuard], httpx.AsyncClient]] = {
    "httpx-httpcore": lambda g: httpcore_client(timeout=TIMEOUT, limits=LIMITS, guard=g),
    "httpx-aiohttp": lambda g: shared_client(timeout=TIMEOUT, limits=LIMITS, guard=g),
}


@dataclass
class _Lms:
    """What `fair` needs of a world: the sandbox, its admin, its arrivals."""

    sandbox: procs.Child
    admin: SandboxAdmin

    def arrivals(self) -> list[list[Any]]:
        r = httpx.get(self.sandbox.base_url + "/_bench/arrivals", timeout=60.0)
        r.raise_for_status()
        return r.json()["rows"]  # type: ignore[no-any-return]


class _Signer:
    def __init__(self, private: str) -> None:
        self.private = private

    def current(self) -> _Signer:
        return self

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256", headers=headers)


async def _run(lms: _Lms, name: str, prefix: str, results: int, cap: int) -> dict[str, Any]:
    learners = max(results // (4 * 5), 1)
    sizes = FULL.__class__(**{**FULL.__dict__, "tp_learners": learners, "cap": cap})
    client_id, private, courses = fair._setup(lms, sizes, prefix)  # type: ignore[arg-type]
    cfg = lms.admin.config()
    base = lms.sandbox.base_url
    guard = OutboundGuard(OutboundPolicy.allowing(LOOPBACK_NETWORKS), SystemResolver())
    dest = Destination(
        "bench",
        "lms",
        DestinationKind.LTI13_AGS,
        "sandbox",
        config={
            "client_id": client_id,
            "auth_token_url": cfg["token_url"],
            "issuer": cfg["issuer"],
            "platform_origins": [base],
            "concurrency": cap,
        },
    )
    async with CLIENTS[name](guard) as http:
        ags = AgsClient(dest, DestinationContext(http=http, tool_keys=_Signer(private)))
        await ags._token()  # fetched once, before the measured part (as for every client)
        items: dict[tuple[str, str], str] = {}
        for c in courses:
            for a, points in c.activities:  # line items created once
                made = await ags._send(
                    "POST",
                    f"{base}/api/lti/courses/{c.id}/line_items",
                    field="lineitems",
                    what="line item",
                    content_type=fair.LINEITEM_TYPE,
                    body={"label": a, "scoreMaximum": points, "resourceId": a, "tag": a},
                )
                items[(c.id, a)] = made.json()["id"]
        work = fair._work(courses)

        async def send_one(job: tuple[str, str, str, float]) -> bool:
            course, activity, person, score = job
            target = ResultTarget(
                CourseLink("bench", "lms", course, f"{base}/api/lti/courses/{course}"),
                ItemLink("bench", "lms", activity, items[(course, activity)]),
                PersonLink("bench", "lms", person, person),
            )
            result = DesiredResult(
                score, 10.0, "FullyGraded", "Completed", None, False, False, False,
                None, "", None,
            )  # fmt: skip
            await ags.put_result(target, result, datetime.now(UTC))
            return True

        window = pressure.Window.start()
        out = await fair.send_all(lms, prefix, work, cap, send_one, (Exception,))  # type: ignore[arg-type]
    return {"client": name, **out, "cpu_pressure": window.stop()}


def _profiled(out_dir: Path, tag: str) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return None
    raw = out_dir / f"{tag}.txt"
    return subprocess.Popen(
        [spy, "record", "--pid", str(os.getpid()), "--format", "raw", "--gil", "-r", "200",
         "-o", str(raw)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.http_clients",
        description=__doc__.split("\n")[0] if __doc__ else None,
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--results", type=int, default=4000)
    ap.add_argument("--only", default=",".join(CLIENTS))
    ap.add_argument("--profile", type=Path, default=None, help="py-spy raw profiles here")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/http-clients.json"))
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    work = Path(tempfile.mkdtemp(prefix="gs-http-"))
    group = {"latency_ms": FULL.latency_ms, "max_concurrency": FULL.cap, "over_capacity": "queue"}
    faults = json.dumps({"scores": group, "lineitems": dict(group)})
    sandbox = procs.start_sandbox(work, faults)
    lms = _Lms(sandbox, SandboxAdmin(sandbox.base_url))
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    try:
        for r in range(args.rounds):
            for name in names:
                spy = None
                if args.profile is not None:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    spy = _profiled(args.profile, f"{name}-r{r + 1}")
                    time.sleep(1.0)  # py-spy attaches before the measured part
                got = asyncio.run(_run(lms, name, f"h{r}{name[6:9]}", args.results, FULL.cap))
                if spy is not None:
                    spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                    spy.wait(timeout=60)
                    got["profile"] = profile.summarize(args.profile / f"{name}-r{r + 1}.txt")
                runs[name].append(got)
                print(
                    f"round {r + 1} {name:15s} {got['steady_rate_per_s']:6.1f}/s  "
                    f"cpu {got['client_cpu_s_per_1000']:.2f} s/1000  "
                    f"pressure {got['cpu_pressure'].get('some_share')}  ok={got['ok']}",
                    flush=True,
                )
    finally:
        lms.admin.close()
        sandbox.stop()
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        n: {
            "rate": stats.spread([x["steady_rate_per_s"] for x in rs]),
            "cpu_s_per_1000": stats.spread([x["client_cpu_s_per_1000"] for x in rs]),
            "pressure_share": stats.spread(
                [x["cpu_pressure"].get("some_share") or 0.0 for x in rs]
            ),
            "ok": all(x["ok"] for x in rs),
        }
        for n, rs in runs.items()
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    print(json.dumps(summary, indent=2))
    return 0 if all(s["ok"] for s in summary.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
