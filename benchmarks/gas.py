"""Gas per contract operation and the latency of the batch consent view, on a real Anvil.

Run: ``.venv/bin/python -m benchmarks.gas``. Writes ``benchmarks/results/gas.json`` and the
table in ``benchmarks/README.md``. Gas is deterministic for a given compiler and input; the
batch-view time is wall-clock on this machine (median of several runs).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from eth_account import Account
from eth_utils.crypto import keccak

from benchmarks.report import Measurement, write_results
from contracts.chain import Chain
from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope, Use
from contracts.exchange import Exchange
from contracts.merkle import MerkleTree, leaf_hash
from contracts.roles import Role
from contracts.studies import StudyRequest
from deploy.anvil import start_anvil, stop_anvil
from deploy.deployer import deploy_contracts

BATCH_PATIENTS = 10_000
GRANTED_PATIENTS = 1_000
VIEW_RUNS = 5


def _gas(name: str, value: int, target: int | None = None, note: str = "") -> Measurement:
    return Measurement(
        metric=name, value=value, unit="gas",
        target=f"<= {target:,}" if target else "", met=(value <= target) if target else None, note=note,
    )


def main() -> None:
    """Measure and write the results."""
    with tempfile.TemporaryDirectory() as tmp:
        node = start_anvil(Path(tmp))
        try:
            rows, extra = _measure(Chain(node.rpc_url), node.dev_keys)
        finally:
            stop_anvil(node)
    path = write_results("gas", rows, extra)
    for m in rows:
        print(f"{m.metric:<55} {m.value:>14,.3f} {m.unit:<8} {m.target:<12} {m.met}")
    print(f"wrote {path}")


def _measure(chain: Chain, dev_keys: tuple[str, ...]) -> tuple[list[Measurement], dict[str, object]]:
    admin, hospital, hospital2, researcher, coordinator = (Account.from_key(k) for k in dev_keys[:5])
    deployment = deploy_contracts(chain, admin, initial_roles=[
        (Role.HOSPITAL, hospital.address), (Role.HOSPITAL, hospital2.address),
        (Role.RESEARCHER, researcher.address), (Role.COORDINATOR, coordinator.address),
    ])
    ex = Exchange(chain, deployment)
    rows: list[Measurement] = []

    # consent
    patient = Account.create()
    chain.send_value(admin, patient.address, 10**17)
    hmb = Scope(hospital=hospital.address, purpose=Purpose.HMB)
    first = ex.consent.relay(coordinator, ex.consent.sign_grant(patient, hmb, Kind.CT_SINOGRAM, NO_EXPIRY))
    rows.append(_gas("relayed consent grant (patient's first signature)", first.gas_used, 100_000))
    again = ex.consent.relay(coordinator, ex.consent.sign_grant(patient, Scope(purpose=Purpose.GRU),
                                                                Kind.IMAGE, NO_EXPIRY))
    rows.append(_gas("relayed consent grant (later signature)", again.gas_used, 100_000))
    direct = ex.consent.grant(patient, Scope(purpose=Purpose.DS, disease=7), Kind.IMAGE, NO_EXPIRY)
    rows.append(_gas("direct consent grant", direct.gas_used))
    revoke = ex.consent.revoke(patient, hmb)
    rows.append(_gas("direct consent revoke", revoke.gas_used, 40_000))
    relayed_revoke = ex.consent.relay(coordinator, ex.consent.sign_revoke(patient, Scope(purpose=Purpose.GRU)))
    rows.append(_gas("relayed consent revoke", relayed_revoke.gas_used))

    # datasets: the same gas for 1 and for 100,000 records
    one = MerkleTree([leaf_hash(["uint256"], [0])])
    t0 = time.perf_counter()
    big = MerkleTree(leaf_hash(["uint256"], [i]) for i in range(1, 100_001))
    tree_seconds = time.perf_counter() - t0
    parent, tx1 = ex.datasets.register(hospital, one.root, 1, Kind.CT_SINOGRAM, "CT", synthetic=True)
    _, tx100k = ex.datasets.register(hospital, big.root, len(big), Kind.CT_SINOGRAM, "CT", synthetic=True)
    rows.append(_gas("dataset registration, 1 record", tx1.gas_used, 150_000))
    rows.append(_gas("dataset registration, 100,000 records", tx100k.gas_used, 150_000,
                     note="differs from 1 record only by calldata bytes of the count"))
    _, derived = ex.datasets.register(hospital, keccak(b"derived"), 1, Kind.IMAGE | Kind.DERIVED, "CT",
                                      synthetic=True, parents=[parent], transform_hash=keccak(b"fbp"))
    rows.append(_gas("derived dataset registration (1 parent)", derived.gas_used))

    # studies
    req = StudyRequest(purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(hospital.address, hospital2.address),
                       task_code_hash=keccak(b"task"), rounds=3)
    study_id, tx = ex.studies.request(researcher, req)
    rows.append(_gas("study request (2 hospitals)", tx.gas_used))
    rows.append(_gas("study approval", ex.studies.approve(hospital, study_id).gas_used))
    ex.studies.approve(hospital2, study_id)
    rows.append(_gas("study start", ex.studies.start(coordinator, study_id).gas_used))
    contributions = []
    for round_ in (1, 2):
        for h in (hospital, hospital2):
            contributions.append(ex.studies.contribute(h, study_id, round_, keccak(bytes([round_])), 500,
                                                       keccak(h.address.encode())).gas_used)
        rec = ex.studies.record_round(coordinator, study_id, round_, keccak(b"m" + bytes([round_])),
                                      [hospital.address, hospital2.address])
    rows.append(_gas("round contribution per hospital (max of 4)", max(contributions), 80_000))
    rows.append(_gas("round record (2 contributors)", rec.gas_used))
    rows.append(_gas("study completion", ex.studies.complete(coordinator, study_id, keccak(b"final")).gas_used))

    # batch view over 10,000 patients, GRANTED_PATIENTS of whom consented
    patients = [Account.create() for _ in range(BATCH_PATIENTS)]
    t0 = time.perf_counter()
    for p in patients[:GRANTED_PATIENTS]:
        ex.consent.relay(coordinator, ex.consent.sign_grant(p, Scope(purpose=Purpose.HMB), Kind.CT_SINOGRAM,
                                                            NO_EXPIRY))
    grant_seconds = time.perf_counter() - t0
    use = Use(hospital=hospital.address, kinds=Kind.CT_SINOGRAM, purpose=Purpose.DS, disease=5, study_id=study_id)
    addresses = [p.address for p in patients]
    timings = []
    for _ in range(VIEW_RUNS):
        t0 = time.perf_counter()
        answers = ex.consent.permits_batch(addresses, use)
        timings.append(time.perf_counter() - t0)
    if sum(answers) != GRANTED_PATIENTS:
        raise AssertionError(f"batch view found {sum(answers)} permitting patients, expected {GRANTED_PATIENTS}")
    median = statistics.median(timings)
    rows.append(Measurement(
        metric=f"batch consent view, {BATCH_PATIENTS:,} patients (median of {VIEW_RUNS})", value=round(median, 4),
        unit="s", target="< 1", met=median < 1.0,
        note=f"{ex.consent.BATCH_CHUNK:,} patients per eth_call",
    ))
    extra = {
        "view_runs_s": [round(t, 4) for t in timings],
        "merkle_tree_100k_build_s": round(tree_seconds, 3),
        "relayed_grants": GRANTED_PATIENTS,
        "relayed_grants_s": round(grant_seconds, 2),
        "relayed_grants_per_s": round(GRANTED_PATIENTS / grant_seconds, 1),
    }
    return rows, extra


if __name__ == "__main__":
    main()
