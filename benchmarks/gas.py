"""Gas per contract operation, batch consent relay, and the latency of the batch consent view, on a real Anvil.

Run: ``.venv/bin/python -m benchmarks.gas``. Writes ``benchmarks/results/gas.json`` and the
table in ``benchmarks/README.md``. Gas is deterministic for a given compiler and input; the
batch-view time and the relay rates are wall-clock on this machine (Anvil mines each
transaction at once, so a rate is this machine's client and node, not a chain's block capacity).
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from benchmarks.report import Measurement, write_results
from contracts.chain import Chain
from contracts.consent import ConsentClient
from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope, Use
from contracts.eip712 import SignedConsent
from contracts.exchange import Exchange
from contracts.merkle import MerkleTree, leaf_hash
from contracts.roles import Role
from contracts.studies import StudyRequest
from deploy.anvil import start_anvil, stop_anvil
from deploy.deployer import deploy_contracts

BATCH_PATIENTS = 10_000
GRANTED_PATIENTS = 1_000
VIEW_RUNS = 5
#: Sizes of the relay batches measured (first grants of new patients, the costliest item).
RELAY_BATCHES = (1, 10, 50, 100, 200)
#: Grants relayed one transaction each, for the rate without batching.
SINGLE_RELAYS = 100
#: Half of a 30M block: what a full relay batch must stay under.
HALF_BLOCK = 15_000_000
FAR = 2**40  # a signature deadline far in the future


def _gas(name: str, value: int, target: int | None = None, note: str = "") -> Measurement:
    return Measurement(
        metric=name, value=value, unit="gas",
        target=f"<= {target:,}" if target else "", met=(value <= target) if target else None, note=note,
    )


def _first_grants(consent: ConsentClient, n: int, scope: Scope) -> list[SignedConsent]:
    """``n`` grants signed by new patients (nonce 0, known without asking the chain)."""
    return [consent.sign_grant(Account.create(), scope, Kind.CT_SINOGRAM, NO_EXPIRY, nonce=0, deadline=FAR)
            for _ in range(n)]


def _relay_rows(ex: Exchange, coordinator: LocalAccount) -> list[Measurement]:
    """Gas of batch relays of first grants (per consent, and in all for the largest), and of a refused item."""
    rows = []
    hmb = Scope(purpose=Purpose.HMB)
    for n in RELAY_BATCHES:
        result = ex.consent.relay_batch(coordinator, _first_grants(ex.consent, n, hmb))
        if len(result.relayed) != n or len(result.transactions) != 1:
            raise AssertionError(f"batch of {n}: {len(result.relayed)} relayed in {len(result.transactions)} tx")
        total = result.gas_used
        rows.append(_gas(f"batch relay of {n} first grant{'s' if n > 1 else ''}, gas per consent", round(total / n),
                         note=f"{total:,} gas in all"))
    rows.append(_gas(f"batch relay of {RELAY_BATCHES[-1]} first grants (the most per batch), gas in all", total,
                     HALF_BLOCK, note="half of a 30M block"))
    forged = [dataclasses.replace(s, patient=Account.create().address) for s in _first_grants(ex.consent, 100, hmb)]
    refused = ex.consent.relay_batch(coordinator, forged)
    if len(refused.failed) != 100:
        raise AssertionError(f"{len(refused.failed)} of 100 forged grants refused")
    rows.append(_gas("batch relay, gas per refused item (100 foreign-signer grants)", round(refused.gas_used / 100),
                     note=f"{refused.gas_used:,} gas in all"))
    return rows


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
    rows.append(_gas("direct consent revoke, patient who signed before", revoke.gas_used, 40_000,
                     note="consumes the patient's nonce too: 2 -> 3"))
    relayed_revoke = ex.consent.relay(coordinator, ex.consent.sign_revoke(patient, Scope(purpose=Purpose.GRU)))
    rows.append(_gas("relayed consent revoke", relayed_revoke.gas_used))
    newcomer = Account.create()
    chain.send_value(admin, newcomer.address, 10**17)
    ex.consent.grant(newcomer, hmb, Kind.CT_SINOGRAM, NO_EXPIRY)
    first_revoke = ex.consent.revoke(newcomer, hmb)
    rows.append(_gas("direct consent revoke, patient who never signed", first_revoke.gas_used,
                     note="consumes nonce 0: its storage slot is new"))
    nonce = ex.consent.nonce(patient.address)
    for count in (1, 10, 256):
        cancel = ex.consent.cancel_signatures(patient, nonce + count)
        nonce += count
        most = " (the most per call)" if count == 256 else ""
        rows.append(_gas(f"cancelSignatures, {count} nonce{'s' if count > 1 else ''}{most}", cancel.gas_used))
    rows += _relay_rows(ex, coordinator)

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
    # each contribution names its hospital's registered datasets (one each; three in the last row)
    named = {hospital.address: [parent], hospital2.address: [
        ex.datasets.register(hospital2, keccak(text=f"hospital 2 dataset {i}"), 10, Kind.CT_SINOGRAM, "CT",
                             synthetic=True)[0] for i in range(3)]}
    contributions = []
    for round_ in (1, 2):
        for h in (hospital, hospital2):
            datasets = named[h.address][:1]
            contributions.append(ex.studies.contribute(h, study_id, round_, keccak(bytes([round_])), 500,
                                                       chain.block_number, datasets,
                                                       keccak(h.address.encode())).gas_used)
        rec = ex.studies.record_round(coordinator, study_id, round_, keccak(b"m" + bytes([round_])),
                                      [hospital.address, hospital2.address])
    three = ex.studies.contribute(hospital2, study_id, 3, keccak(b"r3"), 500, chain.block_number,
                                  named[hospital2.address], keccak(b"u3"))
    rows.append(_gas("round contribution per hospital (max of 4)", max(contributions), 80_000,
                     note="one registered dataset named; the cohort block and datasets are in the event"))
    rows.append(_gas("round contribution naming 3 datasets", three.gas_used, 80_000))
    rows.append(_gas("round record (2 contributors)", rec.gas_used))
    rows.append(_gas("study completion", ex.studies.complete(coordinator, study_id, keccak(b"final"),
                                                             keccak(b"lineage bundle")).gas_used,
                     note="stores the final model's and the lineage bundle's hashes"))

    # relay rates: one transaction per consent, then batches (signing is the patients' part, not timed)
    singles = _first_grants(ex.consent, SINGLE_RELAYS, Scope(purpose=Purpose.HMB))
    t0 = time.perf_counter()
    for single in singles:
        ex.consent.relay(coordinator, single)
    single_seconds = time.perf_counter() - t0
    rows.append(Measurement(
        metric="relayed consents per second, one transaction each", value=round(SINGLE_RELAYS / single_seconds, 1),
        unit="1/s", note=f"{SINGLE_RELAYS} first grants; Anvil mines each at once",
    ))

    # batch view over 10,000 patients, GRANTED_PATIENTS of whom consented (relayed in batches)
    patients = [Account.create() for _ in range(BATCH_PATIENTS)]
    grants = [ex.consent.sign_grant(p, Scope(purpose=Purpose.HMB), Kind.CT_SINOGRAM, NO_EXPIRY, nonce=0,
                                    deadline=FAR) for p in patients[:GRANTED_PATIENTS]]
    t0 = time.perf_counter()
    relayed = ex.consent.relay_batch(coordinator, grants)
    grant_seconds = time.perf_counter() - t0
    if len(relayed.relayed) != GRANTED_PATIENTS:
        raise AssertionError(f"{len(relayed.relayed)} of {GRANTED_PATIENTS} batch-relayed grants took effect")
    rate = GRANTED_PATIENTS / grant_seconds
    rows.append(Measurement(
        metric=f"relayed consents per second, batches of {ex.consent.RELAY_CHUNK}", value=round(rate, 1), unit="1/s",
        target=">= 200", met=rate >= 200,
        note=f"{GRANTED_PATIENTS:,} first grants in {len(relayed.transactions)} transactions; Anvil mines each at once",
    ))
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
        "batch_relayed_grants": GRANTED_PATIENTS,
        "batch_relayed_grants_s": round(grant_seconds, 2),
        "single_relayed_grants": SINGLE_RELAYS,
        "single_relayed_grants_s": round(single_seconds, 2),
    }
    return rows, extra


if __name__ == "__main__":
    main()
