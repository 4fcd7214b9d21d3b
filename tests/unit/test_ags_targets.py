"""The AGS clients keep the URLs they checked and parsed for the whole process together,
bounded: a vendor's thousands of platforms each sending once must not leave their URLs in
memory for good, and a URL checked for one platform is never taken unchecked for another."""

from __future__ import annotations

import httpx
import pytest

from gradesync.adapters.destinations import ags
from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.domain.model import Destination, DestinationKind
from gradesync.services.destination import RemoteFailure

_CONTEXT = DestinationContext(http=httpx.AsyncClient())  # never used to send here


def _client(k: int) -> ags.AgsClient:
    host = f"https://lms{k}.example.edu"
    destination = Destination(
        "t",
        f"lms{k}",
        DestinationKind.LTI13_AGS,
        f"LMS {k}",
        config={
            "issuer": host,
            "client_id": f"tool-{k}",
            "auth_token_url": f"{host}/token",
        },
    )
    return ags.build(destination, _CONTEXT)


def test_the_urls_kept_parsed_are_bounded_over_every_platform() -> None:
    ags._TARGETS.clear()
    for k in range(ags._MAX_TARGETS // 10 + 50):
        client = _client(k)
        for j in range(10):  # a score URL per column
            url = f"https://lms{k}.example.edu/courses/{j}/lineitems/{j}/scores"
            assert str(client._target(url, "lineitem")) == url
    assert len(ags._TARGETS) <= ags._MAX_TARGETS


def test_a_url_checked_for_one_platform_is_checked_again_for_another() -> None:
    ags._TARGETS.clear()
    url = "https://lms1.example.edu/courses/1/lineitems/1/scores"
    assert str(_client(1)._target(url, "lineitem")) == url
    with pytest.raises(RemoteFailure) as refused:
        _client(2)._target(url, "lineitem")
    assert refused.value.code == "foreign_url"
