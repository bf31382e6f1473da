"""An ingest loads what reading, de-identifying and storing files needs, not the chain's libraries."""

from __future__ import annotations

from tests.import_probe import loaded_after


def test_the_ingest_and_the_node_load_neither_web3_nor_the_key_library_nor_torch() -> None:
    # web3 and eth_account cost about a second of start-up in every ingest process (and torch
    # more in each worker): an ingest never touches the chain nor the hospital key.
    assert loaded_after(["node.cli", "node.ingest", "node.node", "node.formats", "node.raw_deid"],
                        ["web3", "eth_account", "torch", "scipy"]) == []


def test_the_node_still_reaches_the_chain_and_its_key(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node("Import Hospital", role=False)
    assert node.account.address == node.address
    assert node.exchange.chain.w3.eth.get_balance(node.address) == 10**18
