"""Background processes of the deploy tools: spawn with a log file, find their children, stop them by PID.

The helpers themselves are the coordinator's (:mod:`coordinator.federated.processes`: the
coordinator service supervises its SuperLink and Fleet gateway with them); this module re-exports
them for deploy and adds the loopback address and free ports of a local bring-up. Linux only (``/proc``).
"""

from __future__ import annotations

import socket

from coordinator.federated.processes import (
    as_user,
    clean,
    descendants,
    is_gone,
    read_log,
    spawn,
    start_time,
    stop_tree,
    tail,
    tail_text,
    terminate,
)

__all__ = [
    "HOST",
    "as_user",
    "clean",
    "descendants",
    "free_port",
    "free_ports",
    "is_gone",
    "read_log",
    "spawn",
    "start_time",
    "stop_tree",
    "tail",
    "tail_text",
    "terminate",
]

HOST = "127.0.0.1"  # the only address anything here binds


def free_port() -> int:
    """Ask the kernel for a free TCP port on 127.0.0.1."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Ask the kernel for ``count`` different free TCP ports on 127.0.0.1.

    The ports are held together while they are chosen: :func:`free_port` called twice may give the
    same port twice, which a service with several listeners refuses.
    """
    held = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in held:
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()
