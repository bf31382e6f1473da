"""TLS and SuperNode-authentication material for a Flower lab on one machine, made with ``cryptography``.

A private CA signs the SuperLink's certificate (SANs ``127.0.0.1`` and ``localhost`` plus any
``hosts`` you name; made with :mod:`coordinator.federated.tls`); SuperNodes and the ``flwr`` CLI
trust that CA. Each SuperNode gets a NIST P-384 key pair in OpenSSH encodings, which is what
Flower 1.41 reads: ``flower-supernode --auth-supernode-private-key`` loads an OpenSSH private
key and ``flwr supernode register`` an OpenSSH public key (``ecdsa-sha2-nistp384 ...``).
Private keys are written with mode 0600. A real deployment's consortium CA and coordinator
certificate come from ``python -m deploy certs`` (:mod:`deploy.certs`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from coordinator.federated.tls import make_ca, make_server_certificate, write_certificate, write_issued, write_new
from node.federation_key import supernode_key_pair

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class FlowerSecurity:
    """Where the TLS and SuperNode-authentication files are.

    ``supernode_keys`` maps a node name to (private key, public key): the private key is an
    OpenSSH-format PEM block (``BEGIN OPENSSH PRIVATE KEY``), the public key one OpenSSH line.
    """

    ca_cert: Path
    server_cert: Path
    server_key: Path
    supernode_keys: dict[str, tuple[Path, Path]]

    def keys_of(self, name: str) -> tuple[Path, Path]:
        """Return (private key, public key) of SuperNode ``name``.

        Raises:
            KeyError: no key pair was made for ``name`` (the message lists the known names).
        """
        try:
            return self.supernode_keys[name]
        except KeyError:
            known = ", ".join(sorted(self.supernode_keys)) or "none"
            raise KeyError(f"no SuperNode key pair named {name!r} (known: {known}); add it to make_security") from None


def make_security(
    directory: Path, node_names: Sequence[str], *, hosts: Sequence[str] = (), days: int = 365
) -> FlowerSecurity:
    """Create a CA, a SuperLink certificate and one authentication key pair per SuperNode.

    Parameters:
        directory: where the files go (created if needed); existing files are overwritten.
        node_names: SuperNode names, each 1-63 characters of letters, digits, ``.``, ``_``, ``-``.
        hosts: extra DNS names or IP addresses the SuperLink certificate must cover.
        days: validity of the CA and server certificates.

    Returns:
        The paths of everything written.

    Raises:
        ValueError: a node name is malformed or repeated, a host is neither an IP address nor a
            DNS name, or ``days`` is not positive.
    """
    for name in node_names:
        check_node_name(name)
    if len(set(node_names)) != len(node_names):
        raise ValueError(f"SuperNode names repeat: {sorted(node_names)}; give each node its own name")
    directory.mkdir(parents=True, exist_ok=True)
    ips, dns = [], []
    for host in ["127.0.0.1", "localhost", *hosts]:
        try:
            ips.append(str(ipaddress.ip_address(host)))
        except ValueError:
            dns.append(host)
    ca = make_ca("MeTAI Flower CA", days=days)
    server = make_server_certificate(ca, dns=dns, ips=ips, common_name="MeTAI Flower SuperLink", days=days)

    security = FlowerSecurity(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "superlink.pem",
        server_key=directory / "superlink.key",
        supernode_keys={
            name: (directory / f"supernode-{name}.key", directory / f"supernode-{name}.pub") for name in node_names
        },
    )
    write_certificate(ca.certificate, security.ca_cert)
    write_issued(server, security.server_cert, security.server_key, replace=True)
    for private_path, public_path in security.supernode_keys.values():
        private, public = supernode_key_pair()  # the pair a node makes itself (`metai-node federation-key`)
        write_new(private_path, private, 0o600)
        write_new(public_path, public.encode("ascii") + b"\n", 0o644)
    return security


def check_node_name(name: str) -> None:
    """Refuse a SuperNode name that is not 1-63 letters, digits, ``.``, ``_`` or ``-`` (it names files).

    Raises:
        ValueError: the name is malformed.
    """
    if not _NAME.match(name):
        raise ValueError(f"SuperNode name {name!r} is not 1-63 letters, digits, '.', '_' or '-'; rename it")
