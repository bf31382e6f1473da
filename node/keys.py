"""The hospital's chain key and the node's secrets, both encrypted with the node passphrase.

The key is an Ethereum keystore (v3, scrypt) so that standard wallets can read it. The node
secrets (the key sealing the pseudonym map, the UID-mapping secret and the patient-lookup
secret) are random, sealed with AES-256-GCM under a key derived from the passphrase by scrypt.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from node.errors import KeyStoreError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

KEY_FILE = "hospital-key.json"
SECRETS_FILE = "secrets.json"
_SCRYPT_N = 2**15


@dataclass(frozen=True)
class NodeSecrets:
    """Random secrets of one node; never leave it."""

    vault_key: bytes  # AES-256-GCM key sealing pseudonym-map entries
    uid_secret: bytes  # HMAC key for deterministic UID replacement
    lookup_secret: bytes  # HMAC key indexing patients by local id without storing it in clear


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    tmp.replace(path)


def store_key(node_dir: Path, private_key: str | bytes, passphrase: str) -> LocalAccount:
    """Encrypt ``private_key`` into the node's keystore file; return the account.

    Raises:
        KeyStoreError: a key is already stored (never overwritten) or the key is malformed.
    """
    from eth_account import Account  # the chain key's library: not loaded by what needs only the secrets

    path = node_dir / KEY_FILE
    if path.exists():
        raise KeyStoreError(f"{path} already holds a hospital key; it is never overwritten")
    try:
        account: LocalAccount = Account.from_key(private_key)
    except (ValueError, TypeError) as exc:
        raise KeyStoreError(f"not a valid secp256k1 private key: {exc}") from exc
    keystore = Account.encrypt(account.key, passphrase)
    _write_private(path, json.dumps(keystore))
    return account


def load_key(node_dir: Path, passphrase: str) -> LocalAccount:
    """Unlock the hospital key.

    Raises:
        KeyStoreError: no keystore, or the passphrase is wrong.
    """
    from eth_account import Account

    path = node_dir / KEY_FILE
    try:
        keystore = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise KeyStoreError(f"no hospital key at {path}; run `metai-node init`") from exc
    try:
        account: LocalAccount = Account.from_key(Account.decrypt(keystore, passphrase))
        return account
    except ValueError as exc:
        raise KeyStoreError(f"cannot unlock {path}: wrong passphrase") from exc


def _kdf(passphrase: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=8, p=1).derive(passphrase.encode("utf-8"))


def create_secrets(node_dir: Path, passphrase: str) -> NodeSecrets:
    """Generate the node secrets and seal them with the passphrase (never overwrites)."""
    path = node_dir / SECRETS_FILE
    if path.exists():
        raise KeyStoreError(f"{path} already exists; it is never overwritten")
    secrets = NodeSecrets(os.urandom(32), os.urandom(32), os.urandom(32))
    salt, nonce = os.urandom(16), os.urandom(12)
    plain = json.dumps({k: base64.b64encode(v).decode() for k, v in secrets.__dict__.items()}).encode()
    sealed = AESGCM(_kdf(passphrase, salt)).encrypt(nonce, plain, b"metai-node-secrets-v1")
    record = {"version": 1, "kdf": "scrypt", "n": _SCRYPT_N, "salt": salt.hex(), "nonce": nonce.hex(),
              "ciphertext": base64.b64encode(sealed).decode()}
    _write_private(path, json.dumps(record, indent=2))
    return secrets


def load_secrets(node_dir: Path, passphrase: str) -> NodeSecrets:
    """Unseal the node secrets; raise KeyStoreError on a wrong passphrase or a damaged file."""
    path = node_dir / SECRETS_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        salt, nonce = bytes.fromhex(record["salt"]), bytes.fromhex(record["nonce"])
        sealed = base64.b64decode(record["ciphertext"])
    except FileNotFoundError as exc:
        raise KeyStoreError(f"no node secrets at {path}; run `metai-node init`") from exc
    except (KeyError, ValueError) as exc:
        raise KeyStoreError(f"{path} is damaged: {exc}") from exc
    try:
        plain = AESGCM(_kdf(passphrase, salt)).decrypt(nonce, sealed, b"metai-node-secrets-v1")
    except InvalidTag as exc:
        raise KeyStoreError(f"cannot unlock {path}: wrong passphrase") from exc
    fields = {k: base64.b64decode(v) for k, v in json.loads(plain).items()}
    return NodeSecrets(**fields)
