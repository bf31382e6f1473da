"""The end-to-end demo of the exchange (``make demo``).

A local chain starts and the contracts are deployed. A hospital node is created, ingests
synthetic CT sinograms of five digital patients (plus a public DICOM file and a file it must
refuse), de-identifies them, and anchors them on chain as a dataset. Patients enrol with their
own keys and sign consent, which the coordinator relays. A researcher requests a study, the
hospital approves it, the coordinator starts it, and the node computes the study's cohort: the
records whose patients permit this use now. A patient revokes; the cohort shrinks. Then a
second hospital joins and a study trains across both on the Flower deployment engine, every
round anchored, a revocation between rounds (deploy/demo/study.py); the coordinator writes the
model card next to the final model and the demo prints its final held-out accuracy, its path and
the robustness table in short (the card's PNGs are under ``run/demo/models/``). Every event is
read back from the chain and shown.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from pydicom.data import get_testdata_file
from rich.console import Console
from rich.table import Table

from contracts.chain import Chain
from contracts.datause import Kind, Purpose, Scope, Use
from contracts.errors import ContractRevert
from contracts.exchange import Exchange
from contracts.manifest import write_manifest
from contracts.roles import Role
from contracts.studies import StudyRequest
from deploy.anvil import start_anvil, stop_anvil
from deploy.demo.study import DemoActors, run_study_part
from deploy.deployer import deploy_contracts
from node.exit_codes import ExitCode

if TYPE_CHECKING:
    from node.cohort import Cohort

_ONE_YEAR = 365 * 24 * 3600
_PATIENTS = ("TEST-P1", "TEST-P2", "TEST-P3", "TEST-P4", "TEST-P5")
_DISEASE = 1234  # a made-up disease code for the demo's disease-specific study
_PASSPHRASE = "demo passphrase, local only"


def _synthetic_sinograms(folder: Path) -> Path:
    """Scan five digital patients on a virtual scanner; return the labels sidecar."""
    from raw_data import Sinogram, get_profile, make_patient, scan_image, write_sinogram

    folder.mkdir(parents=True, exist_ok=True)
    profile = get_profile("compact-head")
    rows = ["file,label"]
    for i, pid in enumerate(_PATIENTS):
        patient = make_patient(100 + i, lesions=i % 2)
        sino = scan_image(patient.image(64), patient.grid(64), profile, seed=i)
        provenance = {**sino.provenance, "patient_id": pid, "synthetic": "true"}
        write_sinogram(folder / f"{pid}.h5", Sinogram(sino.data, sino.geometry, sino.profile, provenance))
        rows.append(f"{pid}.h5,{'lesion' if patient.label else 'normal'}")
    shutil.copy(str(get_testdata_file("CT_small.dcm")), folder / "public-CT_small.dcm")
    (folder / "notes.txt").write_text("a stray file the node must refuse\n", encoding="utf-8")
    sidecar = folder.parent / "labels.csv"
    sidecar.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return sidecar


def _cohort_table(title: str, cohort: Cohort, by_address: dict[str, str]) -> Table:
    table = Table(title=f"{title}: {cohort.count} records", caption=f"cohort root 0x{cohort.root.hex()}")
    table.add_column("patient")
    table.add_column("record (sha256)")
    table.add_column("label")
    for m in cohort.members:
        table.add_row(by_address.get(m.patient, m.patient), m.record_id[:16] + "…", m.label or "")
    return table


def run_demo(run_dir: Path, console: Console | None = None) -> int:
    """Run the demo in ``run_dir`` (a fresh chain and node each time); return an exit code."""
    from node.cohort import build_cohort
    from node.datasets import list_datasets, register, verify
    from node.enrol import enrol, issue_challenge
    from node.ingest import Ingestor, iter_report_lines, read_sidecar
    from node.node import Node
    from tasks import task_code_hash

    out = console or Console(width=150)
    step: Callable[[str], None] = lambda text: out.rule(f"[bold]{text}")  # noqa: E731
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo starts from nothing
    chain_dir = run_dir / "chain"
    state = chain_dir / "state.json"

    step("1. Start a local chain (Anvil, 127.0.0.1)")
    anvil = start_anvil(chain_dir, state_file=state)
    out.print(f"Anvil pid {anvil.pid} at {anvil.rpc_url}, chain id {anvil.chain_id}")
    try:
        chain = Chain(anvil.rpc_url)
        admin = Account.from_key(anvil.dev_keys[0])
        researcher: LocalAccount = Account.create()
        coordinator: LocalAccount = Account.create()
        patients: dict[str, LocalAccount] = {pid: Account.create() for pid in _PATIENTS}
        by_address = {str(a.address): pid for pid, a in patients.items()}

        step("2. Deploy the contracts and grant the initial roles")
        deployment = deploy_contracts(
            chain, admin,
            initial_roles=[(Role.RESEARCHER, researcher.address), (Role.COORDINATOR, coordinator.address)],
            progress=out.print,
        )
        manifest = run_dir / "deployment.json"
        write_manifest(deployment, manifest)
        ex = Exchange(chain, deployment)

        step("3. A hospital node is created; the consortium admin grants it the HOSPITAL role")
        node = Node.init(run_dir / "hospital-node", hospital_name="Demo General Hospital", rpc_url=anvil.rpc_url,
                         manifest=manifest, passphrase=_PASSPHRASE)
        for actor in (node.address, researcher.address, coordinator.address, patients["TEST-P1"].address):
            chain.send_value(admin, actor, 10**18)  # gas money; patients need none to sign
        ex.roles.grant(admin, Role.HOSPITAL, node.address)
        out.print(f"node {node.dir}: hospital address {node.address}")

        step("4. The node ingests raw data: five virtual CT scans, a public DICOM file, a stray file")
        sidecar = _synthetic_sinograms(run_dir / "incoming" / "scans")
        report = Ingestor(node, sidecar=read_sidecar(sidecar)).run([run_dir / "incoming" / "scans"])
        for line in iter_report_lines(report):
            out.print(line, highlight=False, markup=False)

        step("5. Patients enrol: each signs the node's challenge with their own key")
        for pid, key in patients.items():
            text = issue_challenge(node, pid).text
            enrol(node, pid, key.address, key.sign_message(encode_defunct(text=text)).signature.hex())
        out.print(f"{len(patients)} patients linked to their addresses; the challenge they signed reads:")
        out.print(text, highlight=False, markup=False)

        step("6. The node registers its sinogram dataset on chain and verifies it")
        for view in list_datasets(node):
            out.print(f"draft {view.name}: {view.record_count} {view.modality} records")
        dataset = register(node, "ctsinogram-CT-synthetic-v1")
        out.print(f"registered {dataset.name} as chain dataset {dataset.chain_dataset_id}: "
                  f"{dataset.record_count} records, root 0x{dataset.merkle_root}")
        out.print(f"verify: {verify(node) or 'every record matches the disk and the chain'}")

        step("7. Patients sign consent; the coordinator relays it")
        expiry = chain.w3.eth.get_block("latest")["timestamp"] + _ONE_YEAR
        grants = {
            "TEST-P1": (Scope(hospital=node.address, purpose=Purpose.HMB), Kind.CT_SINOGRAM),
            "TEST-P2": (Scope(purpose=Purpose.GRU), Kind.CT_SINOGRAM | Kind.IMAGE),
            "TEST-P3": (Scope(purpose=Purpose.DS, disease=_DISEASE), Kind.CT_SINOGRAM),
            "TEST-P4": (Scope(hospital=node.address, purpose=Purpose.HMB), Kind.IMAGE),
        }
        signed_p1 = None
        for pid, (scope, kinds) in grants.items():
            signed = ex.consent.sign_grant(patients[pid], scope, kinds, expiry)
            tx = ex.consent.relay(coordinator, signed)
            signed_p1 = signed_p1 or signed
            out.print(f"{pid}: signed off-chain, relayed in block {tx.block_number} (gas {tx.gas_used:,})")
        out.print("TEST-P5 grants nothing.")
        try:
            assert signed_p1 is not None
            ex.consent.relay(coordinator, signed_p1)
        except ContractRevert as exc:
            out.print(f"replaying TEST-P1's signature is refused: [yellow]{exc}[/]")

        step(f"8. A researcher requests a study on disease {_DISEASE}; the hospital approves; it starts")
        study_id, _ = ex.studies.request(researcher, StudyRequest(
            purpose=Purpose.DS, disease=_DISEASE, kinds=Kind.CT_SINOGRAM, hospitals=(node.address,),
            task_code_hash=task_code_hash("ct-sinogram-lesion-v1"), rounds=3))
        ex.studies.approve(node.account, study_id)
        ex.studies.start(coordinator, study_id)
        out.print(f"study {study_id} is {ex.studies.study(study_id).status.name}")

        step("9. The node's cohort for the study at this block: consenting, enrolled patients' records")
        use = Use(hospital=node.address, kinds=Kind.CT_SINOGRAM, purpose=Purpose.DS, disease=_DISEASE,
                  study_id=study_id)
        out.print(_cohort_table("cohort before revocation", build_cohort(node, study_id, chain.block_number),
                                by_address))

        step("10. TEST-P1 revokes from their own address; the next cohort leaves them out")
        tx = ex.consent.revoke(patients["TEST-P1"], grants["TEST-P1"][0])
        out.print(f"revoked in block {tx.block_number} (gas {tx.gas_used:,})")
        out.print(_cohort_table("cohort after revocation", build_cohort(node, study_id, tx.block_number),
                                by_address))
        for pid in ("TEST-P1", "TEST-P4", "TEST-P5"):
            try:
                ex.consent.explain(patients[pid].address, use)
            except ContractRevert as exc:
                out.print(f"why not {pid}: [yellow]{exc.error}[/]")

        run_study_part(run_dir, node.dir, DemoActors(chain, ex, admin, researcher, coordinator, manifest, _PASSPHRASE),
                       out, step, first_step=11)

        step("16. Every event, read back from the chain")
        for event in ex.events():
            out.print(f"block {event.block_number:>3}  {event.contract:<16} {event.name:<20} {event.describe()}")
    finally:
        stop_anvil(anvil)
        out.print(f"Anvil stopped; its state is saved in {state}")
    return ExitCode.OK
