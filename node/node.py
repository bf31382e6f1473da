"""One hospital node: its directory, catalog, unlocked secrets, key and chain connection.

The node directory is private: 0700, and every file in it 0600 (:mod:`node.private`).
"""

from __future__ import annotations

import datetime as _dt
import shutil
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from node.catalog import open_catalog
from node.config import NodeInfo
from node.errors import NodeConfigError
from node.keys import NodeSecrets, create_secrets, load_key, load_secrets, store_key
from node.private import make_dir, private_umask, tighten
from node.vault import Vault

if TYPE_CHECKING:  # web3 and the chain key's library: loaded only by what uses the chain (not an ingest)
    from eth_account.signers.local import LocalAccount

    from contracts.exchange import Exchange

MANIFEST_COPY = "deployment.json"
#: Folders whose every file is checked for loose permissions each time a node is opened.
_ALWAYS_TIGHTENED = ("quarantine", "tmp")


class Node:
    """A hospital node opened with its passphrase.

    Opening a node sets the process umask to 077 (every file the process writes from then on
    is private to its user) and tightens what an older version left readable by others.

    Parameters:
        node_dir: the node directory made by :meth:`init`.
        passphrase: unlocks the hospital key and the node secrets (checked lazily, on first use).
        rpc_url: overrides the chain URL recorded at ``init``.
    """

    def __init__(self, node_dir: Path, passphrase: str, *, rpc_url: str | None = None) -> None:
        self.dir = Path(node_dir)
        self.info = NodeInfo.load(self.dir)
        private_umask()
        tighten(self.dir, always=_ALWAYS_TIGHTENED)
        self._passphrase = passphrase
        self.rpc_url = rpc_url or self.info.rpc_url
        self.sessions: sessionmaker[Session] = open_catalog(self.dir)

    @classmethod
    def init(
        cls,
        node_dir: Path,
        *,
        hospital_name: str,
        rpc_url: str,
        manifest: Path,
        passphrase: str,
        private_key: str | None = None,
    ) -> Node:
        """Create a node directory: key (new or imported), secrets, manifest copy, catalog.

        Raises:
            NodeConfigError: the directory already holds a node, or the manifest is unreadable.
        """
        from contracts.manifest import read_manifest

        node_dir = Path(node_dir)
        if (node_dir / "node.json").exists():
            raise NodeConfigError(f"{node_dir} already holds a node; choose another directory")
        deployment = read_manifest(manifest)  # validate before creating anything
        private_umask()
        make_dir(node_dir)
        if private_key is None:
            from eth_account import Account

            private_key = Account.create().key.hex()
        account = store_key(node_dir, private_key, passphrase)
        create_secrets(node_dir, passphrase)
        shutil.copyfile(manifest, node_dir / MANIFEST_COPY)
        NodeInfo(
            hospital_name=hospital_name,
            hospital_address=account.address,
            rpc_url=rpc_url or deployment.rpc_url,
            manifest=MANIFEST_COPY,
            created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        ).save(node_dir)
        return cls(node_dir, passphrase)

    @cached_property
    def secrets(self) -> NodeSecrets:
        """The unsealed node secrets (raises KeyStoreError on a wrong passphrase)."""
        return load_secrets(self.dir, self._passphrase)

    @cached_property
    def vault(self) -> Vault:
        """The pseudonym map."""
        return Vault(self.secrets)

    @cached_property
    def account(self) -> LocalAccount:
        """The hospital's unlocked chain key."""
        return load_key(self.dir, self._passphrase)

    @property
    def address(self) -> str:
        """The hospital's address (no unlocking needed)."""
        return self.info.hospital_address

    @cached_property
    def exchange(self) -> Exchange:
        """The contracts, on the node's chain (connects on first use)."""
        from contracts.exchange import Exchange

        return Exchange.connect(self.rpc_url, self.dir / self.info.manifest)
