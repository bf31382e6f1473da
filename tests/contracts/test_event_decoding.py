"""Event logs are decoded with eth_abi into the same values web3's ``process_log`` gives."""

from __future__ import annotations

from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.events import _decode_args, _event_abis
from contracts.mirrors import to_python
from tests.contracts.conftest import World, undone


def _compare_with_web3(world: World, logs: list[Any]) -> set[str]:
    """Assert each log decodes to web3's values; return the names of the events seen."""
    seen = set()
    for log in logs:
        contract = world.chain.contract_name(log["address"])
        assert contract is not None
        abi = _event_abis(contract)[bytes(log["topics"][0])]
        theirs = world.chain.w3.eth.contract(abi=[abi]).events[abi["name"]]().process_log(log)["args"]
        ours = _decode_args(abi, log)
        assert {p["name"]: to_python(p, Any, ours[p["name"]]) for p in abi["inputs"]} == {
            p["name"]: to_python(p, Any, theirs[p["name"]]) for p in abi["inputs"]}
        seen.add(abi["name"])
    return seen


def test_every_event_of_a_deployment_decodes_as_web3_decodes_it(world: World) -> None:
    """The world: roles, consents, a dataset, studies in every state."""
    addresses = [c.address for c in world.exchange.deployment.contracts.values()]
    logs = world.chain.w3.eth.get_logs({"address": addresses, "fromBlock": world.exchange.deployment.deploy_block})
    assert _compare_with_web3(world, logs) >= {
        "RoleGranted", "ConsentGranted", "DatasetRegistered", "StudyRequested", "StudyApproved", "StudyStarted",
        "ContributionRecorded", "RoundRecorded"}


def test_the_events_of_a_batch_relay_decode_as_web3_decodes_them(world: World, anvil) -> None:
    """A granted item, a refused one (its revert data as dynamic bytes) and a cancellation."""
    consent = world.exchange.consent
    patient = world.accounts["patient1"]
    signed = consent.sign_grant(patient, Scope(purpose=Purpose.HMB), Kind.IMAGE, NO_EXPIRY)
    with undone(anvil):
        relayed = consent.relay_batch(world.accounts["coordinator"], [signed, signed])
        cancelled = consent.cancel_signatures(patient, 5)
        logs = [log for tx in (relayed.transactions[0].tx_hash, cancelled.tx_hash)
                for log in world.chain.w3.eth.get_transaction_receipt(tx)["logs"]]
    assert _compare_with_web3(world, logs) == {"ConsentGranted", "ConsentRelayFailed", "SignaturesCancelled"}


def test_an_indexed_dynamic_argument_is_kept_as_its_topic() -> None:
    """Solidity logs the hash of an indexed string, bytes or array, not the value."""
    abi = {"type": "event", "name": "Labelled", "inputs": [
        {"name": "label", "type": "string", "indexed": True},
        {"name": "who", "type": "address", "indexed": True},
        {"name": "count", "type": "uint256", "indexed": False},
        {"name": "note", "type": "bytes", "indexed": False},
    ]}
    who = "0x" + "ab" * 20
    log = {
        "topics": [keccak(text="Labelled(string,address,uint256,bytes)"), keccak(text="CT"),
                   encode(["address"], [who])],
        "data": encode(["uint256", "bytes"], [7, b"\x01\x02"]),
    }
    assert _decode_args(abi, log) == {"label": keccak(text="CT"), "who": who, "count": 7, "note": b"\x01\x02"}
