"""The guard of tests/conftest.py: a name lookup beyond this machine is refused and recorded."""

from __future__ import annotations

import socket

import pytest

from tests import conftest


def test_a_lookup_beyond_this_machine_is_refused_and_recorded() -> None:
    before = len(conftest._OUTSIDE)
    for host in ("github.com", "telemetry.flower.ai", "192.0.2.1", b"example.org"):
        with pytest.raises(socket.gaierror, match="the tests resolve loopback names only"):
            socket.getaddrinfo(host, 443)
    recorded = conftest._OUTSIDE[before:]
    del conftest._OUTSIDE[before:]  # refused on purpose: the autouse check must not fail this test
    assert recorded == ["github.com", "telemetry.flower.ai", "192.0.2.1", "b'example.org'"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", None])
def test_loopback_resolves(host: str | None) -> None:
    assert socket.getaddrinfo(host, 80, proto=socket.IPPROTO_TCP)
