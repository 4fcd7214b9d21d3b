"""A worker's own `/metrics` (`gradesync worker --metrics-address`): the address setting, the
server that answers scrapes, its token. The end-to-end scrape of two real workers is in
tests/engine/test_processes.py."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from gradesync.adapters.metrics_server import MetricsServer
from gradesync.config import Settings, host_and_port


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        (":9464", ("0.0.0.0", 9464)),
        ("[::1]:0", ("::1", 0)),
        ("metrics.internal:80", ("metrics.internal", 80)),
    ],
)
def test_an_address_is_host_and_port(address: str, expected: tuple[str, int]) -> None:
    assert host_and_port(address) == expected


@pytest.mark.parametrize("address", ["9464", "host:", "host:port", "host:70000"])
def test_a_bad_address_is_refused_naming_the_setting(address: str) -> None:
    with pytest.raises(ValidationError, match=r"worker_metrics_address: .* is not HOST:PORT"):
        Settings(worker_metrics_address=address)


def test_the_server_answers_metrics_behind_its_token_and_nothing_else() -> None:
    scrapes: list[int] = []

    def render() -> bytes:
        scrapes.append(1)
        return b"gradesync_results_delivered_total 3.0\n"

    server = MetricsServer("127.0.0.1", 0, render, "scrape-me")
    try:
        assert httpx.get(server.url).status_code == 401
        bearer = {"Authorization": "Bearer scrape-me"}
        assert httpx.get(server.url, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert scrapes == []  # nothing is rendered for a refused scrape
        r = httpx.get(server.url, headers=bearer)
        assert r.status_code == 200 and r.text == "gradesync_results_delivered_total 3.0\n"
        assert r.headers["content-type"].startswith("text/plain; version=")
        assert httpx.get(server.url.replace("/metrics", "/"), headers=bearer).status_code == 404
    finally:
        server.close()
    with pytest.raises(httpx.ConnectError):  # closed: the port is given back
        httpx.get(server.url, headers=bearer)


def test_without_a_token_the_metrics_are_open() -> None:
    server = MetricsServer("127.0.0.1", 0, lambda: b"x 1.0\n", None)
    try:
        assert httpx.get(server.url).text == "x 1.0\n"
    finally:
        server.close()
