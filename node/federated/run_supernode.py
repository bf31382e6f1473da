"""A hospital's Flower SuperNode with a resident ClientApp worker and shorter waits.

Run: ``python -m node.federated.run_supernode [--idle-poll S] [--active-window S] [--reply-poll S]
[--worker-poll S] [--pull-backoff S] [--clientapp worker|subprocess] -- <flower-supernode options>``;
:func:`node.federated.supernode.supernode_command` builds that command (for ``metai-node serve``
and deploy's lab alike). It runs Flower 1.41's own ``flower-supernode`` in this process, with
two changes, both without editing Flower:

- ``--clientapp worker`` (the default): the SuperNode runs in Flower's ``--isolation process``
  mode with a SuperExec auth secret made for this start (random, in a private temporary folder
  removed at exit), and instead of ``flower-superexec`` starting one ``flwr-clientapp`` process
  per message, one resident worker (node/federated/worker.py, kept running by
  node/federated/worker_supervisor.py) claims and handles every message. ``subprocess``:
  Flower's own ``--isolation subprocess``, one process per message.
- Flower's fixed waits in its SuperNode loop are shortened while the node is active
  (node/federated/pacing.py): the 3 s idle poll to ``--idle-poll`` for ``--active-window``
  seconds after each message, the 0.5 s reply poll to ``--reply-poll``, the 1 s first back-off
  of its pulls of a message's objects to ``--pull-backoff``; and each stored message wakes the
  worker at once.

``--isolation``, ``--superexec-auth-secret-file`` and the Runtime API's own TLS (``--ssl-*``)
are this module's to decide and refused among the Flower options. The worker reaches the
Runtime API on ``--host``/``--port`` (Flower's defaults when absent; a wildcard host is reached
on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from node.errors import NodeConfigError
from node.federated.pacing import PACING_FIELDS, Pacing

__all__ = ["CLIENTAPP_MODES", "main", "parse_args", "resident_command"]

CLIENTAPP_MODES = ("worker", "subprocess")
_OWN_FLOWER_OPTIONS = ("--isolation", "--superexec-auth-secret-file", "--ssl-certfile", "--ssl-keyfile",
                       "--ssl-ca-certfile")


def resident_command(flower_args: Sequence[str], pacing: Pacing | None = None, *, clientapp: str = "worker",
                     python: Path | None = None) -> list[str]:
    """Return the command that runs a SuperNode through this module (see the module's docstring).

    Parameters:
        flower_args: ``flower-supernode`` options (``--superlink``, ``--host``, ``--port``,
            ``--node-config``, TLS and authentication), without those this module sets.
        pacing: the waits; None: :class:`Pacing`'s defaults.
        clientapp: ``worker`` (one resident process) or ``subprocess`` (Flower's, one per message).
        python: the interpreter (one that can import this repository and flwr); None: this one.

    Raises:
        NodeConfigError: ``clientapp`` is not one of CLIENTAPP_MODES, or ``flower_args`` holds an
            option this module sets.
    """
    _check_flower_args(flower_args)
    if clientapp not in CLIENTAPP_MODES:
        raise NodeConfigError(f"clientapp is {clientapp!r}; expected one of {', '.join(CLIENTAPP_MODES)}")
    return [str(python or sys.executable), "-m", "node.federated.run_supernode", *(pacing or Pacing()).args(),
            f"--clientapp={clientapp}", "--", *flower_args]


def _check_flower_args(flower_args: Sequence[str]) -> None:
    for arg in flower_args:
        if arg.split("=", 1)[0] in _OWN_FLOWER_OPTIONS:
            raise NodeConfigError(f"flower-supernode option {arg.split('=', 1)[0]} is set by "
                                  "node.federated.run_supernode; leave it out")


def _runtime_address(flower_args: Sequence[str]) -> str:
    from flwr.supercore.constant import SUPERNODE_UVICORN_DEFAULT_PORT, UVICORN_DEFAULT_HOST

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--host", default=UVICORN_DEFAULT_HOST)
    parser.add_argument("--port", default=str(SUPERNODE_UVICORN_DEFAULT_PORT))
    known, _ = parser.parse_known_args(list(flower_args))
    host = "127.0.0.1" if known.host in ("0.0.0.0", "", "::") else known.host
    return f"[{host}]:{known.port}" if ":" in host else f"{host}:{known.port}"


def parse_args(argv: Sequence[str]) -> tuple[Pacing, str, list[str]]:
    """Split ``argv`` at ``--``: this module's options (pacing, clientapp mode) and Flower's.

    Raises:
        SystemExit: bad options (argparse's message).
        NodeConfigError: a pacing value out of range or an option this module sets among Flower's.
    """
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    own, flower = argv[:cut], argv[cut + 1:]
    defaults = Pacing()
    parser = argparse.ArgumentParser(prog="python -m node.federated.run_supernode",
                                     description="A Flower SuperNode with a resident ClientApp worker")
    for name in PACING_FIELDS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    parser.add_argument("--clientapp", choices=CLIENTAPP_MODES, default="worker")
    args = parser.parse_args(own)
    _check_flower_args(flower)
    return Pacing(**{name: getattr(args, name) for name in PACING_FIELDS}), args.clientapp, flower


def main(argv: Sequence[str] | None = None) -> None:
    """Run the SuperNode until it is stopped (SIGTERM / Ctrl-C), its worker alongside."""
    import flwr.supernode.start_client_internal as loop
    from flwr.supercore.exit import add_exit_handler
    from flwr.supernode.cli.flower_supernode import flower_supernode

    from node.federated.pacing import install
    from node.federated.worker_supervisor import WorkerSupervisor

    pacing, clientapp, flower_args = parse_args(sys.argv[1:] if argv is None else argv)
    if clientapp == "subprocess":
        install(loop, pacing, on_message=lambda: None)
        sys.argv = ["flower-supernode", *flower_args, "--isolation", "subprocess"]
        flower_supernode()
        return
    private = Path(tempfile.mkdtemp(prefix="metai-supernode-"))  # mode 0700
    try:
        secret = secrets.token_bytes(32)
        secret_file = private / "superexec.secret"
        secret_file.touch(mode=0o600)
        secret_file.write_bytes(secret)
        supervisor = WorkerSupervisor(_runtime_address(flower_args), secret)
        install(loop, pacing, on_message=supervisor.wake)
        add_exit_handler(supervisor.stop)  # Flower's graceful exit (SIGTERM, SIGINT) stops the worker too
        sys.argv = ["flower-supernode", *flower_args, "--isolation", "process",
                    "--superexec-auth-secret-file", str(secret_file)]
        supervisor.start()
        try:
            flower_supernode()
        finally:
            supervisor.stop()
    finally:
        shutil.rmtree(private, ignore_errors=True)


if __name__ == "__main__":
    main()
