"""`deploy/`: the Prometheus alert rules and the Grafana dashboard use only metrics that
gradesync exports, with the labels it gives them; the dashboard shows one outcome in one
colour everywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from gradesync.adapters import metrics
from gradesync.adapters.db.database import Database

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "gradesync-alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "gradesync-dashboard.json"
OPERATIONS = DEPLOY.parent / "docs" / "operations.md"

_NAME = re.compile(r"\bgradesync_[a-z0-9_]+")
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")
_BY = re.compile(r"\bby\s*\(([^)]*)\)")
_MATCHER = re.compile(r"\{([^}]*)\}")
# the target labels Prometheus adds to every series it scrapes, `up` included
_TARGET = {"job", "instance"}


def exported(db: Database) -> set[str]:
    text = metrics.exposition(db.engine).decode()
    return {f.name for f in text_string_to_metric_families(text)}


def family_of(name: str, families: set[str]) -> str | None:
    if name in families:
        return name
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in families:
            return name.removesuffix(suffix)
    return None


def labels_of() -> dict[str, set[str]]:
    return {name: set(labels) for name, labels in metrics.LABELS.items()}


def check_expr(expr: str, families: set[str], labels: dict[str, set[str]]) -> list[str]:
    problems = []
    used = set()
    for name in _NAME.findall(expr):
        family = family_of(name, families)
        if family is None:
            problems.append(f"{name} is not exported")
        else:
            used.add(family)
    known = set().union(*(labels.get(f, set()) for f in used)) | {"le"} | _TARGET
    for group in _BY.findall(expr):
        for label in filter(None, (x.strip() for x in group.split(","))):
            if label not in known:
                problems.append(f"by ({label}) in {expr!r}: no such label")
    for group in _MATCHER.findall(expr):
        for matcher in filter(None, (x.strip() for x in group.split(","))):
            label = re.split(r"[=!~]", matcher, maxsplit=1)[0].strip()
            if label != "__name__" and label not in known:
                problems.append(f"{{{label}...}} in {expr!r}: no such label")
    return problems


def test_alert_rules_load_and_use_exported_metrics(sqlite_db: Database) -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    families, labels = exported(sqlite_db), labels_of()
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    names = {r["alert"] for r in alerts}
    for wanted in (
        "GradesyncBacklogGrowing",
        "GradesyncDestinationPaused",
        "GradesyncRejectionRateHigh",
        "GradesyncDatabaseUnavailable",
        "GradesyncTargetDown",
    ):
        assert wanted in names
    problems = []
    for rule in alerts:
        assert set(rule) >= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("info", "warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        problems += check_expr(rule["expr"], families, labels)
    assert not problems, problems


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_dashboard_uses_exported_metrics_in_consistent_colours(sqlite_db: Database) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    families, labels = exported(sqlite_db), labels_of()
    problems = []
    for expr in _exprs(dashboard):
        problems += check_expr(expr.replace("$__range", "1h"), families, labels)
    assert not problems, problems
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
    # every exported result counter and gauge has a panel: the grades not worked out yet
    # and those set aside too (their alerts fire; without them a distributed gradesync with
    # no worker running showed an empty backlog, an idle dashboard)
    shown = {family_of(n, families) for e in _exprs(dashboard) for n in _NAME.findall(e)}
    wanted = {
        "gradesync_results_delivered",
        "gradesync_results_rejected",
        "gradesync_results_retried",
        "gradesync_results_pending",
        "gradesync_results_oldest_pending_age_seconds",
        "gradesync_destination_paused",
        "gradesync_delivery_latency_seconds",
        "gradesync_runs",
        "gradesync_http_requests",
        "gradesync_outbound_requests",
        "gradesync_grades_uncomputed",
        "gradesync_grades_oldest_uncomputed_age_seconds",
        "gradesync_grades_not_computed",
    }
    assert wanted - shown == set()
    # the pickers list a tenant whose grades are not worked out yet (no results yet), and a
    # destination whose grades are set aside
    pickers = {v["name"]: v["query"]["query"] for v in dashboard["templating"]["list"][1:]}
    for name, family in (
        ("tenant", "gradesync_grades_uncomputed"),
        ("destination", "gradesync_grades_not_computed"),
    ):
        pattern = re.search(r'__name__=~"([^"]+)"', pickers[name])
        assert pattern and re.fullmatch(pattern.group(1), family), (name, pickers[name])
    # no panel overlaps another
    cells = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, p["title"]
        cells |= mine
    colours: dict[str, set[str]] = {}
    for p in dashboard["panels"]:
        for o in p["fieldConfig"]["overrides"]:
            for prop in o["properties"]:
                if prop["id"] == "color":
                    colours.setdefault(o["matcher"]["options"], set()).add(
                        prop["value"]["fixedColor"]
                    )
    assert colours["delivered"] == {"green"} and colours["rejected"] == {"red"}


def test_what_lists_paused_destinations_keeps_only_the_paused() -> None:
    """`gradesync_destination_paused` has a 0 series for every destination not paused: an
    alert or panel on it that does not keep the 1s (`== 1`) lists every destination."""
    rules = yaml.safe_load(ALERTS.read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    exprs += _exprs(json.loads(DASHBOARD.read_text()))
    on_paused = [e for e in exprs if "gradesync_destination_paused" in e]
    assert len(on_paused) >= 2, on_paused  # the alert and the dashboard's table
    for expr in on_paused:
        assert re.search(r"(==\s*1|>\s*0)\s*$", expr.strip()), expr


def test_the_metrics_table_in_the_docs_gives_each_family_its_labels(sqlite_db: Database) -> None:
    """docs/operations.md's table of metrics is what queries are written from: each family it
    names is exported, with exactly the labels it lists."""
    text = metrics.exposition(sqlite_db.engine).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    doc = OPERATIONS.read_text()
    table = doc[doc.index("| metric | labels | what |") :].split("\n\n", 1)[0]
    problems = []
    for row in table.splitlines()[2:]:
        names, listed = row.split("|")[1:3]
        documented = {x.strip() for x in listed.split(",") if x.strip()}
        for name in re.findall(r"\b(?:gradesync|python_gc)_[a-z0-9_]+", names):
            family = family_of(name, set(families))
            if family is None:
                problems.append(f"{name} is not exported")
                continue
            # gradesync's families declare their labels; the others show them in samples
            given = set(metrics.LABELS.get(family, ())) or {
                k for s in families[family].samples for k in s.labels
            }
            if documented != given:
                problems.append(f"{name}: documented {sorted(documented)}, has {sorted(given)}")
    assert "gradesync_http_request_duration_seconds" in table
    assert not problems, problems
