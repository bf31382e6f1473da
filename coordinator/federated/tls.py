"""TLS certificates of a federation, made and checked with ``cryptography``.

A consortium CA (NIST P-384, SHA-384) signs the coordinator's server certificate for the DNS names
and IP addresses hospitals reach its Fleet gateway at; hospitals get the CA certificate only.
The managed SuperLink behind the gateway listens on loopback with a certificate of its own, made by
the service at every start from a CA that never leaves the coordinator host
(:mod:`coordinator.federated.managed`). ``python -m deploy certs`` makes the consortium's files
with :func:`make_ca` and :func:`make_server_certificate`; the service checks them at start with
:func:`check_server_files`. Private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import errno
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from coordinator.errors import CoordinatorConfigError

__all__ = ["Issued", "ServerNames", "check_server_files", "load_certificate", "make_ca", "make_server_certificate",
           "names_of", "write_certificate", "write_issued", "write_new"]


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class ServerNames:
    """What a server certificate covers, and until when."""

    dns: tuple[str, ...]
    ips: tuple[str, ...]
    not_after: dt.datetime


def make_ca(common_name: str, *, days: int) -> Issued:
    """Make a self-signed CA that signs server certificates only (path length 0).

    Raises:
        ValueError: ``days`` is not positive or ``common_name`` is empty.
    """
    _check(common_name, days)
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        _builder(name, name, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )
    return Issued(certificate, key)


def make_server_certificate(
    ca: Issued, *, dns: Sequence[str] = (), ips: Sequence[str] = (), common_name: str, days: int
) -> Issued:
    """Make a TLS server certificate signed by ``ca`` for the DNS names ``dns`` and IP addresses ``ips``.

    Raises:
        ValueError: no name at all, an IP address that does not parse, a DNS name that is an IP
            address or holds characters a host name cannot, or ``days`` not positive.
    """
    _check(common_name, days)
    alternative = _alternative_names(dns, ips)
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        _builder(subject, ca.certificate.subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA384())
    )
    return Issued(certificate, key)


def write_issued(issued: Issued, certificate: Path, key: Path, *, replace: bool = False) -> None:
    """Write the certificate (PEM, mode 0644) and its unencrypted PKCS#8 key (PEM, mode 0600).

    Raises:
        FileExistsError: a file is there already and ``replace`` is false.
    """
    if not replace:
        for path in (certificate, key):
            if path.exists():
                raise FileExistsError(errno.EEXIST, "exists already; move it away or write elsewhere", str(path))
    certificate.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    private = issued.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
    write_new(key, private, 0o600)
    write_new(certificate, issued.certificate.public_bytes(serialization.Encoding.PEM), 0o644)


def write_certificate(certificate: x509.Certificate, path: Path) -> None:
    """Write ``certificate`` alone (PEM, mode 0644), replacing a file there: a CA certificate to hand out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_new(path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` afresh with exactly ``mode``, whatever the umask (a file there before is removed first)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o600)  # never wider than the owner's while written
    with os.fdopen(fd, "wb") as out:
        os.fchmod(fd, mode)  # the umask narrowed the creation mode: a certificate is meant to be world-readable
        out.write(data)


def load_certificate(path: Path, what: str) -> x509.Certificate:
    """Read the first PEM certificate of ``path``.

    Raises:
        CoordinatorConfigError: the file is missing or holds no PEM certificate.
    """
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())[0]
    except FileNotFoundError:
        raise CoordinatorConfigError(f"{what} {path} does not exist; point the setting at the PEM file") from None
    except (OSError, ValueError) as exc:
        raise CoordinatorConfigError(f"{what} {path} is not a PEM certificate ({exc})") from None


def names_of(certificate: x509.Certificate) -> ServerNames:
    """The DNS names and IP addresses a certificate's subject alternative names hold, and its expiry."""
    try:
        alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ServerNames((), (), certificate.not_valid_after_utc)
    return ServerNames(tuple(alternative.get_values_for_type(x509.DNSName)),
                       tuple(str(ip) for ip in alternative.get_values_for_type(x509.IPAddress)),
                       certificate.not_valid_after_utc)


def check_server_files(certificate: Path, key: Path, ca: Path) -> ServerNames:
    """Check that the server certificate is valid now, signed by ``ca``, names hosts, and matches ``key``.

    Returns:
        The names it covers.

    Raises:
        CoordinatorConfigError: a file is missing or unreadable, or one of the checks fails
            (the message names the file and what to do).
    """
    cert, authority = load_certificate(certificate, "METAI_COORDINATOR_FLEET_CERT"), load_certificate(
        ca, "METAI_COORDINATOR_FLEET_CA")
    try:
        private = serialization.load_pem_private_key(key.read_bytes(), None)
    except FileNotFoundError:
        raise CoordinatorConfigError(f"METAI_COORDINATOR_FLEET_KEY {key} does not exist; point it at the server "
                                     "certificate's private key") from None
    except (OSError, ValueError, TypeError) as exc:
        raise CoordinatorConfigError(f"METAI_COORDINATOR_FLEET_KEY {key} is not an unencrypted PEM private key "
                                     f"({exc})") from None
    if private.public_key() != cert.public_key():
        raise CoordinatorConfigError(f"METAI_COORDINATOR_FLEET_KEY {key} is not the key of the certificate "
                                     f"{certificate}; give the key made with it")
    try:
        cert.verify_directly_issued_by(authority)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CoordinatorConfigError(f"METAI_COORDINATOR_FLEET_CERT {certificate} was not issued by the CA "
                                     f"{ca} ({type(exc).__name__}: {exc}); hospitals trust that CA, so make the "
                                     "certificate with it (python -m deploy certs server)") from None
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        since, until = f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M}", f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M}"
        raise CoordinatorConfigError(f"METAI_COORDINATOR_FLEET_CERT {certificate} is valid from {since} to {until} "
                                     "UTC, not now; make a new one")
    names = names_of(cert)
    if not names.dns and not names.ips:
        raise CoordinatorConfigError(f"METAI_COORDINATOR_FLEET_CERT {certificate} names no DNS name or IP address "
                                     "(subject alternative names), so no hospital can verify it; make it with "
                                     "--dns / --ip")
    return names


def _check(common_name: str, days: int) -> None:
    if days <= 0:
        raise ValueError(f"days is {days}, expected a positive number of days")
    if not common_name.strip():
        raise ValueError("the common name is empty; give the certificate a name")


def _alternative_names(dns: Sequence[str], ips: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys(dns):
        try:
            ipaddress.ip_address(name)
        except ValueError:
            pass
        else:
            raise ValueError(f"{name!r} is an IP address; pass it with --ip, not --dns")
        label = name.removeprefix("*.")
        if not label or not all(part and part.replace("-", "").isalnum() and part.isascii()
                                for part in label.split(".")):
            raise ValueError(f"{name!r} is not a DNS name (letters, digits and '-' between dots)")
        names.append(x509.DNSName(name.lower()))
    for text in dict.fromkeys(ips):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(text)))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address (e.g. 10.77.0.2 or fd00::2)") from None
    if not names:
        raise ValueError("the certificate names no host: give at least one DNS name or IP address")
    return names


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
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
