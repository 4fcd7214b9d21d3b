"""An open-loop load: attempts posted to the API on a fixed schedule (not "as fast as the
server answers"), so a slow server shows up as latency rather than as a lower offered load.
Bounded by the number of attempts and by a deadline."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Posted:
    payload: dict[str, Any]
    sent_at: float  # wall clock (epoch seconds), comparable with the sandbox's stored_at
    accepted_at: float
    status: int


def post_steady(
    api_url: str,
    token: str,
    payloads: list[dict[str, Any]],
    rate: float,
    *,
    threads: int = 8,
    deadline: float = 300.0,
) -> list[Posted]:
    """POST each payload to /attempts at `rate` per second; returns what was accepted."""
    start = time.time() + 0.2
    todo: queue.Queue[tuple[float, dict[str, Any]] | None] = queue.Queue()
    for i, p in enumerate(payloads):
        todo.put((start + i / rate, p))
    for _ in range(threads):
        todo.put(None)
    out: list[Posted] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + deadline

    def worker() -> None:
        with httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=60.0
        ) as http:
            while (item := todo.get()) is not None and time.monotonic() < stop_at:
                due, payload = item
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)  # pacing the offered load, not synchronisation
                sent = time.time()
                r = http.post("/attempts", json=payload)
                done = time.time()
                with lock:
                    out.append(Posted(payload, sent, done, r.status_code))

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=deadline + 60)
    return out
