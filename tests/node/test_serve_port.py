"""serve's check that the SuperNode's Runtime API port is free: a port in use, and one a killed SuperNode left."""

from __future__ import annotations

import socket

import pytest

from node.errors import NodeConfigError
from node.service import _check_port_free


def _listener() -> socket.socket:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def test_a_port_another_process_listens_on_is_refused_with_the_setting_to_change() -> None:
    with _listener() as server:
        port = server.getsockname()[1]
        with pytest.raises(NodeConfigError, match=rf"cannot listen on 127\.0\.0\.1:{port} .*METAI_NODE_SUPERNODE_PORT"):
            _check_port_free(port)


def test_a_port_whose_listener_died_with_connections_open_is_free() -> None:
    # The listener's side closes first (a SIGKILLed SuperNode): its connections wait in TIME_WAIT
    # on the port, where a gRPC server (SO_REUSEADDR) binds anyway; the check must agree.
    server = _listener()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()
    server.close()
    client.close()
    with socket.socket() as plain, pytest.raises(OSError, match="in use"):
        plain.bind(("127.0.0.1", port))  # the state the check meets: a plain bind is refused
    _check_port_free(port)
