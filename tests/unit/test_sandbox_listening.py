"""The socket the sandbox serves on: bound in the host's own address family, and a host that
is not this machine's refused in one sentence (an IPv6 host did not start at all)."""

from __future__ import annotations

import socket

import pytest

from gradesync.sandbox.cli import StartRefused, listening


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_an_ipv6_host_is_served_on_an_ipv6_socket() -> None:
    if not _ipv6_loopback():  # a machine without ::1: refused in words, never a crash
        with pytest.raises(StartRefused):
            listening("::1", 0)
        return
    sock = listening("::1", 0)
    try:
        assert sock.family == socket.AF_INET6 and sock.getsockname()[0] == "::1"
    finally:
        sock.close()


def test_a_host_not_of_this_machine_is_refused_naming_the_host() -> None:
    with pytest.raises(StartRefused) as refused:
        listening("203.0.113.9", 0)  # TEST-NET-3: never an address of this machine
    assert "cannot listen on 203.0.113.9:0" in str(refused.value)
    assert "--host" in str(refused.value) and "another port" not in str(refused.value)
