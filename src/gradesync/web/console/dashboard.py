"""Dashboard: delivery latency and throughput over time, and success and rejection rates
per destination, as pictures (server-side SVG) with the same numbers in tables."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from gradesync.domain.destination_names import DELETED_MARK
from gradesync.domain.model import ConsoleUser
from gradesync.services import console_queries as cq
from gradesync.web.console.charts import (
    DELIVERED,
    REJECTED,
    SENT,
    Series,
    line_chart,
    rate_bars,
    short_label,
)
from gradesync.web.console.common import admin_user, render, runtime_of

router = APIRouter()

WINDOWS = {
    "1h": (timedelta(hours=1), 12),
    "24h": (timedelta(hours=24), 24),
    "7d": (timedelta(days=7), 28),
}


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f} ms"


# attempts are worked out into grades within seconds; this long means no worker does it
STUCK_AFTER = timedelta(minutes=2)


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(
    request: Request, window: str = "24h", user: ConsoleUser = Depends(admin_user)
) -> HTMLResponse:
    if window not in WINDOWS:
        window = "24h"
    span, buckets = WINDOWS[window]
    rt = runtime_of(request)
    now = rt.clock.now()
    data = cq.dashboard(rt.uow, user.tenant_id, now, window=span, buckets=buckets)
    backlog = cq.backlog(rt.uow, user.tenant_id, now)
    fmt = "%H:%M" if span <= timedelta(days=1) else "%m-%d %H:%M"
    labels = [b.start.strftime(fmt) for b in data.buckets]
    per_minute = data.bucket.total_seconds() / 60
    latency = line_chart(
        "Delivery latency",
        f"Time the gradebooks took to answer each grade, per {per_minute:g} minutes over the "
        f"last {window} (times in UTC): median {_ms(data.p50_ms)}, 95th percentile "
        f"{_ms(data.p95_ms)}, 99th percentile {_ms(data.p99_ms)}.",
        labels,
        [
            Series("median", [b.p50_ms for b in data.buckets]),
            Series("95th percentile", [b.p95_ms for b in data.buckets]),
            Series("99th percentile", [b.p99_ms for b in data.buckets]),
        ],
        unit=" ms",
    )
    busiest = max(data.buckets, key=lambda b: b.sends, default=None)
    throughput = line_chart(
        "Grades sent",
        f"Grades sent per {per_minute:g} minutes over the last {window} (times in UTC): "
        f"{data.sends} in all"
        + (
            f", most ({busiest.sends}) in the slot starting {busiest.start:%Y-%m-%d %H:%M} UTC."
            if busiest and busiest.sends
            else "."
        ),
        labels,
        [
            Series("sent", [float(b.sends) for b in data.buckets], SENT),
            Series("delivered", [float(b.delivered) for b in data.buckets], DELIVERED),
            Series("rejected", [float(b.rejected) for b in data.buckets], REJECTED),
        ],
    )
    rates = rate_bars(
        "Outcome per destination",
        "Share of sends each destination accepted and rejected over the last "
        f"{window}: "
        + "; ".join(
            f"{d.shown} {d.success_rate:.0%} delivered, {d.rejection_rate:.0%} rejected"
            for d in data.destinations
        )
        + ("." if data.destinations else "no sends."),
        # a deleted one's long name is cut, never its mark
        [
            (
                short_label(d.name, DELETED_MARK if d.deleted else ""),
                d.success_rate,
                d.rejection_rate,
            )
            for d in data.destinations
        ],
    )
    return render(
        request,
        "console/dashboard.html",
        user,
        nav="dashboard",
        data=data,
        backlog=backlog,
        stuck=backlog.to_compute_since is not None and now - backlog.to_compute_since > STUCK_AFTER,
        now=now,
        window=window,
        windows=list(WINDOWS),
        latency=latency,
        throughput=throughput,
        rates=rates,
        ms=_ms,
    )
