"""The ``flwr`` CLI's connection to a SuperLink started here, and the registration of SuperNode keys with it.

Submitting and following runs is the coordinator's code (:mod:`coordinator.federated.superlink`);
this module only adds what a local bring-up knows: the :class:`SuperLinkProcess` it started and
the :class:`FlowerSecurity` it made. See docs/flower.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from coordinator.federated.superlink import FlowerRunError, SuperLinkConnection, flwr, write_connection
from deploy.flower.processes import SuperLinkProcess, check_security
from deploy.flower_certs import FlowerSecurity

__all__ = ["connection_of", "register_supernodes", "write_federation_config"]


def connection_of(superlink: SuperLinkProcess, security: FlowerSecurity | None) -> SuperLinkConnection:
    """How the flwr CLI reaches ``superlink``'s Control API.

    Raises:
        ValueError: ``security`` does not match how the SuperLink was started.
    """
    check_security(superlink, security)
    return SuperLinkConnection(superlink.control_address, security.ca_cert.resolve() if security else None)


def write_federation_config(
    flwr_home: Path,
    name: str,
    superlink: SuperLinkProcess,
    security: FlowerSecurity | None,
    *,
    make_default: bool = True,
) -> None:
    """Add (or replace) SuperLink connection ``name`` to ``superlink`` in ``flwr_home/config.toml``.

    See :func:`coordinator.federated.superlink.write_connection`.

    Raises:
        ValueError: ``name`` is not a bare TOML key, or ``security`` does not match how the
            SuperLink was started.
    """
    write_connection(flwr_home, name, connection_of(superlink, security), make_default=make_default)


def register_supernodes(
    superlink: SuperLinkProcess, security: FlowerSecurity, names: Sequence[str], flwr_home: Path
) -> None:
    """Register the public keys of SuperNodes ``names`` with ``superlink`` (``flwr supernode register``).

    Only registered keys may connect to a SuperLink started with ``security``. The CLI talks to
    the Control API through a connection named ``registration`` in ``flwr_home/config.toml``.

    Raises:
        KeyError: a name has no key pair in ``security``.
        ValueError: ``superlink`` was started without TLS.
        FlowerRunError: the SuperLink refused a key (the CLI's output is quoted).
    """
    keys = [security.keys_of(name) for name in names]
    if superlink.ca_cert is None:
        raise ValueError("the SuperLink runs without TLS, which admits any SuperNode: start it with security=")
    write_federation_config(flwr_home, "registration", superlink, security, make_default=False)
    for name, (_, public_key) in zip(names, keys, strict=True):
        cmd = ["supernode", "register", str(public_key), "registration", "--name", name, "--format", "json"]
        out = flwr(cmd, flwr_home, what=f"registering SuperNode {name!r}")
        if not out.get("success") or not out.get("node-id"):
            raise FlowerRunError(f"registering SuperNode {name!r} failed: {out}")
