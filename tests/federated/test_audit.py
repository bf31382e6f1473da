"""``metai-audit verify`` against a real study, untouched and tampered with, and read again by ``cast``.

One study runs on the module's federation (two hospitals, two rounds, differential privacy, one
patient revoking between the rounds). The untouched bundle must pass every check, and each
cohort must be exactly the set this test computes from the scenario. Then each tampering an
attacker or a bad day could bring (a revoked patient's record slipped into a manifest, a member
dropped, a record from no registered dataset, a forged enrolment, an edited update, swapped
models, changed weights, understated epsilon, a bundle of another study, an endpoint that
reorders or drops events, ...) is made on a copy of the bundle, or in what the endpoint
returns, and the audit must name it with the check and message it concerns. Finally Foundry's
``cast``, an independent client, reads the study's events and views and must agree with what
the audit read.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.crypto import keccak

import audit
from audit.bundle import canonical_json
from audit.hashing import sha256_file
from audit.report import Report
from audit.verify import verify_study
from contracts.datause import Kind, Purpose, Scope
from contracts.manifest import write_manifest
from deploy.process import free_port
from tests.federated.conftest import STUDY_CONFIG, FlowerRun, Hospital, running_study

pytestmark = pytest.mark.slow

NOISE = 2.0
BUDGET_MILLI = 10_000
CAST = Path(__file__).resolve().parents[2] / "node_modules/@foundry-rs/cast-linux-amd64/bin/cast"


@dataclass
class Audited:
    """The study as run, and what the auditor is given."""

    study_id: int
    bundle: Path
    manifest: Path
    rpc_url: str
    hospitals: list[Hospital]
    revoked_patient: str  # address
    revoked_block: int


@pytest.fixture(scope="module")
def audited(module_federation: FlowerRun, module_exchange, actors, hospitals,  # type: ignore[no-untyped-def]
            tmp_path_factory: pytest.TempPathFactory) -> Audited:
    """Run one two-round DP study with a revocation between the rounds; keep its bundle."""
    exchange = module_exchange
    study = running_study(exchange, actors, hospitals, rounds=2, privacy_budget=BUDGET_MILLI)
    revoked_key = next(iter(hospitals[0].patients.values()))
    revoked_at: list[int] = []
    done = threading.Event()

    def revoke_after_round_one() -> None:
        while exchange.studies.round_model_hash(study, 1) == bytes(32):
            if done.wait(0.2):
                return
        tx = exchange.consent.relay(actors.coordinator,
                                    exchange.consent.sign_revoke(revoked_key, Scope(purpose=Purpose.GRU)))
        revoked_at.append(tx.block_number)

    watcher = threading.Thread(target=revoke_after_round_one, daemon=True)
    watcher.start()
    try:
        result = module_federation({**STUDY_CONFIG, "study-id": study, "round-delay": 4.0,
                                    "dp-noise-multiplier": NOISE, "dp-clipping-norm": 1.0})
    finally:
        done.set()
        watcher.join(timeout=30)
    assert result.status == "finished:completed", result.logs[-3000:]
    assert revoked_at, "the revocation was not sent between the rounds"
    folder = tmp_path_factory.mktemp("audited")
    bundle = folder / "bundle"
    shutil.copytree(module_federation.models / f"study-{study}" / "lineage", bundle)
    manifest = folder / "deployment.json"
    write_manifest(exchange.deployment, manifest)
    return Audited(study, bundle, manifest, exchange.chain.rpc_url, hospitals, revoked_key.address, revoked_at[0])


def run_audit(a: Audited, bundle: Path | None = None, rpc_url: str | None = None) -> Report:
    deployment = audit.read_manifest(a.manifest)
    artifacts = audit.read_artifacts()
    reader = audit.connect(rpc_url or a.rpc_url, deployment)
    return verify_study(reader, deployment, artifacts, a.study_id, bundle or a.bundle)


# ---------------------------------------------------------------- no false alarm, and the right cohorts


def test_the_untouched_study_passes_every_check(audited: Audited) -> None:
    report = run_audit(audited)
    assert report.ok, report.text()
    members = sum(len(json.loads(p.read_text())["members"]) for p in audited.bundle.glob("rounds/*/cohorts/*.json"))
    assert report.passed["cohort.consent"] == members > 0
    assert report.passed["cohort.consent_view"] >= 4  # each round and hospital, asked of the contract too
    assert report.passed["dataset.member"] == members
    assert report.passed["aggregation.model"] == 2
    assert report.passed["bundle.anchored"] == 1


def test_each_cohort_is_the_set_the_scenario_permits(audited: Audited) -> None:
    """Round 1: every patient of each hospital (all granted GRU for CT sinograms); round 2: the revoked one gone."""
    for round_ in (1, 2):
        for h in audited.hospitals:
            manifest = json.loads((audited.bundle / f"rounds/{round_}/cohorts/{h.node.address}.json").read_text())
            found = {m["patient"] for m in manifest["members"]}
            expected = {k.address for k in h.patients.values()}
            if round_ == 2:
                expected.discard(audited.revoked_patient)
            assert found == expected, (round_, h.node.address)


# ---------------------------------------------------------------- tampering, each named precisely


def _reindex(bundle: Path) -> None:
    """Rewrite bundle.json with the files' current hashes, as a careful forger would."""
    index = json.loads((bundle / "bundle.json").read_bytes())
    index["files"] = {p.relative_to(bundle).as_posix(): sha256_file(p.read_bytes())
                      for p in sorted(bundle.rglob("*")) if p.is_file() and p.name != "bundle.json"}
    (bundle / "bundle.json").write_bytes(canonical_json(index))


