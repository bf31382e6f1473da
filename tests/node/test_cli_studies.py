"""``metai-node studies``, ``approve`` and ``decline``: what a data committee sees of the studies naming it.

One node holds seven patients' images, one patient per way of being in or out of a cohort: consent
to any use, consent for another kind only, consent revoked, consent expired, no consent, not
enrolled, and consent to any use for an image in no registered dataset. Each test requests its
own studies on the real chain (undone after it).
"""

from __future__ import annotations

import json
from typing import Any

import pydicom
import pytest
from click.testing import Result
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.crypto import keccak
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.studies import Decision, StudyRequest
from deploy.anvil import advance_time
from node.cli import app
from node.node import Node
from tests.conftest import NODE_PASSPHRASE

#: Local patient id -> how they stand towards an image study of this hospital.
PATIENTS = {
    "TEST-S1": "in cohort",
    "TEST-S2": "kind not covered",
    "TEST-S3": "revoked",
    "TEST-S4": "expired",
    "TEST-S5": "no consent",
    "TEST-S6": "not enrolled",
    "TEST-S7": "not registered",
}
EVERY_REASON = {"not_registered": 1, "not_enrolled": 1, "no_consent": 1, "revoked": 1, "expired": 1,
                "kind_not_covered": 1}


@pytest.fixture(scope="module")
def hospital(module_make_node, module_exchange, actors, tmp_path_factory: pytest.TempPathFactory) -> Node:  # type: ignore[no-untyped-def]
    """A node with one image per patient of :data:`PATIENTS`, their consents as named there."""
    from node.datasets import register_drafts
    from node.enrol import enrol, issue_challenge
    from node.ingest import Ingestor

    node = module_make_node("Review Hospital")
    root = tmp_path_factory.mktemp("review")
    for i, pid in enumerate(PATIENTS):
        folder = root / ("late" if PATIENTS[pid] == "not registered" else "in")
        folder.mkdir(exist_ok=True)
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.PatientID, ds.PatientName = pid, f"Test^{pid}"
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(folder / f"{i}.dcm")
    assert len(Ingestor(node, workers=1).run([root / "in"]).ingested) == len(PATIENTS) - 1
    register_drafts(node)
    assert len(Ingestor(node, workers=1).run([root / "late"]).ingested) == 1  # ingested after the registration
    keys = {pid: Account.create() for pid in PATIENTS if PATIENTS[pid] != "not enrolled"}
    for pid, key in keys.items():
        enrol(node, pid, key.address, key.sign_message(encode_defunct(text=issue_challenge(node, pid).text))
              .signature.hex())
    consent, relay = module_exchange.consent, actors.coordinator
    now = int(module_exchange.chain.w3.eth.get_block("latest")["timestamp"])
    any_use = Scope(purpose=Purpose.GRU)
    consent.relay(relay, consent.sign_grant(keys["TEST-S1"], any_use, Kind.IMAGE, NO_EXPIRY))
    consent.relay(relay, consent.sign_grant(keys["TEST-S7"], any_use, Kind.IMAGE, NO_EXPIRY))
    consent.relay(relay, consent.sign_grant(keys["TEST-S2"], any_use, Kind.CT_SINOGRAM, NO_EXPIRY))
    consent.relay(relay, consent.sign_grant(keys["TEST-S3"], any_use, Kind.IMAGE, NO_EXPIRY))
    consent.relay(relay, consent.sign_revoke(keys["TEST-S3"], any_use))
    consent.relay(relay, consent.sign_grant(keys["TEST-S4"], any_use, Kind.IMAGE, now + 500))
    advance_time(module_exchange.chain.rpc_url, 1000)  # TEST-S4's consent has lapsed
    return node


def request(exchange, actors, hospitals: tuple[str, ...], **fields: Any) -> int:  # type: ignore[no-untyped-def]
    """Request a study (default: health research on images, 2 rounds) and return its id."""
    asked: dict[str, Any] = {"purpose": Purpose.HMB, "kinds": Kind.IMAGE, "task_code_hash": keccak(b"task"),
                             "rounds": 2, **fields}
    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(hospitals=hospitals, **asked))
    return int(study_id)


