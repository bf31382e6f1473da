"""The auditor's readers refuse bad input with a message that names it: artifacts, manifests, the
endpoint, logs that do not decode, and event streams the contracts cannot have emitted."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak

import audit
from audit.rpc import Log
from contracts.exchange import Exchange
from deploy.anvil import AnvilNode
from deploy.process import free_port

PATIENT = "0x" + "ab" * 20
H1 = "0x" + "11" * 20
SCOPE = audit.Scope(H1, audit.Purpose.HMB, 0, 3)


# ---------------------------------------------------------------- artifacts


def test_the_repository_artifacts_are_read_whole() -> None:
    found = audit.read_artifacts()
    assert set(found) == {"ConsortiumRoles", "ConsentRegistry", "DatasetRegistry", "StudyRegistry"}
    assert found["ConsentRegistry"].event("ConsentGranted")["inputs"][0]["name"] == "patient"


@pytest.mark.parametrize(("content", "message"), [
    ('{"abi": [], "bytecode": "0x60', "is not JSON"),  # truncated
    ("[]", "holds a JSON list, expected an object"),
    ('{"bytecode": "0x00"}', "has no 'abi' list"),
    ('{"abi": {}, "bytecode": "0x00"}', "has no 'abi' list"),
    ('{"abi": [], "bytecode": "0xzz"}', "'bytecode' is not hex"),
])
def test_a_malformed_artifact_is_refused_with_its_path(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "ConsentRegistry.json"
    path.write_text(content)
    with pytest.raises(audit.ArtifactError, match=message) as raised:
        audit.read_artifact(path)
    assert str(path) in str(raised.value)


def test_a_missing_artifact_is_refused_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(audit.ArtifactError, match=f"cannot read contract artifact {tmp_path}/ConsortiumRoles.json"):
        audit.read_artifacts(tmp_path)


def test_an_event_the_abi_lacks_is_named() -> None:
    with pytest.raises(audit.ArtifactError, match="the ABI of ConsortiumRoles has no event 'ConsentGranted'"):
        audit.read_artifacts()["ConsortiumRoles"].event("ConsentGranted")


def test_an_artifact_not_read_is_named() -> None:
    with pytest.raises(audit.ArtifactError, match="no artifact of StudyRegistry was read"):
        audit.artifact_named({}, "StudyRegistry")


# ---------------------------------------------------------------- manifest


def test_the_manifest_deploy_writes_is_read_as_written(deployment: audit.Deployment,
                                                       deployed_exchange: Exchange) -> None:
    written = deployed_exchange.deployment
    assert deployment.chain_id == written.chain_id
    assert deployment.admin == written.admin
    assert {n: (c.address, c.block) for n, c in deployment.contracts.items()} == {
        n: (c.address, c.block) for n, c in written.contracts.items()}


def _manifest(manifest: Path, **change: Any) -> str:
    data = json.loads(manifest.read_text())
    data.update(change)
    return json.dumps(data)


@pytest.mark.parametrize(("change", "message"), [
    ({"format": "something-else"}, 'not a deployment manifest \\(expected "format": "metai-deployment"\\)'),
    ({"version": 2}, "manifest version 2, this auditor reads 1"),
    ({"chain_id": "31337"}, "chain_id is '31337', expected an integer"),
    ({"contracts": []}, "'contracts' is list, expected an object"),
    ({"admin": "nobody"}, "admin is 'nobody', expected a 0x address"),
])
def test_a_malformed_manifest_is_refused_naming_the_field(manifest: Path, change: dict[str, Any],
                                                          message: str) -> None:
    with pytest.raises(audit.ManifestError, match=message):
        audit.parse_manifest(_manifest(manifest, **change), "m.json")


@pytest.mark.parametrize(("entry", "message"), [
    ({"block": 1}, "contracts.ConsentRegistry.address is None, expected a 0x address"),
    ({"address": "0x12", "block": 1}, "contracts.ConsentRegistry.address is '0x12'"),
    ({"address": H1, "block": -1}, "contracts.ConsentRegistry.block is -1, expected a block number"),
    ({"address": H1, "block": "7"}, "contracts.ConsentRegistry.block is '7'"),
    ("0x11", "contracts.ConsentRegistry is a str, expected an object"),
])
def test_a_malformed_contract_entry_is_refused_naming_it(manifest: Path, entry: Any, message: str) -> None:
    contracts = json.loads(manifest.read_text())["contracts"]
    with pytest.raises(audit.ManifestError, match=message):
        audit.parse_manifest(_manifest(manifest, contracts={**contracts, "ConsentRegistry": entry}))


def test_a_manifest_missing_a_contract_names_it(manifest: Path) -> None:
    contracts = json.loads(manifest.read_text())["contracts"]
    del contracts["ConsortiumRoles"]
    with pytest.raises(audit.ManifestError, match=r"m\.json: no address for ConsortiumRoles"):
        audit.parse_manifest(_manifest(manifest, contracts=contracts), "m.json")


def test_a_truncated_or_missing_manifest_is_refused(manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(audit.ManifestError, match=r"m\.json: not JSON"):
        audit.parse_manifest(manifest.read_text()[:40], "m.json")
    with pytest.raises(audit.ManifestError, match=r"cannot read deployment manifest .*absent\.json"):
        audit.read_manifest(tmp_path / "absent.json")


def test_bytecode_other_than_the_artifacts_is_refused(deployment: audit.Deployment,
                                                      artifacts: dict[str, audit.Artifact]) -> None:
    other = dataclasses.replace(artifacts["StudyRegistry"], bytecode_sha256="00" * 32)
    with pytest.raises(audit.ManifestError, match=r"other bytecode than the artifacts read: StudyRegistry \("):
        audit.check_bytecode(deployment, {**artifacts, "StudyRegistry": other})


# ---------------------------------------------------------------- the endpoint


def test_an_endpoint_that_does_not_answer_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(audit.RpcError, match=f"{url}: eth_chainId failed"):
        _ = audit.ChainReader(url, timeout=2).chain_id


def test_an_endpoint_of_another_chain_is_refused(anvil: AnvilNode, deployment: audit.Deployment) -> None:
    other = dataclasses.replace(deployment, chain_id=deployment.chain_id + 1)
    with pytest.raises(audit.ManifestError, match=f"serves chain {deployment.chain_id}, the manifest is for chain"):
        audit.connect(anvil.rpc_url, other)


def test_a_log_chunk_below_one_block_is_refused(anvil: AnvilNode) -> None:
    with pytest.raises(ValueError, match="chunk of 0 blocks per log query; expected at least 1"):
        audit.ChainReader(anvil.rpc_url, chunk=0)


def test_logs_are_the_same_whatever_the_chunk(anvil: AnvilNode, reader: audit.ChainReader,
                                              deployment: audit.Deployment) -> None:
    roles = deployment.contract("ConsortiumRoles")
    last = reader.block_number
    one = audit.ChainReader(anvil.rpc_url, chunk=1).logs(roles.address, [], roles.block, last)
    whole = audit.ChainReader(anvil.rpc_url, chunk=10_000).logs(roles.address, [], roles.block, last)
    assert one == whole
    assert len(one) >= 6  # the admin and the five roles the session deployment grants


def test_a_reverted_call_carries_its_revert_data(reader: audit.ChainReader, deployment: audit.Deployment) -> None:
    """explain() for a patient without consent reverts with ConsentRegistryNoMatchingConsent(patient)."""
    use = (H1, 1, 2, 0, 0)
    selector = keccak(text="explain(address,(address,uint8,uint8,uint32,uint256))")[:4]
    data = selector + encode(["address", "(address,uint8,uint8,uint32,uint256)"], [PATIENT, use])
    with pytest.raises(audit.CallReverted, match="reverted") as raised:
        reader.call(deployment.contract("ConsentRegistry").address, data, reader.block_number)
    expected = keccak(text="ConsentRegistryNoMatchingConsent(address)")[:4] + encode(["address"], [PATIENT])
    assert raised.value.data == expected


# ---------------------------------------------------------------- decoding


def test_a_log_of_another_event_or_shape_does_not_decode() -> None:
    decoder = audit.EventDecoder(audit.read_artifacts()["ConsentRegistry"], ["ConsentRevoked"])
    (topic,) = decoder.topics
    base = Log(H1, (topic, bytes(12) + bytes.fromhex(PATIENT[2:]), bytes(32)), b"", 5, 0, "0x01")
    assert decoder.decode(base).args == {"patient": PATIENT, "consentId": bytes(32)}
    with pytest.raises(audit.ReplayError, match="is not an event of ConsentRegistry this decoder reads"):
        decoder.decode(dataclasses.replace(base, topics=(keccak(text="Other()"),)))
    with pytest.raises(audit.ReplayError, match="ConsentRevoked in block 5 has 1 indexed topics, its ABI 2"):
        decoder.decode(dataclasses.replace(base, topics=base.topics[:2]))
    granted = audit.EventDecoder(audit.read_artifacts()["ConsentRegistry"], ["ConsentGranted"])
    truncated = Log(H1, (granted.topics[0], bytes(32), bytes(32), bytes(32)), bytes(64), 5, 0, "0x01")
    with pytest.raises(audit.ReplayError, match=r"ConsentGranted in block 5 .* does not decode by the ABI"):
        granted.decode(truncated)


# ---------------------------------------------------------------- replays of impossible streams


def granted(block: int, scope: audit.Scope = SCOPE, patient: str = PATIENT, **change: Any) -> audit.Event:
    args = {"patient": patient, "consentId": audit.consent_id(patient, scope), "hospital": scope.hospital,
            "purpose": scope.purpose, "disease": scope.disease, "studyId": scope.study_id, "kinds": 3,
            "expiresAt": 2**64 - 1, **change}
    return audit.Event("ConsentGranted", args, block, 0, "0x01")


def revoked(block: int, scope: audit.Scope = SCOPE, patient: str = PATIENT) -> audit.Event:
    return audit.Event("ConsentRevoked", {"patient": patient, "consentId": audit.consent_id(patient, scope)},
                       block, 0, "0x02")


@pytest.mark.parametrize(("events", "message"), [
    ([revoked(3)], "ConsentRevoked of 0x.* in block 3 \\(0x02\\): that consent was never granted"),
    ([granted(2), revoked(3), revoked(4)], "already revoked in block 3"),
    ([granted(2, consentId=bytes(32))], "names consent 0x0+, but its patient and scope hash to 0x"),
    ([granted(4), revoked(3)], "a change in block 3 replayed after one in block 4"),
    ([granted(11)], "ConsentGranted in block 11, after block 10 the history ends at"),
    ([audit.Event("RoleGranted", {}, 1, 0, "0x03")], "RoleGranted in block 1 is not a consent event"),
])
def test_a_consent_stream_the_contract_cannot_emit_is_refused(events: list[audit.Event], message: str) -> None:
    with pytest.raises(audit.ReplayError, match=message):
        audit.ConsentHistory(events, to_block=10)


def test_a_revocation_by_another_patient_is_refused() -> None:
    forged = audit.Event("ConsentRevoked", {"patient": H1, "consentId": audit.consent_id(PATIENT, SCOPE)}, 3, 0, "0x2")
    with pytest.raises(audit.ReplayError, match=f"revoked by {H1}, granted by 0x"):
        audit.ConsentHistory([granted(2), forged], to_block=10)


def test_a_question_beyond_the_history_is_refused() -> None:
    history = audit.ConsentHistory([granted(2)], to_block=10)
    use = audit.Use(H1, 1, audit.Purpose.HMB, 0, 3)
    assert history.permits(PATIENT, use, audit.Instant(10, 0))
    with pytest.raises(audit.ReplayError, match="read up to block 10; it cannot answer for block 11"):
        history.permits(PATIENT, use, audit.Instant(11, 0))
    with pytest.raises(audit.InvalidUse, match="patient '0xab' is not a 0x address of 40 hex digits"):
        history.permits("0xab", use, audit.Instant(10, 0))


@pytest.mark.parametrize(("use", "message"), [
    (dict(kinds=0), "use kinds 0 is not a non-empty subset of 15"),
    (dict(kinds=16), "use kinds 16 is not a non-empty subset of 15"),
    (dict(purpose=audit.Purpose.DS), r"use purpose \(3, disease 0\) is not a purpose code"),
    (dict(disease=4), r"use purpose \(2, disease 4\) is not a purpose code"),
    (dict(purpose=4), r"use purpose \(4, disease 0\)"),
    (dict(hospital="H1"), "use hospital 'H1' is not a 0x address"),
])
def test_a_use_the_contract_would_refuse_is_refused(use: dict[str, Any], message: str) -> None:
    with pytest.raises(audit.InvalidUse, match=message):
        audit.Use(**{"hospital": H1, "kinds": 1, "purpose": audit.Purpose.HMB, **use})


def test_candidate_scopes_run_from_the_most_specific_to_the_broadest() -> None:
    """Purpose DS -> HMB -> GRU outermost, then the hospital, then the study; "any" follows the named one."""
    any_h = audit.ANY_HOSPITAL
    scopes = audit.candidate_scopes(audit.Use(H1, 1, audit.Purpose.DS, 9, 5))
    expected = [(p, d, h, s) for p, d in ((3, 9), (2, 0), (1, 0)) for h in (H1, any_h) for s in (5, 0)]
    assert [(s.purpose, s.disease, s.hospital, s.study_id) for s in scopes] == expected
    assert [(s.hospital, s.study_id) for s in audit.candidate_scopes(audit.Use(any_h, 1, audit.Purpose.GRU))] == [
        (any_h, 0)]


@pytest.mark.parametrize(("events", "message"), [
    ([("RoleGranted", 2), ("RoleGranted", 3)], "RoleGranted of HOSPITAL_ROLE for 0x.* in block 3 .*already held"),
    ([("RoleRevoked", 2)], "RoleRevoked of HOSPITAL_ROLE for 0x.* in block 2 .*did not hold that role"),
    ([("ConsentGranted", 2)], "ConsentGranted in block 2 is not a role event"),
])
def test_a_role_stream_access_control_cannot_emit_is_refused(events: list[tuple[str, int]], message: str) -> None:
    args = {"role": audit.ROLES["HOSPITAL_ROLE"], "account": PATIENT, "sender": H1}
    with pytest.raises(audit.ReplayError, match=message):
        audit.RoleHistory([audit.Event(name, args, block, 0, "0x04") for name, block in events], to_block=10)


def test_an_unknown_role_is_named_by_its_hex() -> None:
    assert audit.role_name(b"\x01" * 32) == "0x" + "01" * 32
    assert audit.role_name(bytes(32)) == "DEFAULT_ADMIN_ROLE"
