"""The figures file (JSON) and a short table (Markdown) from one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TARGETS = {
    "latency_p99_ms": 500.0,  # p99 under 500 ms, first grades of new columns included
    "share_of_capacity": 0.95,  # at least 95 % of what the destination allows
    "ratio_vs_best": 1.1,  # at least 1.1x the best hand-written client, side by side
    "cpu_vs_bare_client": 1.0,  # delivery CPU per result no more than the bare client's
}


def _get(d: dict[str, Any], *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: measured, target, met, and by how much it is missed."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: Any, target: float, higher_is_better: bool, unit: str) -> None:
        if value is None:
            out.append({"target": name, "measured": None, "met": None})
            return
        met = value >= target if higher_is_better else value < target
        miss = None
        if not met:
            miss = (
                f"{(target - value) / target:.0%} below"
                if higher_is_better
                else f"{(value - target) / target:.0%} above"
            )
        out.append(
            {
                "target": name,
                "measured": value,
                "limit": target,
                "unit": unit,
                "met": met,
                "missed_by": miss,
            }
        )

    sq = results.get("sqlite", {})
    add(
        "latency p99 < 500 ms",
        _get(sq, "latency", "accepted_to_stored", "p99_ms"),
        TARGETS["latency_p99_ms"],
        False,
        "ms",
    )
    share = _get(sq, "comparison", "gradesync_share_of_capacity", "median")
    add(
        "throughput >= 95 % of capacity (median of the rounds)",
        share if share is not None else _get(sq, "throughput", "steady_share_of_capacity"),
        TARGETS["share_of_capacity"],
        True,
        "share",
    )
    best = _get(sq, "comparison", "best_hand_written")
    add(
        f"throughput >= 1.1x the best hand-written client ({best}, median of the rounds)",
        _get(sq, "comparison", "ratio_vs_best", "median"),
        TARGETS["ratio_vs_best"],
        True,
        "x",
    )
    cpu = _get(sq, "comparison", "cpu_vs_bare_client")
    leanest = _get(sq, "comparison", "leanest_bare_client")
    out.append(
        {
            "target": f"delivery CPU per result <= the leanest bare client's ({leanest}, medians)",
            "measured": cpu,
            "limit": TARGETS["cpu_vs_bare_client"],
            "unit": "x",
            "met": None if cpu is None else cpu <= TARGETS["cpu_vs_bare_client"],
            "missed_by": (
                None
                if cpu is None or cpu <= TARGETS["cpu_vs_bare_client"]
                else f"{cpu - 1:.0%} above"
            ),
        }
    )
    for db in ("sqlite", "postgres"):
        sent = _get(results, db, "resync", "score_requests_sent")
        if sent is not None:
            out.append(
                {
                    "target": f"no-op resync sends nothing ({db})",
                    "measured": sent,
                    "limit": 0,
                    "met": sent == 0,
                    "missed_by": None if sent == 0 else f"{sent} sent",
                }
            )
    conv = _get(sq, "faults", "converged")
    if conv is not None:
        out.append(
            {
                "target": "faults: final state equals desired state",
                "measured": conv,
                "met": bool(conv),
                "missed_by": None if conv else f"{_get(sq, 'faults', 'wrong_count')} keys differ",
            }
        )
    out.append(remaster_verdict(sq.get("remaster")))
    return out


# Bounded memory: the remaster's peak RSS at the largest size is within this share of the
# peak at the smallest (sizes at least 4x apart); a leak of even 1 kB per result would show.
RSS_BOUND = 1.15


def remaster_verdict(rm: dict[str, Any] | None) -> dict[str, Any]:
    name = "remaster in bounded memory (peak RSS flat in N)"
    summ = (rm or {}).get("summary") or {}
    sizes = summ.get("sizes") or []
    if len(sizes) < 2 or sizes[-1] < 4 * sizes[0]:
        why = "not measured" if not rm else "needs two sizes at least 4x apart (full run)"
        return {"target": name, "measured": None, "met": None, "missed_by": why}
    ratio = summ["peak_ratio_largest_vs_smallest"]
    met = ratio <= RSS_BOUND
    return {
        "target": name,
        "measured": ratio,
        "limit": RSS_BOUND,
        "unit": f"peak RSS at {sizes[-1]:,} / at {sizes[0]:,}",
        "met": met,
        "missed_by": None if met else f"peak grows {summ['rss_mb_per_100k_results']} MB/100k",
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.0%}"


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []
    sb = results.get("sandbox")
    if sb:  # the destination every client sends to, and what it can take at most
        rows.append(
            (
                "sandbox: latency per request, cap, capacity",
                f"{_fmt(sb['latency_ms'])} ms, {sb['cap']} at once, {_fmt(sb['capacity_per_s'])}"
                " results/s",
            )
        )
    for db in ("sqlite", "postgres"):
        r = results.get(db)
        if not isinstance(r, dict):
            continue
        if "skipped" in r:
            rows.append((f"[{db}]", f"skipped: {r['skipped']}"))
            continue
        lat = _get(r, "latency", "accepted_to_stored")
        if lat:
            rows.append(
                (
                    f"[{db}] latency accepted->stored p50/p95/p99",
                    f"{_fmt(lat['p50_ms'])} / {_fmt(lat['p95_ms'])} / {_fmt(lat['p99_ms'])} ms",
                )
            )
            ahead = _get(r, "latency", "link_proof", "line_items_before_first_attempt")
            if ahead is not None:
                rows.append((f"[{db}] line items created before the first attempt", str(ahead)))
            item = _get(r, "latency", "first_grade_of_new_line_item")
            if item and item.get("n"):
                rows.append(
                    (
                        f"[{db}] first grade of a new line item p50/max",
                        f"{_fmt(item['p50_ms'])} / {_fmt(item['max_ms'])} ms",
                    )
                )
            first = _get(r, "latency", "first_grade_of_new_course")
            if first and first.get("n"):
                rows.append(
                    (
                        f"[{db}] first grade of a new course p50/max",
                        f"{_fmt(first['p50_ms'])} / {_fmt(first['max_ms'])} ms",
                    )
                )
        tp = r.get("throughput")
        if tp:
            rows.append(
                (
                    f"[{db}] throughput (steady)",
                    f"{_fmt(tp['steady_rate_per_s'])}/s = {tp['steady_share_of_capacity']:.0%} "
                    f"of capacity {_fmt(tp['capacity_per_s'])}/s",
                )
            )
            rows.append(
                (
                    f"[{db}] gradesync CPU per 1,000 results: delivery / ingest+compute",
                    f"{_fmt(tp['gradesync_cpu_s_per_1000'])} s / "
                    f"{_fmt(tp.get('ingest_and_compute_cpu_s_per_1000'))} s",
                )
            )
        cmp = r.get("comparison") or {}
        for name, c in (cmp.get("clients") or {}).items():
            rate, cpu = c["steady_rate_per_s"], c["cpu_s_per_1000"]
            if not rate.get("n"):
                continue
            rows.append(
                (
                    f"[{db}] {name}: results/s min / median / max ({rate['n']} runs)",
                    f"{_fmt(rate['min'])} / {_fmt(rate['median'])} / {_fmt(rate['max'])}; "
                    f"CPU s per 1,000 median {_fmt(cpu.get('median'))}; CPU pressure "
                    f"(some) median {_pct(c['cpu_pressure_some_share'].get('median'))}",
                )
            )
        ratio = cmp.get("ratio_vs_best") or {}
        if ratio.get("n"):
            rows.append(
                (
                    f"[{db}] gradesync / best hand-written ({cmp['best_hand_written']})",
                    f"{ratio['min']:.2f} / {ratio['median']:.2f} / {ratio['max']:.2f}x",
                )
            )
        if cmp.get("baseline_note"):
            rows.append((f"[{db}] baselines", cmp["baseline_note"]))
        rs = r.get("resync")
        if rs:
            rows.append(
                (
                    f"[{db}] no-op resync ({rs.get('results_in_course')} results)",
                    f"{rs.get('score_requests_sent')} sent, {_fmt(rs.get('seconds'))} s",
                )
            )
        ing = r.get("ingest")
        if ing:
            one = ing.get("one", ing)  # figures before the halves were apart: one, flat
            rows.append(
                (
                    f"[{db}] ingestion (batches of {one['batch_size']})",
                    f"{_fmt(one['attempts_per_s'])} attempts/s committed",
                )
            )
            many = ing.get("concurrent")
            if many:
                rows.append(
                    (
                        f"[{db}] ingestion, {many['clients']} clients at once",
                        f"{_fmt(many['attempts_per_s'])} attempts/s committed",
                    )
                )
        f = r.get("faults")
        if f:
            rows.append(
                (
                    f"[{db}] faults: converged to desired state",
                    f"{f['converged']} in {_fmt(f['seconds_to_converge'])} s "
                    f"({f['keys']} keys, {f['wrong_count']} wrong, "
                    f"{f['duplicate_line_items']} duplicate columns)",
                )
            )
        rm = r.get("remaster")
        for size in (rm or {}).get("per_size", []):
            if "error" in size:
                rows.append(
                    (
                        f"[{db}] SIS remaster of {size['results']:,} results",
                        f"not completed: {size['error']}",
                    )
                )
                continue
            rows.append(
                (
                    f"[{db}] SIS remaster of {size['results']:,} results",
                    f"{_fmt(size['seconds'])} s, {size['resent']:,} re-sent, "
                    f"peak RSS {_fmt(size['peak_rss_mb'])} MB "
                    f"(idle {_fmt(size['rss_idle_mb'])} MB)",
                )
            )
        for size in (r.get("platforms") or {}).get("per_size", []):
            if "error" in size:
                rows.append((f"[{db}] {size['platforms']:,} platforms", size["error"]))
                continue
            rows.append(
                (
                    f"[{db}] {size['platforms']:,} platforms x "
                    f"{size['courses'] // size['platforms']:,} courses",
                    f"{size['results']:,} results at {_fmt(size['rate_per_s'])}/s, "
                    f"{_fmt(size['cpu_ms_per_result'])} ms CPU each, RSS "
                    f"{_fmt(size['rss_before_mb'])} -> {_fmt(size['rss_after_mb'])} MB, "
                    f"{size['tokens_issued']} tokens, connections idle "
                    f"{size['connections_idle']}",
                )
            )
        summ = (rm or {}).get("summary") or {}
        if len(summ.get("sizes") or []) > 1:
            rows.append(
                (
                    f"[{db}] SIS remaster, 1,000,000 results by extrapolation",
                    f"{_fmt(summ['extrapolated_1000000_seconds'])} s, peak RSS "
                    f"{_fmt(summ['extrapolated_1000000_peak_rss_mb'])} MB",
                )
            )
    width = max((len(a) for a, _ in rows), default=10)
    lines = [f"| {'figure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {a.ljust(width)} | {b} |" for a, b in rows]
    v = results.get("verdicts") or []
    if v:
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        for x in v:
            met = (
                "yes"
                if x.get("met")
                else ("no: " + str(x.get("missed_by")) if x.get("met") is False else "-")
            )
            lines.append(f"| {x['target']} | {_fmt(x.get('measured'))} | {met} |")
    return "\n".join(lines)


def write(results: dict[str, Any], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md = out.with_suffix(".md")
    md.write_text(table(results) + "\n")
    return md
