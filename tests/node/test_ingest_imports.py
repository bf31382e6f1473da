"""An ingest loads what reading, de-identifying and storing files needs, not the chain's libraries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_ingest_and_the_node_load_neither_web3_nor_the_key_library_nor_torch() -> None:
    # web3 and eth_account cost about a second of start-up in every ingest process (and torch
    # more in each worker): an ingest never touches the chain nor the hospital key.
    code = ("import sys, node.cli, node.ingest, node.node, node.formats, node.raw_deid\n"
            "print(sorted(m for m in ('web3', 'eth_account', 'torch', 'scipy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_node_still_reaches_the_chain_and_its_key(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node("Import Hospital", role=False)
    assert node.account.address == node.address
    assert node.exchange.chain.w3.eth.get_balance(node.address) == 10**18
