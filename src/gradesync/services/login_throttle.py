"""Sign-in throttling: after a few failed sign-ins, an account (and, more leniently, an address)
must wait before the next try, the wait doubling with every further failure up to a cap.

An account is a school and a username: a try counts against the account its password was
checked against (the school named, or the one school holding the name when none is named),
whatever was typed in the school field, and waits while it waits. A try that checks no
account (an unknown name, or one held in several schools with no school named) counts under
the name alone.

Tries checked at once count as if one after the other: a try is heard only if it would be
were every try still being checked to fail, so sending many at once gets no more password
checks than sending them in turn.

Kept in the process's memory: a restart forgets it, and each `gradesync serve` process counts
on its own (with N processes an attacker gets at most N times the tries).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gradesync.services.clock import Clock

MAX_TRACKED = 10_000  # keys kept at most; the oldest are forgotten first


@dataclass
class _Record:
    failures: int = 0
    until: datetime | None = None  # no try before this
    pending: int = 0  # tries heard whose password is still being checked


@dataclass(frozen=True, slots=True)
class Limit:
    free: int  # failures allowed before waiting
    base_seconds: float = 1.0
    cap_seconds: float = 900.0

    def wait(self, failures: int) -> float:
        over = failures - self.free
        if over < 0:
            return 0.0
        return min(self.cap_seconds, self.base_seconds * 2.0**over)


ACCOUNT = Limit(free=5)
ADDRESS = Limit(free=20)


class LoginThrottle:
    def __init__(self, clock: Clock, account: Limit = ACCOUNT, address: Limit = ADDRESS) -> None:
        self.clock = clock
        self.limits = {"account": account, "address": address}
        self._records: dict[tuple[str, str], _Record] = {}
        self._lock = threading.Lock()  # sign-ins are answered in several threads at once

    @staticmethod
    def keys(username: str, tenants: Sequence[str], address: str | None) -> list[tuple[str, str]]:
        """The counts a try touches: the account of `username` in each of `tenants` (the
        schools whose account the password is checked against), and the address."""
        name = username.strip().lower()
        out = [("account", f"{tenant}\x1f{name}") for tenant in tenants]
        if address:
            out.append(("address", address))
        return out

    def begin(self, keys: list[tuple[str, str]]) -> int:
        """Whole seconds to wait before another try is heard; 0: this one is heard, and is
        pending on `keys` until `failed`, `succeeded` or `ended` says how it went."""
        with self._lock:  # checked and counted at once: no other try slips in between
            now = self.clock.now()
            wait = max(0, math.ceil(max((self._wait(k, now) for k in keys), default=0.0)))
            if not wait:
                for key in keys:
                    self._record(key).pending += 1
            return wait

    def _wait(self, key: tuple[str, str], now: datetime) -> float:
        record = self._records.get(key)
        if record is None:
            return 0.0
        wait = (record.until - now).total_seconds() if record.until is not None else 0.0
        if record.pending:
            # the tries still being checked may all fail: heard now, this one would have
            # been heard had they failed first
            wait = max(wait, self.limits[key[0]].wait(record.failures + record.pending))
        return wait

    def _record(self, key: tuple[str, str]) -> _Record:
        record = self._records.pop(key, None) or _Record()
        self._records[key] = record  # last used goes to the end
        while len(self._records) > MAX_TRACKED:
            self._records.pop(next(iter(self._records)))
        return record

    def _release(self, key: tuple[str, str]) -> _Record | None:
        record = self._records.get(key)
        if record is not None:
            record.pending = max(0, record.pending - 1)
        return record

    def failed(self, keys: list[tuple[str, str]]) -> None:
        with self._lock:
            now = self.clock.now()
            for key in keys:
                self._release(key)
                record = self._record(key)
                record.failures += 1
                wait = self.limits[key[0]].wait(record.failures)
                record.until = now + timedelta(seconds=wait) if wait else None

    def succeeded(self, keys: list[tuple[str, str]]) -> None:
        """A right password clears the account's count (not the address's)."""
        with self._lock:
            for key in keys:
                record = self._release(key)
                if record is not None and key[0] == "account":
                    record.failures, record.until = 0, None
                if record is not None and not (record.failures or record.pending):
                    self._records.pop(key, None)

    def ended(self, keys: list[tuple[str, str]]) -> None:
        """A try that checked no password after all (an error on the way): neither counts."""
        with self._lock:
            for key in keys:
                record = self._release(key)
                if record is not None and not (record.failures or record.pending):
                    self._records.pop(key, None)
