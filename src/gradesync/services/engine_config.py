"""The sync engine's knobs, with defaults that suit one process on SQLite and many on
PostgreSQL alike. The runtime fills them from `GRADESYNC_*` settings; tests shrink the times."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from gradesync.domain.ledger import BackoffPolicy


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    threshold: int = 5  # transient failures in a row that open the breaker
    cooldown: timedelta = timedelta(seconds=30)
    max_cooldown: timedelta = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    # how much work one step takes
    compute_batch: int = 500  # dirty keys recomputed per transaction
    claim_batch: int = 100  # ledger rows claimed per transaction
    scope_chunk: int = 500  # learners per transaction when a run recomputes an activity
    # leases: a claimed row is held this long; a send starts only with enough lease left
    lease: timedelta = timedelta(seconds=120)
    min_lease_left: timedelta = timedelta(seconds=45)
    # failures
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    default_retry_after: timedelta = timedelta(seconds=30)  # 429/503 without Retry-After
    misconfigured_pause: timedelta = timedelta(minutes=15)
    # a transient failure the destination ties to one key (one learner's 500) is retried
    # this many times in all, then the key is rejected with the remedy
    per_key_tries: int = 3
    # runs
    heartbeat: timedelta = timedelta(seconds=5)
    stale_after: timedelta = timedelta(seconds=60)  # a run without heartbeat is requeued
    retry_patience: timedelta = timedelta(seconds=30)  # a run waits this long for retries
    verify_max_items: int = 20  # columns read back per run
    # looking for work without being woken (retries due, other processes' requests)
    poll: timedelta = timedelta(seconds=1)
    # a grade whose compute_failed reason cannot even be stored stays marked and is tried
    # again this long after (a timer of its own: not only when something wakes the worker)
    set_aside_retry: timedelta = timedelta(minutes=1)
    # a stopping worker waits this long for its outcomes to be written, then lets them go
    stop_grace: timedelta = timedelta(seconds=10)
    # group commit: the settle writer lets outcomes gather this long before a transaction
    # (a result's send is over by then; only its ledger row waits), unless `settle_batch`
    # are waiting already. One transaction then writes several results instead of one or two.
    # Longer windows, measured side by side (docs/benchmarks-journal.md, "The settle writer's
    # gathering window"): 50 ms spends 10 % less CPU per result but sends about 1 % slower,
    # below 95 % of a saturated LMS's capacity
    settle_gather: timedelta = timedelta(milliseconds=20)
    settle_batch: int = 64
    course_link_ttl: timedelta = timedelta(minutes=5)
    destinations_ttl: timedelta = timedelta(seconds=1)
    # before a send, the destination's pause is re-read unless a read started this recently
    # (0: a read that started after the send was ready), so an admin's pause stops sends
    # within the requests in flight and this long
    pause_check: timedelta = timedelta(milliseconds=50)
    # ... unless changes to destinations are signalled (`destination_signals`, reaching other
    # processes too): then a send uses a read up to this old, the fallback for a change no
    # signal reached
    pause_poll: timedelta = timedelta(seconds=1)
    # many worker processes (PostgreSQL): each destination's limits are shared between the
    # workers alive, counted from heartbeats written every `worker_beat` while sending; a
    # worker not heard from for `worker_alive` is no longer counted
    shared_limits: bool = False
    worker_beat: timedelta = timedelta(seconds=1)
    worker_alive: timedelta = timedelta(seconds=5)
