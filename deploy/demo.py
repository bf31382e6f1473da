"""The end-to-end demo of the exchange's chain layer (``make demo``).

A local chain starts; the contracts are deployed; a hospital registers a dataset of synthetic
records as a Merkle root; patients sign consent with their own keys and the coordinator relays
it; the batch view answers which patients permit the hospital's use; one patient revokes from
their own address; the view answers again; every event is read back from the chain and shown.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.table import Table

from contracts.chain import Chain
from contracts.datause import Kind, Purpose, Scope, Use
from contracts.errors import ContractRevert
from contracts.exchange import Exchange
from contracts.manifest import write_manifest
from contracts.merkle import MerkleTree, leaf_hash
from contracts.roles import Role
from deploy.anvil import start_anvil, stop_anvil
from deploy.deployer import deploy_contracts

_ONE_YEAR = 365 * 24 * 3600
_RECORD_LEAF_TYPES = ("bytes32", "uint8", "bytes32")  # record id, kind, content sha256


def _synthetic_records(count: int, seed: int) -> list[bytes]:
    """Leaves of ``count`` synthetic sinogram records (content made here, nothing real)."""
    leaves = []
    for i in range(count):
        content = hashlib.sha256(f"metai-demo synthetic sinogram {seed}/{i}".encode()).digest()
        record_id = hashlib.sha256(b"record" + content).digest()
        leaves.append(leaf_hash(_RECORD_LEAF_TYPES, [record_id, int(Kind.CT_SINOGRAM), content]))
    return leaves


def _permission_table(
    ex: Exchange, title: str, patients: dict[str, LocalAccount], use: Use
) -> Table:
    answers = ex.consent.permits_batch([p.address for p in patients.values()], use)
    table = Table(title=title)
    table.add_column("patient")
    table.add_column("address")
    table.add_column("permits use now")
    for (name, account), ok in zip(patients.items(), answers, strict=True):
        table.add_row(name, account.address, "[green]yes[/]" if ok else "[red]no[/]")
    return table


def run_demo(run_dir: Path, console: Console | None = None) -> int:
    """Run the demo in ``run_dir`` (a fresh chain each time); return a process exit code."""
    out = console or Console(width=150)
    step: Callable[[str], None] = lambda text: out.rule(f"[bold]{text}")  # noqa: E731
    chain_dir = run_dir / "chain"
    state = chain_dir / "state.json"
    state.unlink(missing_ok=True)  # the demo starts from an empty chain

    step("1. Start a local chain (Anvil, 127.0.0.1)")
    node = start_anvil(chain_dir, state_file=state)
    out.print(f"Anvil pid {node.pid} at {node.rpc_url}, chain id {node.chain_id}")
    try:
        chain = Chain(node.rpc_url)
        admin = Account.from_key(node.dev_keys[0])
        hospital: LocalAccount = Account.create()
        researcher: LocalAccount = Account.create()
        coordinator: LocalAccount = Account.create()
        patients: dict[str, LocalAccount] = {f"patient-{i}": Account.create() for i in range(1, 6)}
        for actor in (hospital, researcher, coordinator, patients["patient-1"]):
            chain.send_value(admin, actor.address, 10**18)  # gas money; patients need none to sign

        step("2. Deploy the contracts and grant the initial roles")
        deployment = deploy_contracts(
            chain,
            admin,
            initial_roles=[
                (Role.HOSPITAL, hospital.address),
                (Role.RESEARCHER, researcher.address),
                (Role.COORDINATOR, coordinator.address),
            ],
            progress=out.print,
        )
        manifest = run_dir / "deployment.json"
        write_manifest(deployment, manifest)
        out.print(f"deployment manifest: {manifest}")
        ex = Exchange(chain, deployment)

        step("3. The hospital registers a dataset (Merkle root over its record leaves)")
        tree = MerkleTree(_synthetic_records(64, seed=int(time.time())))
        dataset_id, tx = ex.datasets.register(
            hospital, tree.root, len(tree), Kind.CT_SINOGRAM, "CT", synthetic=True
        )
        out.print(f"dataset {dataset_id}: {len(tree)} records, root 0x{tree.root.hex()}, gas {tx.gas_used:,}")
        probe = tree.leaves[7]
        out.print(f"the chain confirms record 7 with a {len(tree.proof(probe))}-hash proof: "
                  f"{ex.datasets.contains_record(dataset_id, probe, tree.proof(probe))}")

        step("4. Patients sign consent with their own keys; the coordinator relays it")
        expiry = chain.w3.eth.get_block("latest")["timestamp"] + _ONE_YEAR
        grants = {
            "patient-1": (Scope(hospital=hospital.address, purpose=Purpose.HMB), Kind.CT_SINOGRAM),
            "patient-2": (Scope(purpose=Purpose.GRU), Kind.CT_SINOGRAM | Kind.IMAGE),
            "patient-3": (Scope(purpose=Purpose.DS, disease=1234), Kind.CT_SINOGRAM),
            "patient-4": (Scope(hospital=hospital.address, purpose=Purpose.HMB), Kind.IMAGE),
        }
        signed_by: dict[str, object] = {}
        for name, (scope, kinds) in grants.items():
            signed = ex.consent.sign_grant(patients[name], scope, kinds, expiry)
            tx = ex.consent.relay(coordinator, signed)
            signed_by[name] = signed
            out.print(f"{name}: signed off-chain, relayed in block {tx.block_number} (gas {tx.gas_used:,})")
        out.print("patient-5 grants nothing.")
        try:
            ex.consent.relay(coordinator, signed_by["patient-1"])  # type: ignore[arg-type]
        except ContractRevert as exc:
            out.print(f"replaying patient-1's signature is refused: [yellow]{exc}[/]")

        use = Use(hospital=hospital.address, kinds=Kind.CT_SINOGRAM, purpose=Purpose.DS, disease=1234)
        step("5. Which patients permit CT sinograms for research on disease 1234 at this hospital?")
        out.print(_permission_table(ex, "batch view, before revocation", patients, use))

        step("6. patient-1 revokes from their own address")
        tx = ex.consent.revoke(patients["patient-1"], grants["patient-1"][0])
        out.print(f"revoked in block {tx.block_number} (gas {tx.gas_used:,})")
        out.print(_permission_table(ex, "batch view, after revocation", patients, use))
        for name in ("patient-1", "patient-4", "patient-5"):
            try:
                ex.consent.explain(patients[name].address, use)
            except ContractRevert as exc:
                out.print(f"why not {name}: [yellow]{exc}[/]")

        step("7. Every event, read back from the chain")
        for event in ex.events():
            out.print(f"block {event.block_number:>3}  {event.contract:<16} {event.name:<18} {event.describe()}")
    finally:
        stop_anvil(node)
        out.print(f"Anvil stopped; its state is saved in {state}")
    return 0
