"""Hospitals' SuperNode keys on the SuperLink: checked, registered, listed and unregistered.

A SuperLink run with SuperNode authentication admits a SuperNode only if its public key was
registered through the Control API. A hospital makes its key pair on its own host
(``metai-node federation-key``) and hands the coordinator operator the one OpenSSH line of the
public key (``ecdsa-sha2-nistp384 AAAA...``); :func:`parse_public_key` checks it, and
:class:`SuperNodeRegistry` registers it under the hospital's name. Registering the same key
under the same name again changes nothing. Flower keeps every key it ever registered: one that
was unregistered cannot be registered again, so the hospital makes a new pair.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.proto.control_pb2 import (
    ListNodesRequest,
    ListNodesResponse,
    RegisterNodeRequest,
    RegisterNodeResponse,
    UnregisterNodeRequest,
    UnregisterNodeResponse,
)
from flwr.proto.node_pb2 import NodeInfo

from coordinator.errors import CoordinatorError
from coordinator.federated.control import ControlClient, ControlError

__all__ = ["SuperNode", "SuperNodeConflict", "SuperNodeKey", "SuperNodeKeyError", "SuperNodeNotFound",
           "SuperNodeRegistry", "check_name", "parse_public_key"]

_KEY_TYPE = "ecdsa-sha2-nistp384"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
#: The states of a node Flower still admits (``unregistered`` is final).
_ACTIVE = frozenset({"registered", "online", "offline"})


class SuperNodeKeyError(CoordinatorError, ValueError):
    """A public key that is not one OpenSSH ``ecdsa-sha2-nistp384`` line, or a malformed SuperNode name."""


class SuperNodeConflict(CoordinatorError, ValueError):
    """The key or the name is already taken otherwise, or the key was unregistered (Flower never re-admits it)."""


class SuperNodeNotFound(CoordinatorError, LookupError):
    """No SuperNode has that id on the SuperLink."""


@dataclass(frozen=True)
class SuperNodeKey:
    """A hospital's SuperNode public key: its OpenSSH line (no comment), its SPKI PEM (as Flower keeps it),
    and its SHA-256 fingerprint as ``ssh-keygen -l`` prints it."""

    line: str
    pem: bytes
    fingerprint: str


@dataclass(frozen=True)
class SuperNode:
    """A SuperNode the SuperLink knows: id, name, state (registered, online, offline, unregistered), key."""

    node_id: int
    name: str
    status: str
    public_key: str
    fingerprint: str
    registered_at: str
    last_activated_at: str | None


def parse_public_key(text: str) -> SuperNodeKey:
    """Check ``text`` is one OpenSSH P-384 public key line (a trailing comment is allowed) and return the key.

    Raises:
        SuperNodeKeyError: it is not (the message says what the operator should paste instead).
    """
    fields = text.strip().split()
    preview = text.strip()[:40] + ("..." if len(text.strip()) > 40 else "")
    hint = "paste the one line `metai-node federation-key` prints on the hospital host"
    if len(text.strip().splitlines()) != 1 or len(fields) < 2:
        raise SuperNodeKeyError(f"the public key {preview!r} is not one line 'ecdsa-sha2-nistp384 AAAA...'; {hint}")
    if fields[0] != _KEY_TYPE:
        raise SuperNodeKeyError(f"the public key is of type {fields[0][:40]!r}, expected {_KEY_TYPE} (NIST P-384, "
                                f"which the federation uses); {hint}")
    line = f"{fields[0]} {fields[1]}"
    try:
        blob = base64.b64decode(fields[1], validate=True)
        key = serialization.load_ssh_public_key(line.encode("ascii"))
    except (ValueError, UnsupportedAlgorithm, binascii.Error, UnicodeEncodeError) as exc:
        raise SuperNodeKeyError(f"the public key {preview!r} does not decode as {_KEY_TYPE} ({exc}); {hint}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise SuperNodeKeyError(f"the public key {preview!r} is not on NIST P-384; {hint}")
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return SuperNodeKey(line, pem, fingerprint)


def check_name(name: str) -> str:
    """Return ``name`` if it is 1-63 letters, digits, ``.``, ``_`` or ``-`` (a hospital's name or address).

    Raises:
        SuperNodeKeyError: it is not.
    """
    if not _NAME.match(name):
        raise SuperNodeKeyError(f"SuperNode name {name!r} is not 1-63 letters, digits, '.', '_' or '-' starting "
                                "with a letter or digit; use the hospital's short name or its address")
    return name


class SuperNodeRegistry:
    """Register, list and unregister SuperNode keys on one SuperLink, through its Control API."""

    def __init__(self, client: Callable[[], ControlClient]) -> None:
        """Use ``client()`` for each operation (a fresh connection: the SuperLink may have restarted)."""
        self._client = client
        self._lock = threading.Lock()  # one registration at a time in this process

    def list(self) -> list[SuperNode]:
        """Every SuperNode the SuperLink knows, unregistered ones included, oldest first.

        Raises:
            ControlUnavailable, ControlError: the SuperLink did not answer, or refused.
        """
        with self._client() as control:
            answer = control.call("list-nodes", ListNodesRequest(), ListNodesResponse)
        nodes = [_node(info) for info in answer.nodes_info]
        return sorted(nodes, key=lambda node: node.registered_at)

    def register(self, name: str, key: SuperNodeKey) -> tuple[SuperNode, bool]:
        """Register ``key`` as SuperNode ``name``; the same key under the same name again is left as it is.

        Returns:
            The node, and whether it was registered now (False: it was already).

        Raises:
            SuperNodeKeyError: ``name`` is malformed.
            SuperNodeConflict: the key is registered under another name, or was unregistered; or
                another key is registered under ``name``.
            ControlUnavailable, ControlError: the SuperLink did not answer, or refused.
        """
        check_name(name)
        with self._lock:
            existing = self._existing(name, key)
            if existing is not None:
                return existing, False
            try:
                with self._client() as control:
                    answer = control.call("register-node", RegisterNodeRequest(public_key=key.pem, name=name),
                                          RegisterNodeResponse)
            except ControlError:
                existing = self._existing(name, key)  # registered meanwhile by another process (the CLI)
                if existing is not None:
                    return existing, False
                raise
            for node in self.list():
                if node.node_id == answer.node_id:
                    return node, True
            raise ControlError(f"the SuperLink registered node {answer.node_id} but does not list it",
                               status=200, code=None)

    def unregister(self, node_id: int) -> SuperNode:
        """Unregister SuperNode ``node_id`` (its key is refused from then on); an unregistered one is left as it is.

        Raises:
            SuperNodeNotFound: no node has that id.
            ControlUnavailable, ControlError: the SuperLink did not answer, or refused.
        """
        with self._lock:
            node = next((n for n in self.list() if n.node_id == node_id), None)
            if node is None:
                raise SuperNodeNotFound(f"no SuperNode {node_id} on the SuperLink; list them to find its id")
            if node.status == "unregistered":
                return node
            with self._client() as control:
                control.call("unregister-node", UnregisterNodeRequest(node_id=node_id), UnregisterNodeResponse)
            return next(n for n in self.list() if n.node_id == node_id)

    def _existing(self, name: str, key: SuperNodeKey) -> SuperNode | None:
        """The node already registered with this key and name; refuse a key or name taken otherwise."""
        nodes = self.list()
        same_key = next((n for n in nodes if n.public_key == key.line), None)
        if same_key is not None:
            if same_key.status not in _ACTIVE:
                raise SuperNodeConflict(f"the key {key.fingerprint} was registered before (node {same_key.node_id}, "
                                        f"{same_key.name!r}) and unregistered, and Flower never admits it again: the "
                                        "hospital makes a new key pair and sends its public key")
            if same_key.name != name:
                raise SuperNodeConflict(f"the key {key.fingerprint} is registered already as {same_key.name!r} "
                                        f"(node {same_key.node_id}); unregister that node first to register it "
                                        f"as {name!r}")
            return same_key
        other = next((n for n in nodes if n.name == name and n.status in _ACTIVE), None)
        if other is not None:
            raise SuperNodeConflict(f"{name!r} is registered already with another key ({other.fingerprint}, node "
                                    f"{other.node_id}); unregister node {other.node_id} first to replace its key")
        return None


def _node(info: NodeInfo) -> SuperNode:
    line = ""
    fingerprint = ""
    try:
        key = serialization.load_pem_public_key(info.public_key)
        line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode("ascii")
        blob = base64.b64decode(line.split()[1])
        fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    except (ValueError, UnsupportedAlgorithm, IndexError):  # a key Flower took that this module would not
        pass
    return SuperNode(node_id=info.node_id, name=info.name, status=info.status, public_key=line,
                     fingerprint=fingerprint, registered_at=info.registered_at,
                     last_activated_at=info.last_activated_at or None)
