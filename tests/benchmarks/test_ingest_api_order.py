"""`benchmarks.ingest_api` posts each step's batches to both databases; which goes first
alternates, so neither always meets the machine right after the other's batch."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks import ingest_api


def test_step_order_alternates() -> None:
    names = ["postgres", "sqlite"]
    assert [ingest_api.step_order(names, s)[0] for s in range(4)] == [
        "postgres",
        "sqlite",
        "postgres",
        "sqlite",
    ]
    assert ingest_api.step_order(names, 1) == ["sqlite", "postgres"]


class _Pressure:
    @classmethod
    def start(cls) -> _Pressure:
        return cls()

    def stop(self) -> dict[str, Any]:
        return {}


@pytest.mark.parametrize("index", [0, 1])
def test_a_round_posts_in_alternating_order_and_records_it(
    monkeypatch: pytest.MonkeyPatch, index: int
) -> None:
    posted: list[tuple[str, int]] = []
    worlds = {
        name: SimpleNamespace(name=name, gradesync=SimpleNamespace(cpu=lambda: 0.0))
        for name in ("postgres", "sqlite")
    }

    def batches(world: Any, prefix: str, n: int) -> list[Sequence[dict[str, Any]]]:
        return [[{"n": i}] for i in range(n)]

    def side(
        world: Any, work: list[Sequence[dict[str, Any]]], pool: ThreadPoolExecutor
    ) -> tuple[float, list[float]]:
        posted.append((world.name, work[0][0]["n"]))
        return 0.01, [0.01] * len(work)

    monkeypatch.setattr(ingest_api, "_batches", batches)
    monkeypatch.setattr(ingest_api, "_side", side)
    monkeypatch.setattr(ingest_api.pressure, "Window", _Pressure)

    out = ingest_api._round(worlds, 3, 2, "t", index)  # type: ignore[arg-type]

    a, b = ("postgres", "sqlite") if index == 0 else ("sqlite", "postgres")
    assert out["one"]["first"] == [a, b, a]
    assert out["concurrent"]["first"] == [a, b, a]
    # every step's batches went to both, the recorded one first
    one = posted[:6]
    assert one == [(a, 0), (b, 0), (b, 1), (a, 1), (a, 2), (b, 2)]
    concurrent = posted[6:]
    assert [name for name, _ in concurrent] == [a, b, b, a, a, b]
    assert [n for _, n in concurrent] == [0, 0, 2, 2, 4, 4]
