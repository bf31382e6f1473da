"""TLS and SuperNode-authentication material for a Flower deployment, made with ``cryptography``.

A private CA signs the SuperLink's certificate (SANs ``127.0.0.1`` and ``localhost`` plus any
``hosts`` you name); SuperNodes and the ``flwr`` CLI trust that CA. Each SuperNode gets a NIST P-384
key pair in OpenSSH encodings, which is what Flower 1.41 reads: ``flower-supernode
--auth-supernode-private-key`` loads an OpenSSH private key and ``flwr supernode register`` an
OpenSSH public key (``ecdsa-sha2-nistp384 ...``). Private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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
        ValueError: a node name is malformed or repeated, or ``days`` is not positive.
    """
    for name in node_names:
        check_node_name(name)
    if len(set(node_names)) != len(node_names):
        raise ValueError(f"SuperNode names repeat: {sorted(node_names)}; give each node its own name")
    if days <= 0:
        raise ValueError(f"days is {days}, expected a positive number of days")
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MeTAI Flower CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )

    server_key = ec.generate_private_key(ec.SECP384R1())
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MeTAI Flower SuperLink")])
    server_cert = (
        _builder(server_name, ca_name, server_key.public_key(), now, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_san(["127.0.0.1", "localhost", *hosts])), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )

    security = FlowerSecurity(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "superlink.pem",
        server_key=directory / "superlink.key",
        supernode_keys={
            name: (directory / f"supernode-{name}.key", directory / f"supernode-{name}.pub") for name in node_names
        },
    )
    _write(security.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(security.server_cert, server_cert.public_bytes(serialization.Encoding.PEM))
    _write(security.server_key, _private_pem(server_key, serialization.PrivateFormat.PKCS8), private=True)
    for private_path, public_path in security.supernode_keys.values():
        private, public = supernode_key_pair()  # the pair a node makes itself (`metai-node federation-key`)
        _write(private_path, private, private=True)
        _write(public_path, public.encode("ascii") + b"\n")
    return security


def check_node_name(name: str) -> None:
    """Refuse a SuperNode name that is not 1-63 letters, digits, ``.``, ``_`` or ``-`` (it names files).

    Raises:
        ValueError: the name is malformed.
    """
    if not _NAME.match(name):
        raise ValueError(f"SuperNode name {name!r} is not 1-63 letters, digits, '.', '_' or '-'; rename it")


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey, now: dt.datetime, days: int
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock differences
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _san(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):  # keep order, drop repeats
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _private_pem(key: ec.EllipticCurvePrivateKey, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
