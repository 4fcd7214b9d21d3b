"""A `RequestGate` that watches what goes through it, in place of `Governor.further_requests`:
an adapter's test shows which of its requests go within the caller's limits."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator


class WatchingGate:
    """Counts the requests entered (`entered`), the most at once (`most`), and how each
    ended (`ended`: None when it was answered, else what was raised through the gate).
    `spare`: the slots free beside the caller's (`beside`), none by default."""

    def __init__(self, spare: int = 0) -> None:
        self.entered = 0
        self.most = 0
        self.ended: list[BaseException | None] = []
        self.spare = spare
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

    @contextlib.contextmanager
    def beside(self) -> Iterator[bool]:
        if self.spare <= 0:
            yield False
            return
        self.spare -= 1
        try:
            yield True
        finally:
            self.spare += 1
