"""A `RequestGate` that watches what goes through it, in place of `Governor.further_requests`: an
adapter's test shows which of its requests go within the caller's limits."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator


class WatchingGate:
    """Counts the requests entered (`entered`), the most at once (`most`), and how each
    ended (`ended`: None when it was answered, else what was raised through the gate)."""

    def __init__(self) -> None:
        self.entered = 0
        self.most = 0
        self.ended: list[BaseException | None] = []
        self._inside = 0

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[None]:
        self.entered += 1
        self._inside += 1
        self.most = max(self.most, self._inside)
        try:
            yield
        except BaseException as exc:
            self.ended.append(exc)
            raise
        finally:
            self._inside -= 1
        self.ended.append(None)
