"""The destination double over real HTTP, for tests that run workers as other processes.

A tiny gradebook (FastAPI, served by uvicorn in a thread of the test process) that keeps
every score (and answers them back), refuses a timestamp not newer than the stored one (409)
and a learner outside its roster (422), records which worker process sent what and how many
sends of one key overlap, can hold requests until the test lets them go and fail the next
ones on purpose (a 5xx, a 429 with Retry-After). `gradesync.testing.http_adapter` is the
client side the workers load through GRADESYNC_TEST_DESTINATION_MODULE.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gradesync.testing.waiting import wait_for


@dataclass
class GradebookState:
    lock: threading.Condition = field(default_factory=threading.Condition)
    scores: dict[tuple[str, str], tuple[float | None, datetime]] = field(default_factory=dict)
    sends: dict[tuple[str, str], int] = field(default_factory=dict)
    accepted: dict[tuple[str, str], list[float | None]] = field(default_factory=dict)
    senders: dict[str, int] = field(default_factory=dict)  # worker pid -> sends
    in_flight: set[tuple[str, str]] = field(default_factory=set)
    overlapping: list[tuple[str, str]] = field(default_factory=list)
    held: int = 0
    hold: bool = False
    # release held requests once this many distinct workers have requests held
    release_when_workers: int | None = None
    _held_workers: set[str] = field(default_factory=set)
    maximums: dict[tuple[str, str], float | None] = field(default_factory=dict)
    # the remote person ids the course knows (None: anyone); others get a 422
    enrolled: set[str] | None = None
    # the next score requests answer (status, Retry-After seconds or None), in order
    faults: list[tuple[int, int | None]] = field(default_factory=list)
    # each request takes this long (seconds) before it is answered, as a real LMS does;
    # requests are counted while they last
    latency: float = 0.0
    concurrent: int = 0
    max_concurrent: int = 0
    started: list[float] = field(default_factory=list)  # monotonic start of each request

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        with self.lock:
            if not self.lock.wait_for(predicate, timeout):
                raise TimeoutError("the gradebook did not reach the expected state in time")

    def release(self) -> None:
        with self.lock:
            self.hold = False
            self.lock.notify_all()


def make_app(state: GradebookState) -> FastAPI:
    app = FastAPI()

    @app.post("/items/{item}/scores")
    def score(item: str, body: dict[str, Any], request: Request) -> JSONResponse:
        person = str(body["userId"])
        key = (item, person)
        worker = request.headers.get("x-worker", "?")
        ts = datetime.fromisoformat(body["timestamp"])
        with state.lock:
            state.started.append(time.monotonic())
            state.concurrent += 1
            state.max_concurrent = max(state.max_concurrent, state.concurrent)
        try:
            if state.latency:
                time.sleep(state.latency)  # the LMS at work, outside the lock
            return _store(key, worker, ts, body)
        finally:
            with state.lock:
                state.concurrent -= 1

    def _store(
        key: tuple[str, str], worker: str, ts: datetime, body: dict[str, Any]
    ) -> JSONResponse:
        with state.lock:
            if state.faults:
                status, retry_after = state.faults.pop(0)
                headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
                return JSONResponse({"error": "injected"}, status_code=status, headers=headers)
            if state.enrolled is not None and key[1] not in state.enrolled:
                return JSONResponse({"error": "User not found in course"}, status_code=422)
            if key in state.in_flight:
                state.overlapping.append(key)
            state.in_flight.add(key)
            state.sends[key] = state.sends.get(key, 0) + 1
            state.senders[worker] = state.senders.get(worker, 0) + 1
            try:
                if state.hold:
                    state.held += 1
                    state._held_workers.add(worker)
                    if (
                        state.release_when_workers is not None
                        and len(state._held_workers) >= state.release_when_workers
                    ):
                        state.hold = False
                    state.lock.notify_all()
                    state.lock.wait_for(lambda: not state.hold, timeout=60)
                last = state.scores.get(key)
                if last is not None and ts <= last[1]:
                    return JSONResponse({"error": "timestamp not newer"}, status_code=409)
                state.scores[key] = (body.get("scoreGiven"), ts)
                state.maximums[key] = body.get("scoreMaximum")
                state.accepted.setdefault(key, []).append(body.get("scoreGiven"))
                state.lock.notify_all()
                return JSONResponse({"ok": True}, status_code=200)
            finally:
                state.in_flight.discard(key)

    @app.get("/items/{item}/scores")
    def scores(item: str) -> list[dict[str, Any]]:
        with state.lock:
            return [
                {
                    "userId": person,
                    "scoreGiven": given,
                    "scoreMaximum": state.maximums.get((it, person)),
                    "timestamp": ts.isoformat(),
                }
                for (it, person), (given, ts) in state.scores.items()
                if it == item
            ]

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_gradebook() -> Iterator[tuple[str, GradebookState]]:
    """Serve a fresh gradebook on loopback; yields (base URL, state)."""
    state = GradebookState()
    port = _free_port()
    config = uvicorn.Config(
        make_app(state), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), "the test gradebook to start")
    if not server.started:
        raise RuntimeError("the test gradebook did not start (see its log above)")
    try:
        yield f"http://127.0.0.1:{port}", state
    finally:
        state.release()
        server.should_exit = True
        thread.join(timeout=10)
