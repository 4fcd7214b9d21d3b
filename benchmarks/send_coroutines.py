"""The coroutines and tasks one score's request makes on the event loop's thread, counted:
`ObservedClient.put_result` on an AGS client over the shared client and aiohttp's pool, to a
server in another process answering at once (`benchmarks.http_layer`'s).

    python -m benchmarks.send_coroutines [--scores 10] [--src DIR ...]

Counted with `sys.setprofile` (new coroutine frames, by function) and a task factory (tasks
started), over `--scores` scores sent one after another on a warm connection; each per
score. The pass loop's own (`Deliverer.send`, one coroutine and its task) are not in it. With
`--src`, each checkout's src directory is counted in a child process of its own. A count,
not a timing: the machine's load does not change it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.send_layers import score_client


def _where(frame: FrameType) -> str:
    module = frame.f_globals.get("__name__", "?")
    return f"{module}.{frame.f_code.co_qualname}"


async def _count(base: str, scores: int) -> dict[str, Any]:
    from gradesync.adapters.destinations.observed import CountingTransport

    http, _, send = await score_client(base, CountingTransport)
    for _ in range(20):  # warm: the connection open, caches filled
        await asyncio.create_task(send())
    loop = asyncio.get_running_loop()
    tasks: collections.Counter[str] = collections.Counter()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
        tasks[getattr(coro, "__qualname__", type(coro).__name__)] += 1
        return asyncio.Task(coro, loop=loop, **kw)

    seen: dict[int, tuple[FrameType, str]] = {}  # frames kept: an id is not reused meanwhile

    def profile(frame: FrameType, event: str, _: Any) -> None:
        coroutine = frame.f_code.co_flags & inspect.CO_COROUTINE
        if event == "call" and coroutine and id(frame) not in seen:
            seen[id(frame)] = (frame, _where(frame))

    loop.set_task_factory(factory)
    sys.setprofile(profile)
    try:
        for _ in range(scores):
            await asyncio.create_task(send())
    finally:
        sys.setprofile(None)
        loop.set_task_factory(None)
    await http.aclose()
    made = collections.Counter(where for _, where in seen.values() if where != f"{__name__}._count")
    by_module = collections.Counter[str]()
    for where, n in made.items():
        by_module["gradesync" if where.startswith("gradesync.") else where.split(".")[0]] += n
    import gradesync

    return {
        "gradesync": str(Path(gradesync.__file__).parent),
        "python": sys.version.split()[0],
        "coroutines_per_score": sum(made.values()) / scores,
        "by_package": {k: v / scores for k, v in sorted(by_module.items())},
        "coroutines": {k: v / scores for k, v in sorted(made.items())},
        "tasks_per_score": {k: v / scores for k, v in sorted(tasks.items())},
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.send_coroutines", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--scores", type=int, default=10, help="scores counted")
    ap.add_argument("--src", action="append", default=[], help="a checkout's src (repeatable)")
    ap.add_argument("--base", help=argparse.SUPPRESS)  # a child's: the server's address
    args = ap.parse_args()
    if args.base:
        print(json.dumps(asyncio.run(_count(args.base, args.scores))))
        return
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.http_layer", "--serve"], stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        base = f"http://127.0.0.1:{int(server.stdout.readline())}"
        figures = {}
        for src in args.src or [""]:
            env = dict(os.environ)
            if src:
                env["PYTHONPATH"] = str(Path(src).resolve())
            argv = [sys.executable, "-m", "benchmarks.send_coroutines", "--base", base]
            argv += ["--scores", str(args.scores)]
            done = subprocess.run(argv, env=env, capture_output=True, check=True, text=True)
            figures[src or "installed"] = json.loads(done.stdout)
    finally:
        server.terminate()
        server.wait()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
