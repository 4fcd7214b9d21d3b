"""Prometheus metrics: one registry per process.

The delivery engine counts outcomes where they happen:

    from gradesync.adapters import metrics
    metrics.RESULTS_DELIVERED.labels(tenant=key.tenant_id, destination=key.destination_id).inc()
    metrics.DELIVERY_LATENCY.labels(tenant=..., destination=...).observe(seconds)

`gradesync_results_pending` is not counted: it is read from the ledger when scraped, so it is
right across processes and restarts (counters are per process; Prometheus sums them).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from gradesync.adapters.db import schema as t
from gradesync.domain.model import DeliveryState

REGISTRY = CollectorRegistry(auto_describe=True)

_LABELS = ("tenant", "destination")

RESULTS_DELIVERED = Counter(
    "gradesync_results_delivered",
    "Results the destination acknowledged.",
    _LABELS,
    registry=REGISTRY,
)
RESULTS_REJECTED = Counter(
    "gradesync_results_rejected",
    "Results the destination refused (not retried until the facts change).",
    _LABELS,
    registry=REGISTRY,
)
RESULTS_RETRIED = Counter(
    "gradesync_results_retried",
    "Sends that failed transiently and were scheduled again.",
    _LABELS,
    registry=REGISTRY,
)
DELIVERY_LATENCY = Histogram(
    "gradesync_delivery_latency_seconds",
    "From the attempt being stored to the destination acknowledging the result.",
    _LABELS,
    # sub-second is the target; the tail shows retries and pauses
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0),
    registry=REGISTRY,
)

_WAITING = (DeliveryState.PENDING.value, DeliveryState.RETRYING.value)


class PendingCollector(Collector):
    """`gradesync_results_pending{tenant,destination}`: ledger rows waiting to be delivered
    (pending or retrying), counted in the database at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "gradesync_results_pending",
            "Results waiting to be delivered (pending or retrying), from the ledger.",
            labels=list(_LABELS),
        )
        c = t.ledger.c
        q = (
            select(c.tenant_id, c.destination_id, func.count())
            .where(c.state.in_(_WAITING))
            .group_by(c.tenant_id, c.destination_id)
        )
        with self.engine.connect() as conn:
            for tenant, dest, n in conn.execute(q):
                g.add_metric([tenant, dest], float(n))
        yield g


def exposition(engine: Engine) -> bytes:
    """The text exposition: this process's counters plus pending from the database."""
    pending = CollectorRegistry(auto_describe=False)
    pending.register(PendingCollector(engine))
    return generate_latest(REGISTRY) + generate_latest(pending)
