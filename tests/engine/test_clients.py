"""One destination client per destination, rebuilt when its settings change."""

from __future__ import annotations

import asyncio
import gc
import weakref
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
    fingerprint = clients_module.settings_fingerprint

    def counted(d: Destination) -> str:
        fingerprinted.append(d)
        return fingerprint(d)

    monkeypatch.setattr(clients_module, "settings_fingerprint", counted)

    def factory(d: Destination) -> Any:
        built.append(d)
        return _Client()

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


class _Client:
    closed = False

    async def aclose(self) -> None:
        self.closed = True


def test_a_client_replaced_by_new_settings_is_dropped_once_unused_and_closed_if_still_used() -> (
    None
):
    """Every client replaced by new settings was kept until the process stopped: one per
    settings change, for good. One no send holds any more is dropped; one still in use when
    the process stops is closed with the others."""
    clients = Clients(lambda d: _Client())
    d = Destination("t1", "lms", DestinationKind.LTI13_AGS, "LMS", config={"concurrency": 1})
    first = weakref.ref(clients.get(d))
    for n in range(2, 50):
        clients.get(replace(d, config={"concurrency": n}))
    in_use = clients.get(replace(d, config={"concurrency": 50}))  # a send still holds it
    current = clients.get(replace(d, config={"concurrency": 51}))
    gc.collect()
    assert first() is None  # replaced and unused: gone
    asyncio.run(clients.aclose())
    assert in_use.closed and current.closed
