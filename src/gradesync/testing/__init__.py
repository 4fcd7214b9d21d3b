"""Test support shipped with gradesync, for its own tests and for anyone building on it.

- `ManualClock`: time that moves only when the test moves it.
- `wait_for` / `wait_for_async`: wait on a condition, with a deadline only a hang reaches.
- `DoubleFactory` and `Remote` (`gradesync.testing.double`): the strict destination double,
  in memory; `running_gradebook` (`gradesync.testing.http_double`): the same over HTTP, for
  workers in other processes (`gradesync.testing.http_adapter` is their client).
- `add_tenant`, `add_course`, `add_destination`, `post_attempts`: the facts a test starts
  from; `unique`: ids that tests sharing a sandbox or a database do not collide on.

The product never imports this package.
"""

from gradesync.testing.clock import ManualClock
from gradesync.testing.double import DoubleClient, DoubleFactory, Remote
from gradesync.testing.seeding import (
    add_course,
    add_destination,
    add_tenant,
    post_attempts,
    unique,
)
from gradesync.testing.waiting import DEADLINE, wait_for, wait_for_async

TEST_SECRET = "test-secret-key-not-for-production"  # encrypts the secrets of test databases

__all__ = [
    "DEADLINE",
    "TEST_SECRET",
    "DoubleClient",
    "DoubleFactory",
    "ManualClock",
    "Remote",
    "add_course",
    "add_destination",
    "add_tenant",
    "post_attempts",
    "unique",
    "wait_for",
    "wait_for_async",
]
