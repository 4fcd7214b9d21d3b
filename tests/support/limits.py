"""Seeing a request wait for its destination's rate limit, without timing it."""

from __future__ import annotations

from functools import partial
from typing import Protocol

import pytest

from gradesync.services.delivery.governor import RateLimiter


class Settable(Protocol):
    def set(self) -> None: ...


def watch_waits(monkeypatch: pytest.MonkeyPatch, waited: Settable) -> None:
    """`waited` is set when a request first waits for a rate limiter's token (an
    `asyncio.Event` in the engine's loop, a `threading.Event` beside a served gradesync);
    limiters made from now on are watched."""

    class Limiter(RateLimiter):
        def try_acquire(self) -> float:
            wait = super().try_acquire()
            if wait > 0:
                waited.set()
            return wait

    monkeypatch.setattr("gradesync.services.delivery.governor.RateLimiter", partial(Limiter))
