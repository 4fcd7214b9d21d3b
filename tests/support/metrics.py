"""Reading a served gradesync's `/metrics` as a scraper would."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.support.served import Served


def samples(text: str, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    """Samples called `name` whose labels include `labels`."""
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and labels.items() <= s.labels.items():
                out.append((s.labels, s.value))
    return out


def value(text: str, name: str, **labels: str) -> float:
    return sum(v for _, v in samples(text, name, **labels))


def scrape(gs: Served) -> str:
    r = gs.api.get(gs.base_url + "/metrics")
    assert r.status_code == 200
    return r.text
