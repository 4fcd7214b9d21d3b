"""Prometheus metrics: one registry per process.

Counted where things happen, through `PrometheusMeter` (the services' `Meter` port), the web
middleware (requests by route template) and the destinations' shared HTTP client (outbound
requests). Read from the database at scrape time, so they are right across processes and
restarts: the backlog, the age of the oldest waiting result, the paused destinations and the
grades set aside as compute_failed (counters are per process; Prometheus sums them).

Labels stay bounded: tenant and destination ids, reason codes, failure classes, triggers,
outcomes, route templates and status codes; never a learner, course or activity id. A deleted
destination's series go once the engine learns of the deletion (`drop_destinations`), and at
a scrape (`forget_destinations`).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, or_, select

from gradesync.adapters.collector import frozen_objects
from gradesync.adapters.db import schema as t
from gradesync.domain.model import DeliveryState
from gradesync.domain.pauses import PauseCause
from gradesync.services.database_lost import OutageNotice, database_outage

log = logging.getLogger(__name__)

# `*_created` series double the exposition and tell nothing a scrape's own time does not
disable_created_metrics()  # type: ignore[no-untyped-call]  # (unannotated upstream)
REGISTRY = CollectorRegistry(auto_describe=True)
GCCollector(registry=REGISTRY)  # python_gc_*: the cyclic collector's work, per generation

_LABELS = ("tenant", "destination")

# each family's label names, for checking dashboards and alert rules against them
LABELS: dict[str, tuple[str, ...]] = {
    "gradesync_results_pending": _LABELS,
    "gradesync_results_oldest_pending_age_seconds": _LABELS,
    "gradesync_destination_paused": (*_LABELS, "kind", "reason"),
    "gradesync_grades_uncomputed": ("tenant",),
    "gradesync_grades_oldest_uncomputed_age_seconds": ("tenant",),
    "gradesync_grades_not_computed": _LABELS,
    "gradesync_database_up": (),
}


def _counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
    LABELS[name] = labels
    return Counter(name, doc, labels, registry=REGISTRY)


def _histogram(
    name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
) -> Histogram:
    LABELS[name] = labels
    return Histogram(name, doc, labels, buckets=buckets, registry=REGISTRY)


_MAX_CHILDREN = 4096  # label sets kept per metric; beyond, the table starts again

# the label values of each series this process made, by the (tenant, destination) they are
# labelled with: `forget_destinations` removes a deleted destination's through the public
# `remove`, prometheus_client listing no metric's children. Written where the children are
# looked up (`_Children`), under the lock, with the lookup: a series is made and known at once.
_series: dict[tuple[str, str], set[tuple[Counter | Histogram, tuple[str, ...]]]] = {}
_series_lock = threading.Lock()


class _Children:
    """A labelled metric's children by their label values, each looked up once:
    prometheus_client's `labels()` checks the values and takes a lock on every call (about
    4 µs, three times for each result delivered). The child is the same object `labels()`
    returns, so what is counted and exposed is unchanged. `per_destination`: the metric's
    first labels are tenant and destination, and its series are kept in `_series`."""

    def __init__(self, metric: Counter | Histogram, *, per_destination: bool = False) -> None:
        self._metric = metric
        self._per_destination = per_destination
        self._made: dict[tuple[str, ...], Any] = {}

    def get(self, *values: str) -> Any:
        child = self._made.get(values)
        if child is None:
            if len(self._made) >= _MAX_CHILDREN:
                self._made.clear()
            if self._per_destination:
                with _series_lock:
                    child = self._metric.labels(*values)
                    _series.setdefault((values[0], values[1]), set()).add((self._metric, values))
            else:
                child = self._metric.labels(*values)
            self._made[values] = child
        return child

    def forget(self) -> None:
        """Look every child up again: one removed from its metric (`forget_destinations`)
        would go on counting where no scrape reads it."""
        self._made.clear()


RESULTS_DELIVERED = _counter(
    "gradesync_results_delivered",
    "Results the destination acknowledged.",
    _LABELS,
)
RESULTS_REJECTED = _counter(
    "gradesync_results_rejected",
    "Results the destination refused, or whose retries ran out (not sent again until the "
    "facts change), by reason code.",
    (*_LABELS, "reason"),
)
RESULTS_RETRIED = _counter(
    "gradesync_results_retried",
    "Sends that failed transiently and were scheduled again, by failure class (retry_later: "
    "backoff; slow_down: the remote's Retry-After; misconfigured: the destination paused for "
    "its settings, e.g. bad credentials) and reason code.",
    (*_LABELS, "failure_class", "reason"),
)
DELIVERY_LATENCY = _histogram(
    "gradesync_delivery_latency_seconds",
    "From the result becoming pending (its attempt stored and computed) to the destination "
    "acknowledging it; for a retried result, from when it first became pending.",
    _LABELS,
    # sub-second is the target; the tail shows queues and pauses
    (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0),
)
RUNS_FINISHED = _counter(
    "gradesync_runs",
    "Sync runs finished, by trigger (auto, manual, schedule, resync, remaster, repair) and "
    "outcome.",
    ("tenant", "trigger", "outcome"),
)
HTTP_REQUESTS = _counter(
    "gradesync_http_requests",
    "HTTP requests served, by method, route template and status code.",
    ("method", "route", "status"),
)
HTTP_DURATION = _histogram(
    "gradesync_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ("method", "route"),
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
OUTBOUND_REQUESTS = _counter(
    "gradesync_outbound_requests",
    "Requests sent to destinations, by status code (`error`: no answer, e.g. a timeout or a "
    "refused connection).",
    (*_LABELS, "status"),
)
CLAIMS_ENDED = _counter(
    "gradesync_results_claim_ended_before_written",
    "Outcomes of sends not written because their claim had ended first: the result's lease "
    "ran out before its outcome was written (the database away) and it was claimed again, "
    "which sends it again; or a write redone after its commit's answer was lost found them "
    "written already; or gradesync ended the claim so the result goes again (a remaster, a "
    "column deleted at the destination, a learner's new SIS student).",
    (),
)
LEASES_GONE = _counter(
    "gradesync_results_given_back_without_lease",
    "Results let go unsent whose lease was no longer their claim's to give back: given back "
    "already (a write redone after its commit's answer was lost) or taken by another claim. "
    "Nothing is dropped.",
    (),
)

# the children counted for every result (labels in the metric's order: tenant, destination)
_DELIVERED = _Children(RESULTS_DELIVERED, per_destination=True)
_LATENCY = _Children(DELIVERY_LATENCY, per_destination=True)
_OUTBOUND = _Children(OUTBOUND_REQUESTS, per_destination=True)
_REJECTED = _Children(RESULTS_REJECTED, per_destination=True)
_RETRIED = _Children(RESULTS_RETRIED, per_destination=True)
_REQUESTS = _Children(HTTP_REQUESTS)  # and for every request served
_DURATION = _Children(HTTP_DURATION)

# the series labelled by destination, dropped once their destination is gone
_PER_DESTINATION = (_DELIVERED, _LATENCY, _OUTBOUND, _REJECTED, _RETRIED)


def forget_destinations(known: set[tuple[str, str]]) -> int:
    """Drop this process's series labelled by a (tenant, destination) not in `known`: a
    deleted destination's counters would otherwise stay in every scrape, and in memory,
    until the process stops. A live destination's series are never touched, so its counters
    stay monotonic. Returns how many series were dropped."""
    return _drop_series(lambda key: key not in known)


def drop_destinations(gone: Collection[tuple[str, str]]) -> int:
    """Drop this process's series of the (tenant, destination) in `gone` (deleted, as the
    engine learned): a process nobody scrapes drops them too. Returns how many."""
    gone = set(gone)
    return _drop_series(lambda key: key in gone)


def _drop_series(dropped_for: Callable[[tuple[str, str]], bool]) -> int:
    with _series_lock:
        gone = [s for key in [k for k in _series if dropped_for(k)] for s in _series.pop(key)]
        for metric, labelvalues in gone:
            metric.remove(*labelvalues)
    if gone:
        for children in _PER_DESTINATION:
            children.forget()
    return len(gone)


class PrometheusMeter:
    """The services' `Meter`, counted in this process's registry."""

    def result_delivered(
        self, tenant: str, destination: str, latency_seconds: float | None
    ) -> None:
        _DELIVERED.get(tenant, destination).inc()
        if latency_seconds is not None:
            _LATENCY.get(tenant, destination).observe(latency_seconds)

    def result_rejected(self, tenant: str, destination: str, reason: str) -> None:
        _REJECTED.get(tenant, destination, reason).inc()

    def result_retried(
        self, tenant: str, destination: str, failure_class: str, reason: str
    ) -> None:
        _RETRIED.get(tenant, destination, failure_class, reason).inc()

    def run_finished(self, tenant: str, trigger: str, outcome: str) -> None:
        RUNS_FINISHED.labels(tenant=tenant, trigger=trigger, outcome=outcome).inc()

    def destinations_gone(self, keys: Collection[tuple[str, str]]) -> None:
        drop_destinations(keys)

    def claims_ended(self, count: int) -> None:
        CLAIMS_ENDED.inc(count)

    def leases_gone(self, count: int) -> None:
        LEASES_GONE.inc(count)


def count_http(method: str, route: str, status: int, seconds: float) -> None:
    _REQUESTS.get(method, route, str(status)).inc()
    _DURATION.get(method, route).observe(seconds)


def count_outbound(tenant: str, destination: str, status: int | None) -> None:
    _OUTBOUND.get(tenant, destination, "error" if status is None else str(status)).inc()


_WAITING = (DeliveryState.PENDING.value, DeliveryState.RETRYING.value)


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


# a collector is made for each scrape: the outage each database's scrapes met is kept here
_notices: weakref.WeakKeyDictionary[Engine, OutageNotice] = weakref.WeakKeyDictionary()
_notices_lock = threading.Lock()


def _notice(engine: Engine) -> OutageNotice:
    with _notices_lock:
        notice = _notices.get(engine)
        if notice is None:
            notice = _notices[engine] = OutageNotice(log, "metrics", "gauges left out")
        return notice


class LedgerCollector(Collector):
    """Gauges read from the database when scraped:

    Each known destination (tenant for the per-tenant ones) has a series, 0 when it has none.

    - `gradesync_results_pending{tenant,destination}`: the backlog (pending or retrying);
    - `gradesync_results_oldest_pending_age_seconds{tenant,destination}`: since the oldest
      waiting result last changed (became pending, or last failed), 0 with none waiting;
    - `gradesync_destination_paused{tenant,destination,kind,reason}`: 1 per paused
      destination, 0 with empty kind and reason for one not paused; kind `manual` (paused
      by a person, until resumed) or `timed` (the remote's Retry-After, the circuit
      breaker, a misconfiguration, or a timed pause);
      reason the pause's cause (`domain.pauses.PauseCause`: admin, slow_down,
      misconfigured, circuit_open), its text being read where operators read details;
    - `gradesync_grades_uncomputed{tenant}` and
      `gradesync_grades_oldest_uncomputed_age_seconds{tenant}`: grades whose facts changed and
      that are not worked out yet (the dirty keys), and since the oldest was first marked (a
      key marked again while it waits, a new fact or a retry of one that cannot even be set
      aside, keeps its first time: else it would never look old). They are not in the
      ledger's backlog until worked out, so without these a distributed gradesync with no
      worker running looks idle;
    - `gradesync_grades_not_computed{tenant,destination}`: grades set aside because they could
      not be worked out from their facts (ledger rows with the reason `compute_failed`):
      whichever process set them aside (the live worker or a run),
      since when, and right from the first one;
    - `gradesync_database_up`: 1 when they were read, 0 when the database could not be read
      (an outage): that scrape then leaves the gauges above out rather than failing, so the
      process's own counters are still served and the outage itself is a series.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._outage = _notice(engine)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pending = GaugeMetricFamily(
            "gradesync_results_pending",
            "Results waiting to be delivered (pending or retrying), from the ledger.",
            labels=list(LABELS["gradesync_results_pending"]),
        )
        oldest = GaugeMetricFamily(
            "gradesync_results_oldest_pending_age_seconds",
            "Seconds since the oldest waiting result (pending or retrying) last changed.",
            labels=list(LABELS["gradesync_results_oldest_pending_age_seconds"]),
        )
        paused = GaugeMetricFamily(
            "gradesync_destination_paused",
            "1 for each paused destination, with the kind of pause and its cause.",
            labels=list(LABELS["gradesync_destination_paused"]),
        )
        uncomputed = GaugeMetricFamily(
            "gradesync_grades_uncomputed",
            "Grades whose facts changed and that are not worked out yet (before the ledger).",
            labels=list(LABELS["gradesync_grades_uncomputed"]),
        )
        oldest_uncomputed = GaugeMetricFamily(
            "gradesync_grades_oldest_uncomputed_age_seconds",
            "Seconds since the oldest grade not yet worked out was first marked.",
            labels=list(LABELS["gradesync_grades_oldest_uncomputed_age_seconds"]),
        )
        not_computed = GaugeMetricFamily(
            "gradesync_grades_not_computed",
            "Grades set aside because they could not be worked out from their facts (reason "
            "compute_failed), until their facts change or a resync.",
            labels=list(LABELS["gradesync_grades_not_computed"]),
        )
        up = GaugeMetricFamily(
            "gradesync_database_up",
            "1 when this scrape read the gauges from the database, 0 when the database could "
            "not be reached (they are left out of that scrape).",
        )
        try:
            self._read(pending, oldest, paused, uncomputed, oldest_uncomputed, not_computed)
        except Exception as exc:
            if not database_outage(exc):
                raise  # a schema behind, a full disk: a bug's 500 with its traceback
            # no traceback, and one line for the outage, not one a scrape: it is no bug
            self._outage.failed(exc)
            up.add_metric([], 0.0)
            yield up
            return
        self._outage.answered()
        up.add_metric([], 1.0)
        yield up
        yield pending
        yield oldest
        yield paused
        yield uncomputed
        yield oldest_uncomputed
        yield not_computed

    def _read(
        self,
        pending: GaugeMetricFamily,
        oldest: GaugeMetricFamily,
        paused: GaugeMetricFamily,
        uncomputed: GaugeMetricFamily,
        oldest_uncomputed: GaugeMetricFamily,
        not_computed: GaugeMetricFamily,
    ) -> None:
        now = datetime.now(UTC)
        k = t.dirty_keys.c
        # since the first mark: a key marked again while it waits has not been worked out
        u = select(k.tenant_id, func.count(), func.min(k.waiting_since)).group_by(k.tenant_id)
        c = t.ledger.c
        q = (
            select(c.tenant_id, c.destination_id, func.count(), func.min(c.updated_at))
            .where(c.state.in_(_WAITING))
            .group_by(c.tenant_id, c.destination_id)
        )
        d = t.destinations.c
        p = select(d.tenant_id, d.id, d.enabled, d.paused_until, d.pause_cause).where(
            or_(d.enabled.is_(False), d.paused_until.is_not(None))
        )
        f = (
            select(c.tenant_id, c.destination_id, func.count())
            # the index's own condition, as a literal: a bound value could not be proved
            # to match it (`t.ix_ledger_compute_failed`)
            # (a row of that reason is a skipped one)
            .where(t.COMPUTE_FAILED)
            .group_by(c.tenant_id, c.destination_id)
        )
        with self.engine.connect() as conn:
            # every known destination (and tenant) has a series, 0 when it has nothing:
            # a dashboard reads 0, not "no data", and an alert sees the drop to 0
            known = list(conn.execute(select(d.tenant_id, d.id).order_by(d.tenant_id, d.id)))
            # read before this process's series are written (`exposition`): a destination
            # deleted since the last scrape is gone from this one
            forget_destinations({(tenant, dest) for tenant, dest in known})
            tenants = conn.execute(select(t.tenants.c.id)).scalars().all()
            failed = {(tenant, dest): 0 for tenant, dest in known}
            for tenant, dest, n in conn.execute(f):
                failed[(tenant, dest)] = n
            for (tenant, dest), n in sorted(failed.items()):
                not_computed.add_metric([tenant, dest], float(n))
            waiting = {(tenant, dest): (0, None) for tenant, dest in known}
            for tenant, dest, n, since in conn.execute(q):
                waiting[(tenant, dest)] = (n, since)
            for (tenant, dest), (n, since) in sorted(waiting.items()):
                pending.add_metric([tenant, dest], float(n))
                age = 0.0 if since is None else (now - _utc(since)).total_seconds()
                oldest.add_metric([tenant, dest], max(0.0, age))
            causes: dict[tuple[str, str], tuple[str, str]] = {}
            for tenant, dest, enabled, until, cause in conn.execute(p):
                if enabled and (until is None or _utc(until) <= now):
                    continue  # a timed pause that has ended
                kind = "manual" if not enabled else "timed"
                # the cause stored with the pause, not its text: bounded, never a learner's
                # or result's id, whatever words a person chose. None: a platform registered
                # with `enabled` false, a person's pause with no words.
                causes[(tenant, dest)] = (kind, cause or PauseCause.ADMIN.value)
            for tenant, dest in known:
                # not paused: 0 with empty kind and reason, which Prometheus reads as absent
                kind, reason = causes.get((tenant, dest), ("", ""))
                paused.add_metric([tenant, dest, kind, reason], 1.0 if kind else 0.0)
            dirty = {tenant: (0, None) for tenant in tenants}
            for tenant, n, since in conn.execute(u):
                dirty[tenant] = (n, since)
            for tenant, (n, since) in sorted(dirty.items()):
                uncomputed.add_metric([tenant], float(n))
                age = 0.0 if since is None else (now - _utc(since)).total_seconds()
                oldest_uncomputed.add_metric([tenant], max(0.0, age))


class HeapCollector(Collector):
    """The objects a serving process set aside from the cyclic collector when it started
    (`adapters.collector`): 0 in a process that did not."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "gradesync_heap_frozen_objects",
            "Objects set aside from the garbage collector when the process started.",
            value=frozen_objects(),
        )


REGISTRY.register(HeapCollector())


def exposition(engine: Engine) -> bytes:
    """The text exposition: this process's counters plus the gauges read from the database."""
    ledger = CollectorRegistry(auto_describe=False)
    ledger.register(LedgerCollector(engine))
    # the database first: reading the destinations drops the series of those deleted
    from_database = generate_latest(ledger)
    return generate_latest(REGISTRY) + from_database
