"""The hospital's SuperNode authentication key: made on the hospital host, only its public half leaves it.

A consortium's SuperLink runs with SuperNode authentication: it admits a SuperNode only if the
coordinator operator registered its public key (``flwr supernode register``). The key pair is
a NIST P-384 ECDSA pair in OpenSSH encodings, which is what Flower 1.41 reads (the SuperNode's
``--auth-supernode-private-key`` loads the OpenSSH private key; ``flwr supernode register``
takes the one-line public key ``ecdsa-sha2-nistp384 ...``).

The node keeps both in ``<node>/federation/``: ``supernode.key`` (mode 0600; Flower reads it
unencrypted, so the node directory's own permissions, 0700, and the host's disk protect it) and
``supernode.pub``. :func:`federation_key` makes them once and afterwards only reads them, so the
public key the operator registered stays the one the SuperNode presents.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from node.errors import NodeError

__all__ = ["FEDERATION_DIR", "FederationKey", "FederationKeyError", "federation_key", "key_pair", "public_line_of",
           "supernode_key_pair"]

#: The folder of the node directory holding the SuperNode key pair.
FEDERATION_DIR = "federation"
_PRIVATE, _PUBLIC = "supernode.key", "supernode.pub"


class FederationKeyError(NodeError, ValueError):
    """The SuperNode key file is there but is not a P-384 OpenSSH private key."""


@dataclass(frozen=True)
class FederationKey:
    """The node's SuperNode key pair: where its files are, the public key's line, and whether it was just made."""

    private_key: Path
    public_key: Path
    public_line: str
    created: bool


def key_pair(node_dir: Path) -> tuple[Path, Path]:
    """Where the node in ``node_dir`` keeps its SuperNode private and public key."""
    folder = Path(node_dir) / FEDERATION_DIR
    return folder / _PRIVATE, folder / _PUBLIC


def supernode_key_pair() -> tuple[bytes, str]:
    """A fresh P-384 key pair: the private key as an unencrypted OpenSSH PEM, the public key as its one line."""
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    return private, _public_line(key)


def federation_key(node_dir: Path) -> FederationKey:
    """The node's SuperNode key pair, made (and written) the first time.

    A private key already there is kept; its public file is rewritten from it if missing or
    different, so the two never disagree.

    Raises:
        FederationKeyError: the private key file is not a P-384 OpenSSH private key (it is left as it is).
    """
    private_path, public_path = key_pair(node_dir)
    created = not private_path.exists()
    if created:
        private_path.parent.mkdir(mode=0o700, exist_ok=True)
        private, line = supernode_key_pair()
        _write_new(private_path, private, 0o600)
    else:
        line = _public_line(_load(private_path))
    if not public_path.exists() or public_path.read_text(encoding="utf-8").strip() != line:
        public_path.unlink(missing_ok=True)
        _write_new(public_path, (line + "\n").encode("ascii"), 0o644)
    return FederationKey(private_path, public_path, line, created)


def public_line_of(path: Path) -> str:
    """The one-line OpenSSH public key of the SuperNode private key in ``path`` (which is only read).

    Raises:
        FederationKeyError: it is not a P-384 OpenSSH private key.
        OSError: it cannot be read.
    """
    return _public_line(_load(path))


def _load(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), None)
    except (ValueError, UnsupportedAlgorithm, TypeError) as exc:
        raise FederationKeyError(f"{path} is not an unencrypted OpenSSH private key ({exc}); move it away to make a "
                                 "new one, and have the coordinator operator register the new public key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP384R1):
        raise FederationKeyError(f"{path} holds a key of another kind than NIST P-384 ECDSA, which the federation "
                                 "uses; move it away to make a new one")
    return key


def _public_line(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode("ascii")


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet, with ``mode`` from its creation (no moment with wider permissions)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
