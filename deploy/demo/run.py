"""The end-to-end demo of the exchange (``make demo``), through the coordinator's API.

A local chain starts and the contracts are deployed. A hospital node is created, ingests
synthetic CT sinograms of five digital patients (plus a public DICOM file and a file it must
refuse), de-identifies them, and anchors them on chain as a dataset. Patients enrol with their
own keys. The coordinator service starts as a process of its own (deploy/demo/service.py), and
from then on patients and researchers use it over HTTP as a wallet script would
(deploy/demo/api.py): patients sign in and sign consent, which the service relays; a replayed
signature is refused; a researcher requests a study with a transaction the API prepares; the
hospital approves, the coordinator starts it, and the node computes the study's cohort. A
patient revokes through the API; the cohort shrinks. Then a second hospital joins and a study
trains across both on the Flower deployment engine, started, followed and downloaded through
the API (deploy/demo/study.py). Every event is read back from the chain, and a patient's
receipt is fetched and its proofs verified on chain (deploy/demo/receipt.py). The service and
the chain are stopped at the end, unless ``serve`` asks to leave them running for the portal.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from pydicom.data import get_testdata_file
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from contracts.chain import Chain
from contracts.datause import Kind, Purpose, Use
from contracts.errors import ContractRevert
from contracts.exchange import Exchange
from contracts.manifest import write_manifest
from contracts.roles import Role
from deploy.anvil import start_anvil, stop_anvil
from deploy.demo.api import JSON, ApiError, Coordinator, Session, request_study
from deploy.demo.receipt import show_receipt
from deploy.demo.service import DemoService
from deploy.demo.study import DemoActors, run_study_part
from deploy.deployer import deploy_contracts
from deploy.errors import DeployError
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


def _relayed(item: JSON) -> str:
    """Where a mined relay item landed, in short."""
    return (f"relayed in block {item['block']}, transaction {item['tx_hash'][:18]}…, "
            f"consent {item['consent_id'][:18]}…")


def run_demo(run_dir: Path, console: Console | None = None, *, serve: bool = False) -> int:
    """Run the demo in ``run_dir`` (a fresh chain and node each time); return an exit code.

    With ``serve``, the coordinator service and the chain are left running once the demo succeeded,
    so that a person can open the portal; otherwise (and whenever it fails) they are stopped.
    """
    from node.cohort import build_cohort
    from node.datasets import list_datasets, register, verify
    from node.enrol import enrol, issue_challenge
    from node.ingest import Ingestor, iter_report_lines, read_sidecar
    from node.node import Node

    out = console or Console(width=150)
    step: Callable[[str], None] = lambda text: out.rule(f"[bold]{text}")  # noqa: E731
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo starts from nothing
    chain_dir = run_dir / "chain"
    state = chain_dir / "state.json"

    step("1. Start a local chain (Anvil, 127.0.0.1)")
    anvil = start_anvil(chain_dir, state_file=state)
    out.print(f"Anvil pid {anvil.pid} at {anvil.rpc_url}, chain id {anvil.chain_id}")
    service: DemoService | None = None
    api: Coordinator | None = None
    succeeded = False
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

        step("3. A hospital node is created; the consortium admin grants it the HOSPITAL role; the coordinator "
             "service starts")
        node = Node.init(run_dir / "hospital-node", hospital_name="Demo General Hospital", rpc_url=anvil.rpc_url,
                         manifest=manifest, passphrase=_PASSPHRASE)
        for actor in (node.address, researcher.address, coordinator.address):
            chain.send_value(admin, actor, 10**18)  # gas money; patients need none: the coordinator relays
        ex.roles.grant(admin, Role.HOSPITAL, node.address)
        out.print(f"node {node.dir}: hospital address {node.address}")
        # The coordinator service starts in the background while the node works; step 7 waits for it.
        service = DemoService.configure(run_dir / "coordinator", chain, admin, coordinator, manifest,
                                        run_dir / "models")
        service.launch()
        out.print(f"coordinator service pid {service.pid} starting at {service.url} (database "
                  f"{service.settings.database_url.removeprefix('sqlite:///')}, log {service.log_file})",
                  highlight=False, soft_wrap=True)

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

        step("7. Patients sign in to the coordinator service and consent through its API; it relays")
        service.wait_ready()
        api = Coordinator(service.url)
        out.print(f"the coordinator service answers at {service.url}: {api.health()['status']}", highlight=False)
        expiry = chain.w3.eth.get_block("latest")["timestamp"] + _ONE_YEAR
        at_node = {"hospital": node.address, "purpose": "HMB"}
        grants: dict[str, JSON] = {
            "TEST-P1": {"scope": at_node, "kinds": ["ct-sinogram"], "expires_at": expiry},
            "TEST-P2": {"scope": {"purpose": "GRU"}, "kinds": ["ct-sinogram", "image"], "expires_at": expiry},
            "TEST-P3": {"scope": {"purpose": "DS", "disease": _DISEASE}, "kinds": ["ct-sinogram"],
                        "expires_at": expiry},
            "TEST-P4": {"scope": at_node, "kinds": ["image"], "expires_at": expiry},
        }
        sessions = {pid: api.sign_in(patients[pid]) for pid in grants}
        signed = {pid: sessions[pid].sign_consent({"action": "grant", **grant}) for pid, grant in grants.items()}
        submitted = {pid: sessions[pid].submit(*signed[pid]) for pid in grants}
        for pid, item in submitted.items():
            mined = sessions[pid].wait_mined(item["id"])
            out.print(f"{pid}: signed in, signed typed data (nonce {mined['nonce']}), {_relayed(mined)}")
        out.print("TEST-P5 grants nothing.")
        try:
            sessions["TEST-P1"].submit(*signed["TEST-P1"])
        except ApiError as exc:
            out.print(f"replaying TEST-P1's signature is refused: [yellow]{exc.status} {exc.problem}[/]: "
                      f"{escape(exc.detail)}")
        else:
            out.print("[red]replaying TEST-P1's signature was accepted[/]")

        step(f"8. A researcher requests a study on disease {_DISEASE} through the API; the hospital approves; "
             "the coordinator starts it")
        study_id, summary = request_study(api.sign_in(researcher), chain, {
            "purpose": "DS", "disease": _DISEASE, "kinds": ["ct-sinogram"], "hospitals": [node.address],
            "task": "ct-sinogram-lesion-v1", "rounds": 3})
        out.print(f"prepared by the API, signed and sent by the researcher's wallet: {summary}")
        ex.studies.approve(node.account, study_id)
        ex.studies.start(coordinator, study_id)
        out.print(f"study {study_id} is {ex.studies.study(study_id).status.name}")

        step("9. The node's cohort for the study at this block: consenting, enrolled patients' records")
        use = Use(hospital=node.address, kinds=Kind.CT_SINOGRAM, purpose=Purpose.DS, disease=_DISEASE,
                  study_id=study_id)
        out.print(_cohort_table("cohort before revocation", build_cohort(node, study_id, chain.block_number),
                                by_address))

        step("10. TEST-P1 revokes through the API (a signed revocation, relayed); the next cohort leaves them out")
        revocation = sessions["TEST-P1"].sign_consent({"action": "revoke", "scope": at_node})
        revoked = sessions["TEST-P1"].wait_mined(sessions["TEST-P1"].submit(*revocation)["id"])
        out.print(f"TEST-P1's revocation: {_relayed(revoked)}")
        out.print(_cohort_table("cohort after revocation", build_cohort(node, study_id, revoked["block"]),
                                by_address))
        for pid in ("TEST-P1", "TEST-P4", "TEST-P5"):
            try:
                ex.consent.explain(patients[pid].address, use)
            except ContractRevert as exc:
                out.print(f"why not {pid}: [yellow]{exc.error}[/]")

        actors = DemoActors(chain, ex, admin, researcher, coordinator, manifest, _PASSPHRASE, service, api)
        part = run_study_part(run_dir, node.dir, actors, out, step, first_step=11)

        step(f"{part.next_step}. Every event, read back from the chain")
        for event in ex.events():
            out.print(f"block {event.block_number:>3}  {event.contract:<16} {event.name:<20} {event.describe()}")

        step(f"{part.next_step + 1}. {part.leaving_pid} signs in and checks their receipt: every proof on chain")
        show_receipt(out, api, ex, part.leaving_key, part.leaving_pid, run_dir / f"receipt-{part.leaving_pid}.json")

        step(f"{part.next_step + 2}. An auditor re-derives the whole study with metai-audit: the chain through its "
             "RPC endpoint, the lineage bundle from the coordinator")
        _audit(out, api.sign_in(coordinator), chain.rpc_url, manifest, part.study_id, run_dir)
        succeeded = True
    finally:
        if api is not None:
            api.close()
        if serve and succeeded and service is not None:
            _leave_running(out, run_dir, service, anvil.pid, researcher, part.leaving_key, part.leaving_pid)
        else:
            if service is not None:
                service.stop()
                out.print(f"coordinator service stopped (pid {', '.join(map(str, service.pids))})")
            stop_anvil(anvil)
            out.print(f"Anvil stopped; its state is saved in {state}")
    return ExitCode.OK


def _audit(out: Console, operator: Session, rpc_url: str, manifest: Path, study_id: int, run_dir: Path) -> None:
    """Download the study's lineage bundle and run ``metai-audit verify`` on it, as a separate process.

    Raises:
        DeployError: the audit found a mismatch or could not run.
    """
    folder = run_dir / "audit"
    if folder.exists():
        shutil.rmtree(folder)
    bundle, anchored = operator.download_lineage(study_id, folder)
    files = sum(1 for p in bundle.rglob("*") if p.is_file())
    out.print(f"GET /v1/studies/{study_id}/lineage/bundle as the coordinator: {files} files, lineage hash {anchored}")
    command = [sys.executable, "-m", "audit", "verify", "--rpc-url", rpc_url, "--manifest", str(manifest),
               "--study", str(study_id), "--bundle", str(bundle), "--json", str(folder / "report.json")]
    out.print("$ metai-audit verify --rpc-url " + rpc_url + f" --manifest {manifest.name} --study {study_id} "
              f"--bundle audit/{bundle.name} --json audit/report.json", highlight=False)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    out.print(done.stdout.rstrip(), highlight=False, soft_wrap=True)
    if done.returncode != 0:
        raise DeployError(f"metai-audit verify exited {done.returncode}: {done.stderr.strip() or 'see its report'}")


def _leave_running(out: Console, run_dir: Path, service: DemoService, anvil_pid: int, researcher: LocalAccount,
                   patient: LocalAccount, patient_pid: str) -> None:
    """Say where the portal is, which demo keys sign in to it, and how to stop what is left running."""
    keys = run_dir / "demo-keys.json"
    keys.write_text(json.dumps({"researcher": "0x" + researcher.key.hex(), patient_pid: "0x" + patient.key.hex()},
                               indent=2) + "\n", encoding="utf-8")
    keys.chmod(0o600)
    out.rule("[bold]The coordinator and the chain are left running (--serve)")
    out.print(f"portal: {service.url}/  (API docs: {service.url}/v1/docs)", highlight=False)
    out.print(f"sign in there with a key kept in the browser: import the researcher's or {patient_pid}'s key from "
              f"{keys} (throwaway keys of this local chain)", highlight=False, soft_wrap=True)
    out.print(f"stop them with: kill {service.pid} {anvil_pid}   (the chain saves its state on stop)",
              highlight=False)
    # Left running on purpose: Python need not warn at exit that these children still run.
    warnings.filterwarnings("ignore", r"subprocess \d+ is still running", ResourceWarning)
