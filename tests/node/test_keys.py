"""What ``Node.init`` writes to protect the hospital key and the node secrets.

The other tests unlock keystores re-encrypted at a low work factor (tests/conftest.py,
``TEST_SCRYPT_N``); these pin what production writes, with the figures stated here rather
than read from node/keys.py.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from eth_account import Account

from node.errors import KeyStoreError
from node.keys import load_key, load_secrets
from node.node import Node
from tests.conftest import NODE_PASSPHRASE, TEST_SCRYPT_N, BlankNodes, lighten_node_key

WALLET_SCRYPT = {"n": 2**18, "r": 8, "p": 1, "dklen": 32}  # the v3 keystore parameters wallets write
SECRETS_SCRYPT_N = 2**15


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, blank_nodes: BlankNodes) -> Node:
    return Node.init(tmp_path_factory.mktemp("keys") / "node", hospital_name="Keys Hospital",
                     rpc_url=blank_nodes.chain.rpc_url, manifest=blank_nodes.manifest, passphrase=NODE_PASSPHRASE)


def test_the_hospital_key_is_a_standard_scrypt_keystore_at_the_wallets_work_factor(made: Node) -> None:
    keystore = json.loads((made.dir / "hospital-key.json").read_text())
    assert keystore["version"] == 3
    assert keystore["address"].lower() == made.address.lower().removeprefix("0x")
    crypto = keystore["crypto"]
    assert (crypto["kdf"], crypto["cipher"]) == ("scrypt", "aes-128-ctr")
    assert {k: v for k, v in crypto["kdfparams"].items() if k != "salt"} == WALLET_SCRYPT
    assert len(bytes.fromhex(crypto["kdfparams"]["salt"])) >= 16
    # any wallet that reads v3 keystores opens it with the passphrase
    assert Account.from_key(Account.decrypt(keystore, NODE_PASSPHRASE)).address == made.address


def test_the_secrets_are_sealed_under_scrypt(made: Node) -> None:
    record = json.loads((made.dir / "secrets.json").read_text())
    assert (record["version"], record["kdf"], record["n"]) == (1, "scrypt", SECRETS_SCRYPT_N)
    assert len(bytes.fromhex(record["salt"])) == 16
    secrets = load_secrets(made.dir, NODE_PASSPHRASE)
    assert len({secrets.vault_key, secrets.uid_secret, secrets.lookup_secret}) == 3
    assert all(len(s) == 32 for s in (secrets.vault_key, secrets.uid_secret, secrets.lookup_secret))


@pytest.mark.parametrize("name", ["hospital-key.json", "secrets.json"])
def test_key_files_are_private_to_the_node(made: Node, name: str) -> None:
    assert stat.S_IMODE((made.dir / name).stat().st_mode) == 0o600


def test_a_wrong_passphrase_opens_neither(made: Node) -> None:
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        load_key(made.dir, NODE_PASSPHRASE + "!")
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        load_secrets(made.dir, NODE_PASSPHRASE + "!")


def test_the_tests_lighter_keystore_holds_the_same_key(made: Node, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "node"
    shutil.copytree(made.dir, copy)
    lighten_node_key(copy)
    keystore = json.loads((copy / "hospital-key.json").read_text())
    assert keystore["crypto"]["kdfparams"]["n"] == TEST_SCRYPT_N < WALLET_SCRYPT["n"]
    assert load_key(copy, NODE_PASSPHRASE).address == made.address
    assert stat.S_IMODE((copy / "hospital-key.json").stat().st_mode) == 0o600
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        load_key(copy, NODE_PASSPHRASE + "!")