def run(node: Node, *args: str, answer: str | None = None) -> Result:
    env = {"METAI_NODE_DIR": str(node.dir), "METAI_NODE_PASSPHRASE": NODE_PASSPHRASE,
           "METAI_NODE_RPC_URL": node.rpc_url, "COLUMNS": "250"}  # wide enough that no table cell wraps
    return CliRunner().invoke(app, list(args), env=env, input=answer, catch_exceptions=False)


def listed(node: Node, *args: str) -> dict[int, dict[str, Any]]:
    """The studies ``metai-node studies --json ARGS`` lists, by id."""
    result = run(node, "studies", "--json", *args)
    assert result.exit_code == 0, result.output
    return {s["study_id"]: s for s in json.loads(result.stdout)["studies"]}


# ---------------------------------------------------------------------- studies


def test_a_pending_study_is_listed_with_its_cohort_preview(hospital: Node, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    study = request(exchange, actors, (hospital.address, actors.hospital2.address))
    assert listed(hospital)[study]["preview"] == {"records": 7, "in_cohort": 1, "not_in_cohort": EVERY_REASON}


def test_the_preview_counts_only_the_kinds_the_study_asks_for(hospital: Node, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    study = request(exchange, actors, (hospital.address,), kinds=Kind.CT_SINOGRAM)
    assert listed(hospital)[study]["preview"] == {
        "records": 0, "in_cohort": 0, "not_in_cohort": dict.fromkeys(EVERY_REASON, 0)}


def test_the_table_shows_the_preview_in_words(hospital: Node, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    request(exchange, actors, (hospital.address,))
    result = run(hospital, "studies")
    assert result.exit_code == 0, result.output
    assert "health/medical/biomedical research" in result.stdout
    assert "1 of 7" in result.stdout
    lines = [line.strip() for line in result.stdout.splitlines()]
    for reason in ("1 not registered", "1 not enrolled", "1 no consent", "1 revoked", "1 expired",
                   "1 kind not covered"):
        assert any(line.endswith(reason) for line in lines), reason  # one reason a line, in the last column


def test_a_study_not_naming_this_hospital_is_not_listed(hospital: Node, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    mine = request(exchange, actors, (hospital.address,))
    other = request(exchange, actors, (actors.hospital2.address,))
    assert set(listed(hospital, "--all")) == {mine}
    assert other not in listed(hospital)


def test_a_decided_study_is_not_listed_by_default(hospital: Node, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    decided = request(exchange, actors, (hospital.address,))
    pending = request(exchange, actors, (hospital.address,))
    exchange.studies.approve(hospital.account, decided)
    assert set(listed(hospital)) == {pending}


def test_all_lists_decided_studies_with_status_and_decision(hospital: Node, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    approved = request(exchange, actors, (hospital.address,))
    declined = request(exchange, actors, (hospital.address,))
    pending = request(exchange, actors, (hospital.address,))
    exchange.studies.approve(hospital.account, approved)
    exchange.studies.decline(hospital.account, declined)
    studies = listed(hospital, "--all")
    shown = {i: (s["status"], s["decision"], s["preview"] is not None) for i, s in studies.items()}
    assert shown == {approved: ("requested", "approved", False), declined: ("declined", "declined", False),
                     pending: ("requested", "pending", True)}


def test_json_has_the_documented_shape(hospital: Node, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    study = request(exchange, actors, (hospital.address, actors.hospital2.address), purpose=Purpose.DS,
                    disease=77, kinds=Kind.IMAGE | Kind.MR_KSPACE, privacy_budget=2500, rounds=3)
    result = run(hospital, "studies", "--json")
    document = json.loads(result.stdout)
    block = exchange.chain.block_number
    assert {k: v for k, v in document.items() if k != "studies"} == {
        "format": "metai-node-studies", "version": 1, "hospital": hospital.address,
        "hospital_name": "Review Hospital", "block": block}
    assert document["studies"] == [{
        "study_id": study, "researcher": actors.researcher.address, "purpose": "DS", "disease": 77,
        "purpose_words": "research on disease code 77", "kinds": ["image", "mr_kspace"],
        "kinds_words": "image, MR k-space", "hospitals": [hospital.address, actors.hospital2.address],
        "rounds": 3, "rounds_completed": 0, "privacy_budget_epsilon": 2.5,
        "task_code_hash": "0x" + keccak(b"task").hex(), "requested_at_block": block, "status": "requested",
        "decision": "pending",
        "preview": {"records": 7, "in_cohort": 1, "not_in_cohort": EVERY_REASON},
    }]


def test_no_pending_study_is_said_in_words(hospital: Node, exchange) -> None:  # type: ignore[no-untyped-def]
    result = run(hospital, "studies")
    assert result.exit_code == 0, result.output
    assert "no study awaits the decision of Review Hospital" in result.stdout
    assert "--all lists the decided ones too" in result.stdout


# ---------------------------------------------------------------------- approve, decline


def test_approve_shows_the_study_in_plain_words(hospital: Node, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    study = request(exchange, actors, (actors.hospital2.address, hospital.address), purpose=Purpose.DS,
                    disease=77, kinds=Kind.IMAGE | Kind.CT_SINOGRAM, privacy_budget=1500, rounds=4)
    result = run(hospital, "approve", str(study), "--yes")
    assert result.exit_code == 0, result.output
    shown = result.stdout
    short_hash = "0x" + keccak(b"task").hex()[:4] + "…" + keccak(b"task").hex()[-4:]
    for words in (f"researcher {actors.researcher.address}", "purpose:    research on disease code 77",
                  "data kinds: image, CT sinogram",
                  f"hospitals:  {actors.hospital2.address}, {hospital.address} (this hospital)",
                  "rounds:     4", "privacy:    epsilon 1.5 for the whole study", f"task code:  {short_hash}",
                  "status:     requested; this hospital's decision: pending",
                  "cohort now: 1 of this node's 7 records of these kinds",
                  "not in it: 1 not registered, 1 not enrolled, 1 no consent, 1 revoked, 1 expired, "
                  "1 kind not covered",
                  f"approved study {study} in block"):
        assert words in shown
    assert not any(enum_repr in shown for enum_repr in ("Kind.", "Purpose.", "StudyStatus.", "Decision.", "<"))


def test_approve_without_yes_asks_and_a_no_changes_nothing(hospital: Node, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    study = request(exchange, actors, (hospital.address,))
    result = run(hospital, "approve", str(study), answer="n\n")
    assert result.exit_code == 1
    assert f"Approve study {study}? [y/N]" in result.stdout
    assert exchange.studies.decision_of(study, hospital.address) == Decision.PENDING


def test_decline_records_the_decision(hospital: Node, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    study = request(exchange, actors, (hospital.address,))
    result = run(hospital, "decline", str(study), "--yes")
    assert result.exit_code == 0, result.output
    assert exchange.studies.decision_of(study, hospital.address) == Decision.DECLINED


def test_approving_an_approved_study_is_refused(hospital: Node, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    study = request(exchange, actors, (hospital.address,))
    exchange.studies.approve(hospital.account, study)
    result = run(hospital, "approve", str(study), "--yes")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (f"error: study {study} is not awaiting this hospital's decision: it was already "
                             "approved (study status: requested); a decision is final\n")


def test_an_unknown_study_is_refused(hospital: Node, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    request(exchange, actors, (hospital.address,))
    result = run(hospital, "decline", "9", "--yes")
    assert result.exit_code == 1
    assert result.stderr == ("error: study 9 does not exist (the chain holds studies 1 to 1); check the id with "
                             "`metai-node studies --all`\n")


def test_a_study_not_naming_this_hospital_is_refused(hospital: Node, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    study = request(exchange, actors, (actors.hospital2.address,))
    result = run(hospital, "approve", str(study), "--yes")
    assert result.exit_code == 1
    assert result.stderr == (f"error: study {study} does not name this hospital ({hospital.address}); only the "
                             f"hospitals it names decide on it: {actors.hospital2.address}\n")


def test_a_study_another_hospital_declined_is_refused(hospital: Node, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    study = request(exchange, actors, (hospital.address, actors.hospital2.address))
    exchange.studies.decline(actors.hospital2, study)
    result = run(hospital, "approve", str(study), "--yes")
    assert result.exit_code == 1
    assert result.stderr == (f"error: study {study} is not awaiting decisions: its status is declined (another "
                             "named hospital declined it); nothing to decide\n")
