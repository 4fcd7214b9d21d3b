"""One destination client per destination, rebuilt when its settings change."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gradesync.domain.model import Destination, DestinationKind
from gradesync.services.delivery import clients as clients_module
from gradesync.services.delivery.clients import Clients


def test_a_client_is_kept_while_its_destination_is_unchanged_and_rebuilt_when_it_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[Destination] = []
    fingerprinted: list[Destination] = []
    fingerprint = clients_module._fingerprint

    def counted(d: Destination) -> str:
        fingerprinted.append(d)
        return fingerprint(d)

    monkeypatch.setattr(clients_module, "_fingerprint", counted)

    def factory(d: Destination) -> Any:
        built.append(d)
        return object()

    clients = Clients(factory)
    d = Destination("t1", "lms", DestinationKind.LTI13_AGS, "LMS", config={"concurrency": 4})
    first = clients.get(d)
    assert clients.get(d) is first and clients.get(d) is first
    assert len(fingerprinted) == 1  # the same object again: no fingerprint (once per row)
    # read again from the database: another object, the same settings
    assert clients.get(replace(d, config=dict(d.config))) is first
    assert len(built) == 1
    # a setting or the secret changed: a new client
    changed = clients.get(replace(d, config={"concurrency": 8}))
    assert changed is not first and len(built) == 2
    assert (
        clients.get(replace(d, config={"concurrency": 8}, secret={"private_key": "k"}))
        is not changed
    )
    assert len(built) == 3
    # and back to the first object: its settings are not the client's now, so a new one
    assert clients.get(d) is not first and len(built) == 4