def _edit_json(bundle: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = bundle / name
    data = json.loads(path.read_text())
    change(data)
    path.write_bytes(canonical_json(data))


def _manifest_name(a: Audited, round_: int, hospital: int = 0) -> str:
    return f"rounds/{round_}/cohorts/{a.hospitals[hospital].node.address}.json"


def _revoked_added(a: Audited, bundle: Path) -> None:
    old = json.loads((bundle / _manifest_name(a, 1)).read_text())
    slipped = [m for m in old["members"] if m["patient"] == a.revoked_patient]
    enrolment = [e for e in old["enrolments"] if e["patient"] == a.revoked_patient]

    def add(m: dict[str, Any]) -> None:
        m["members"] = sorted(m["members"] + slipped, key=lambda x: x["record_id"])
        m["enrolments"] = sorted(m["enrolments"] + enrolment, key=lambda x: x["patient"])
    _edit_json(bundle, _manifest_name(a, 2), add)


def _member_dropped(a: Audited, bundle: Path) -> None:
    _edit_json(bundle, _manifest_name(a, 1), lambda m: m["members"].pop())


def _outside_datasets(a: Audited, bundle: Path) -> None:
    def swap(m: dict[str, Any]) -> None:
        m["members"][0]["record_id"] = keccak(text="a record no dataset holds").hex()
        m["members"].sort(key=lambda x: x["record_id"])
    _edit_json(bundle, _manifest_name(a, 1), swap)


def _forged_enrolment(a: Audited, bundle: Path) -> None:
    forger = Account.create()

    def forge(m: dict[str, Any]) -> None:
        e = m["enrolments"][0]
        e["signature"] = forger.sign_message(encode_defunct(text=e["challenge"])).signature.hex()
    _edit_json(bundle, _manifest_name(a, 1), forge)


def _enrolment_for_another_hospital(a: Audited, bundle: Path) -> None:
    pid, key = next(iter(a.hospitals[0].patients.items()))
    other = a.hospitals[1].node.address

    def move(m: dict[str, Any]) -> None:
        e = next(x for x in m["enrolments"] if x["patient"] == key.address)
        text = e["challenge"].replace(a.hospitals[0].node.address, other)
        e["challenge"], e["signature"] = text, key.sign_message(encode_defunct(text=text)).signature.hex()
    _edit_json(bundle, _manifest_name(a, 1), move)
    del pid


def _arrays_edit(bundle: Path, name: str, change: Callable[[list[np.ndarray]], list[np.ndarray]]) -> None:
    path = bundle / name
    with np.load(path) as archive:
        keys = sorted(archive.files)
        arrays = [archive[k] for k in keys]
    changed = change(arrays)
    with open(path, "wb") as fh:
        np.savez(fh, **dict(zip(keys, changed, strict=True)))  # type: ignore[arg-type]


def _update_edited(a: Audited, bundle: Path) -> None:
    def nudge(arrays: list[np.ndarray]) -> list[np.ndarray]:
        arrays[0] = arrays[0].copy()
        arrays[0].flat[0] += np.float32(1e-3)
        return arrays
    _arrays_edit(bundle, f"rounds/1/updates/{a.hospitals[0].node.address}.npz", nudge)


def _model_swapped(a: Audited, bundle: Path) -> None:
    shutil.copyfile(bundle / "rounds/2/model.npz", bundle / "rounds/1/model.npz")


def _final_swapped(a: Audited, bundle: Path) -> None:
    shutil.copyfile(bundle / "rounds/1/model.npz", bundle / "final.npz")


def _weights_changed(a: Audited, bundle: Path) -> None:
    _edit_json(bundle, "rounds/1/aggregation.json", lambda g: g.update(weights=[0.75, 0.25]))


def _counts_changed(a: Audited, bundle: Path) -> None:
    _edit_json(bundle, "rounds/1/aggregation.json",
               lambda g: g.update(cohort_counts=[c + 1 for c in g["cohort_counts"]]))


def _epsilon_understated(a: Audited, bundle: Path) -> None:
    _edit_json(bundle, "rounds/2/aggregation.json", lambda g: g.update(epsilon_after=g["epsilon_after"] / 2))


def _clip_factors_changed(a: Audited, bundle: Path) -> None:
    _edit_json(bundle, "rounds/1/aggregation.json", lambda g: g.update(clip_factors=[0.5] * len(g["clip_factors"])))


def _more_noise_claimed(a: Audited, bundle: Path) -> None:
    _edit_json(bundle, "run.json", lambda r: r["dp"].update(noise_multiplier=r["dp"]["noise_multiplier"] * 2))


def _noise_halved(a: Audited, bundle: Path) -> None:
    _arrays_edit(bundle, "rounds/1/noise.npz", lambda arrays: [x / 2 for x in arrays])


def _other_study(a: Audited, bundle: Path) -> None:
    _edit_json(bundle, "bundle.json", lambda i: i.update(study_id=a.study_id + 1))


def _cohort_block_moved(a: Audited, bundle: Path) -> None:
    _edit_json(bundle, _manifest_name(a, 2), lambda m: m.update(cohort_block=m["cohort_block"] - 1))


def _kind_changed(a: Audited, bundle: Path) -> None:
    _edit_json(bundle, _manifest_name(a, 1), lambda m: m["members"][0].update(kind=int(Kind.IMAGE)))


def _manifest_removed(a: Audited, bundle: Path) -> None:
    (bundle / _manifest_name(a, 2, 1)).unlink()


#: name -> (tampering, re-index the bundle like a careful forger, check expected, words of its message)
TAMPERING: dict[str, tuple[Callable[[Audited, Path], None], bool, str, str]] = {
    "a revoked patient's record added to a later cohort": (_revoked_added, True, "cohort.consent", "revoked in block"),
    "a member dropped from a cohort": (_member_dropped, True, "cohort.root", "the chain anchored"),
    "a record outside every registered dataset": (_outside_datasets, True, "dataset.member",
                                                 "outside that registered dataset"),
    "an enrolment signed by another key": (_forged_enrolment, True, "enrolment.signature", "was signed by"),
    "an enrolment naming another hospital": (_enrolment_for_another_hospital, True, "enrolment.hospital",
                                             "names hospital"),
    "an update edited": (_update_edited, True, "update.hash", "the chain anchored"),
    "a round's model swapped": (_model_swapped, True, "model.round", "the chain recorded"),
    "the final model swapped": (_final_swapped, True, "model.final", "the chain anchored"),
    "aggregation weights changed": (_weights_changed, True, "aggregation.weights", "every update weighs"),
    "cohort counts changed": (_counts_changed, True, "aggregation.counts", "the chain anchored"),
    "epsilon understated": (_epsilon_understated, True, "privacy.bundle", "the accountant gives"),
    "the clipping claimed to have scaled updates down": (_clip_factors_changed, True, "privacy.clip_factors",
                                                          "their norms give"),
    "more noise claimed than added": (_more_noise_claimed, True, "privacy.noise", "implies"),
    "the noise replaced": (_noise_halved, True, "aggregation.model", "recomputed from the 2 updates"),
    "a bundle of another study": (_other_study, True, "bundle.study", "not study"),
    "the cohort block moved": (_cohort_block_moved, True, "cohort.anchored", "cohort_block"),
    "a member's kind changed": (_kind_changed, True, "cohort.kind", "not among the study's kinds"),
    "a contributor's manifest removed": (_manifest_removed, True, "cohort.manifest", "missing or altered"),
    "a file altered, the index left": (_update_edited, False, "bundle.file", "the index lists"),
}


@pytest.mark.parametrize("kind", sorted(TAMPERING))
def test_tampering_is_named_precisely(audited: Audited, tmp_path: Path, kind: str) -> None:
    tamper, reindex, check, words = TAMPERING[kind]
    bundle = tmp_path / "bundle"
    shutil.copytree(audited.bundle, bundle)
    tamper(audited, bundle)
    if reindex:
        _reindex(bundle)
    report = run_audit(audited, bundle)
    assert not report.ok
    named = [f for f in report.findings if f.check == check]
    assert named, f"{kind}: no {check} finding in\n{report.text()}"
    assert any(words in f.message for f in named), f"{kind}: {[f.message for f in named]}"
    if reindex:  # a forger who re-indexes still cannot match the hash the chain anchored
        assert any(f.check == "bundle.anchored" for f in report.findings), report.text()


def test_an_unlisted_file_is_named(audited: Audited, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(audited.bundle, bundle)
    (bundle / "rounds/1/updates/extra.npz").write_bytes(b"not listed")
    report = run_audit(audited, bundle)
    assert [f.where for f in report.findings if f.check == "bundle.file"] == ["rounds/1/updates/extra.npz"]


# ---------------------------------------------------------------- an endpoint that lies


class _LyingEndpoint:
    """A JSON-RPC proxy on a loopback port that passes everything to the chain but rewrites log answers."""

    def __init__(self, upstream: str, rewrite: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = json.loads(body)
                reply = requests.post(upstream, data=body, headers={"Content-Type": "application/json"},
                                      timeout=30).json()
                if isinstance(request, dict) and request.get("method") == "eth_getLogs" and "result" in reply:
                    reply["result"] = outer.rewrite(reply["result"])
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return

        self.rewrite = rewrite
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _LyingEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _study_topic(a: Audited) -> str:
    return "0x" + a.study_id.to_bytes(32, "big").hex()


def test_an_endpoint_that_reorders_the_study_s_events_is_caught(audited: Audited) -> None:
    """The endpoint moves the first contribution before the study's start (it swaps their block and place)."""
    started = keccak(text="StudyStarted(uint256,address)").hex()
    contributed = keccak(text="ContributionRecorded(uint256,uint16,address,bytes32,uint64,uint64,uint256[],"
                              "bytes32)").hex()

    def swap(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        first = {t: next((log for log in logs if log["topics"][0].removeprefix("0x") == t), None)
                 for t in (started, contributed)}
        a, b = first[started], first[contributed]
        if a is not None and b is not None:
            for key in ("blockNumber", "logIndex", "blockHash", "transactionHash", "transactionIndex"):
                a[key], b[key] = b[key], a[key]
        return logs

    with _LyingEndpoint(audited.rpc_url, swap) as endpoint:
        report = run_audit(audited, rpc_url=endpoint.url)
    assert any(f.check == "order.contribution" and "while round 0 was open" in f.message
               for f in report.findings), report.text()


def test_an_endpoint_that_hides_a_revocation_is_caught_by_the_contract_s_own_view(audited: Audited,
                                                                                  tmp_path: Path) -> None:
    """A revoked patient's record slipped into round 2 and the ConsentRevoked log dropped by the endpoint: the
    replay is fooled, the contract's permitsBatch at the cohort block is not."""
    bundle = tmp_path / "bundle"
    shutil.copytree(audited.bundle, bundle)
    _revoked_added(audited, bundle)
    _reindex(bundle)
    revoked = keccak(text="ConsentRevoked(address,bytes32)").hex()

    def drop(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [log for log in logs if log["topics"][0].removeprefix("0x") != revoked]

    with _LyingEndpoint(audited.rpc_url, drop) as endpoint:
        report = run_audit(audited, bundle, rpc_url=endpoint.url)
    assert not [f for f in report.findings if f.check == "cohort.consent"], "the replay should have been fooled"
    assert any(f.check == "cohort.consent_view" for f in report.findings), report.text()


def test_an_endpoint_that_hides_a_role_grant_is_caught(audited: Audited) -> None:
    """Without the hospital's RoleGranted, its contributions come from an account without the role."""
    hospital = audited.hospitals[0].node.address
    granted = keccak(text="RoleGranted(bytes32,address,address)").hex()
    account = "0x" + hospital[2:].lower().rjust(64, "0")

    def drop(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [log for log in logs if not (log["topics"][0].removeprefix("0x") == granted
                                            and log["topics"][2].lower() == account)]

    with _LyingEndpoint(audited.rpc_url, drop) as endpoint:
        report = run_audit(audited, rpc_url=endpoint.url)
    assert any(f.check == "role.contributor" and "did not hold the hospital role" in f.message
               for f in report.findings), report.text()


# ---------------------------------------------------------------- an independent client agrees


def _cast(*args: str) -> str:
    return subprocess.run([str(CAST), *args], check=True, capture_output=True, text=True, timeout=60).stdout.strip()


def test_cast_reads_the_same_events_and_views_as_the_audit(audited: Audited) -> None:
    deployment = audit.read_manifest(audited.manifest)
    registry = deployment.contract("StudyRegistry")
    reader = audit.connect(audited.rpc_url, deployment)
    artifacts = audit.read_artifacts()
    decoder = audit.EventDecoder(artifacts["StudyRegistry"], ["ContributionRecorded", "RoundRecorded"])
    ours = [decoder.decode(log) for log in reader.logs(registry.address, [decoder.topics,
                                                                           audited.study_id.to_bytes(32, "big")],
                                                       registry.block, reader.block_number)]
    theirs = json.loads(_cast("logs", "--json", "--rpc-url", audited.rpc_url, "--address", registry.address,
                              "--from-block", str(registry.block), "--to-block", str(reader.block_number),
                              "ContributionRecorded(uint256 indexed,uint16 indexed,address indexed,bytes32,uint64,"
                              "uint64,uint256[],bytes32)", str(audited.study_id)))
    contributions = [e for e in ours if e.name == "ContributionRecorded"]
    assert [(int(log["blockNumber"], 16), int(log["logIndex"], 16)) for log in theirs] == [
        (e.block, e.log_index) for e in contributions]
    for log, event in zip(theirs, contributions, strict=True):
        fields = _cast("abi-decode", "data()(bytes32,uint64,uint64,uint256[],bytes32)", log["data"]).split("\n")
        assert fields[0] == "0x" + bytes(event.args["cohortRoot"]).hex()
        assert int(fields[1].split()[0]) == event.args["cohortCount"]
        assert int(fields[2].split()[0]) == event.args["cohortBlock"]
        assert fields[3] == "[" + ", ".join(str(d) for d in event.args["datasetIds"]) + "]"
        assert fields[4] == "0x" + bytes(event.args["updateHash"]).hex()
        root = _cast("call", "--rpc-url", audited.rpc_url, registry.address,
                     "cohortRootOf(uint256,uint16,address)(bytes32)", str(audited.study_id),
                     str(event.args["round"]), event.args["hospital"])
        assert root == "0x" + bytes(event.args["cohortRoot"]).hex()
    consent = deployment.contract("ConsentRegistry").address
    block = min(e.args["cohortBlock"] for e in contributions if e.args["round"] == 2)
    hospital = audited.hospitals[0].node.address
    answer = _cast("call", "--rpc-url", audited.rpc_url, "--block", str(block), consent,
                   "permits(address,(address,uint8,uint8,uint32,uint256))(bool)", audited.revoked_patient,
                   f"({hospital},{int(Kind.CT_SINOGRAM)},{int(Purpose.HMB)},0,{audited.study_id})")
    history = audit.read_consent_history(reader, deployment, artifacts)
    replay = history.permits(audited.revoked_patient, audit.Use(hospital=hospital, kinds=int(Kind.CT_SINOGRAM),
                                                                 purpose=int(Purpose.HMB), disease=0,
                                                                 study_id=audited.study_id), reader.instant(block))
    assert answer == "false"
    assert replay is False

