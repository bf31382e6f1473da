"""``metai-audit verify``: re-derive one study's whole lineage from the chain and its bundle.

Reads, with the audit's own code, the study's events in chain order and the roles each actor
held at each action's block; then, per round and contributing hospital, the cohort manifest
(its members rebuild the anchored root; every member permitted at the anchored cohort block by
a replay of the consent events, cross-checked with the contract's own ``permitsBatch`` at that
block; every member in a dataset the hospital registered, by its Merkle proof; every patient's
signed enrolment), the update against its anchored hash, the round's model recomputed from the
updates, the privacy spent recomputed with the same accountant, the final model, and the bundle
against the anchored lineage hash. Every mismatch becomes a finding in the :class:`Report`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi.abi import decode, encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from audit.aggregate import check_round
from audit.artifacts import Artifact, artifact_named
from audit.bundle import Bundle, open_bundle
from audit.consent import ConsentHistory, read_consent_history
from audit.datause import Use
from audit.errors import AuditError, CallReverted, ReplayError, RpcError
from audit.events import Event, EventDecoder
from audit.hashing import cohort_leaf, merkle_root, record_leaf, verify_proof, weights_hash
from audit.manifest import Deployment
from audit.report import Report
from audit.roles import RoleHistory, read_role_history
from audit.rpc import ChainReader

__all__ = ["verify_study"]

HOSPITAL = keccak(text="HOSPITAL_ROLE")
RESEARCHER = keccak(text="RESEARCHER_ROLE")
COORDINATOR = keccak(text="COORDINATOR_ROLE")
STUDY_EVENTS = ("StudyRequested", "StudyApproved", "StudyDeclined", "StudyWithdrawn", "StudyStarted",
                "ContributionRecorded", "RoundRecorded", "StudyCompleted")
_HOSPITAL_LINE = re.compile(r"^Hospital: .*\((0x[0-9a-fA-F]{40})\)$", re.MULTILINE)


@dataclass(frozen=True)
class Dataset:
    """A registered dataset as its event records it."""

    dataset_id: int
    hospital: str
    root: bytes
    kinds: int
    block: int


def _short(address: str) -> str:
    return address[:10] + "…"


def verify_study(reader: ChainReader, deployment: Deployment, artifacts: Mapping[str, Artifact], study_id: int,
                 bundle_dir: Path) -> Report:
    """Audit study ``study_id`` of ``deployment`` on ``reader``'s chain against the bundle in ``bundle_dir``."""
    last = reader.block_number
    report = Report(study_id, deployment.chain_id, last)
    registry = deployment.contract("StudyRegistry")
    try:
        events = _study_events(reader, artifact_named(artifacts, "StudyRegistry"), registry.address, study_id,
                               registry.block, last, report)
        roles = read_role_history(reader, deployment, artifacts, to_block=last)
        consents = read_consent_history(reader, deployment, artifacts, to_block=last)
        datasets = _datasets(reader, deployment, artifacts, last)
    except ReplayError as exc:
        report.fail("chain.events", f"study {study_id}", f"the chain's events do not replay: {exc}")
        return report
    if not events or events[0].name != "StudyRequested":
        report.fail("chain.events", f"study {study_id}", "no StudyRequested event: no such study on this chain")
        return report
    study = _Study(events)
    report.summary.update({"researcher": study.researcher, "hospitals": ", ".join(study.hospitals),
                           "rounds recorded": len(study.rounds), "status": study.status})
    _check_lifecycle(study, roles, report)
    _check_senders(reader, study, roles, report)
    _check_views(reader, registry.address, artifact_named(artifacts, "StudyRegistry"), study, last, report)
    bundle = open_bundle(bundle_dir, report)
    if bundle is None:
        return report
    _check_bundle_identity(bundle, deployment, study, report)
    consent_address = deployment.contract("ConsentRegistry").address
    for round_, record in sorted(study.rounds.items()):
        for hospital in record.args["contributors"]:
            hospital = to_checksum_address(hospital)
            contribution = study.contributions.get((round_, hospital))
            where = f"round {round_}, hospital {hospital}"
            if contribution is None:
                report.fail("round.contributors", where, "aggregated by RoundRecorded but has no ContributionRecorded")
                continue
            report.check("role.contributor", roles.has_role(HOSPITAL, hospital, contribution.block), where,
                         f"did not hold the hospital role at its contribution's block {contribution.block}")
            report.check("role.contributor", roles.has_role(HOSPITAL, hospital, record.block), where,
                         f"did not hold the hospital role when the round was recorded (block {record.block})")
            _check_cohort(reader, consent_address, artifact_named(artifacts, "ConsentRegistry"), consents,
                          datasets, bundle, study, round_, hospital, contribution, report)
            name = f"rounds/{round_}/updates/{hospital}.npz"
            if report.check("update.present", bundle.has(name), where, f"{name} missing or altered"):
                found = weights_hash(bundle.arrays(name))
                report.check("update.hash", found == bytes(contribution.args["updateHash"]), where,
                             f"the stored update hashes to 0x{found.hex()}, the chain anchored "
                             f"0x{bytes(contribution.args['updateHash']).hex()}")
        check_round(bundle, study.rounds, round_, study.contributions, study.privacy_budget, report)
    _check_final(bundle, study, report)
    return report


class _Study:
    """The study's events, sorted out: request, decisions, start, contributions, rounds, completion."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        request = events[0]
        self.request = request
        self.researcher = to_checksum_address(request.args["researcher"])
        self.hospitals = [to_checksum_address(h) for h in request.args["hospitals"]]
        self.purpose, self.disease = int(request.args["purpose"]), int(request.args["disease"])
        self.kinds, self.rounds_requested = int(request.args["kinds"]), int(request.args["rounds"])
        self.privacy_budget = int(request.args["privacyBudget"])
        self.started: Event | None = None
        self.completed: Event | None = None
        self.contributions: dict[tuple[int, str], Event] = {}
        self.rounds: dict[int, Event] = {}
        for e in events:
            if e.name == "StudyStarted":
                self.started = e
            elif e.name == "StudyCompleted":
                self.completed = e
            elif e.name == "ContributionRecorded":
                self.contributions[(int(e.args["round"]), to_checksum_address(e.args["hospital"]))] = e
            elif e.name == "RoundRecorded":
                self.rounds[int(e.args["round"])] = e
        self.status = ("completed" if self.completed else "running" if self.started else
                       "withdrawn" if any(e.name == "StudyWithdrawn" for e in events) else
                       "declined" if any(e.name == "StudyDeclined" for e in events) else "requested")

    def opened(self, round_: int) -> int | None:
        """The block that opened ``round_``: the start for round 1, the previous round's record after."""
        if round_ == 1:
            return self.started.block if self.started else None
        previous = self.rounds.get(round_ - 1)
        return previous.block if previous else None


def _study_events(reader: ChainReader, artifact: Artifact, address: str, study_id: int, first: int, last: int,
                  report: Report) -> list[Event]:
    """The study's events in chain order (block, then log index); a finding if two claim the same place.

    Their order is taken from the positions the logs state, never from the order an endpoint lists
    them in; an endpoint that moves an event changes those positions, which the lifecycle checks
    then find out of order.
    """
    decoder = EventDecoder(artifact, STUDY_EVENTS)
    events = [decoder.decode(log) for log in reader.logs(address, [decoder.topics, study_id.to_bytes(32, "big")],
                                                         first, last)]
    places = [(e.block, e.log_index) for e in events]
    report.check("chain.order", len(set(places)) == len(places), f"study {study_id}",
                 "two of the study's events claim the same block and log index: "
                 + ", ".join(f"{e.name}@{e.block}:{e.log_index}" for e in events))
    return sorted(events, key=lambda e: (e.block, e.log_index))


def _datasets(reader: ChainReader, deployment: Deployment, artifacts: Mapping[str, Artifact],
              last: int) -> dict[int, Dataset]:
    contract = deployment.contract("DatasetRegistry")
    decoder = EventDecoder(artifact_named(artifacts, "DatasetRegistry"), ["DatasetRegistered"])
    found = {}
    for log in reader.logs(contract.address, [decoder.topics], contract.block, last):
        e = decoder.decode(log)
        found[int(e.args["datasetId"])] = Dataset(int(e.args["datasetId"]), to_checksum_address(e.args["hospital"]),
                                                  bytes(e.args["merkleRoot"]), int(e.args["kinds"]), e.block)
    return found


def _check_senders(reader: ChainReader, study: _Study, roles: RoleHistory, report: Report) -> None:
    """The coordinator's actions (start, each round record, completion) were sent by a coordinator."""
    for e in study.events:
        if e.name in ("StudyStarted", "RoundRecorded", "StudyCompleted"):
            sender = reader.sender(e.tx_hash)
            report.check("role.coordinator", roles.has_role(COORDINATOR, sender, e.block),
                         f"{e.name} in block {e.block}", f"sent by {sender}, which did not hold the coordinator role")


def _check_lifecycle(study: _Study, roles: RoleHistory, report: Report) -> None:
    """Each action in a legal order, by an account holding the right role at that action's block."""
    where = f"study {report.study_id}"
    r = study.request
    report.check("role.researcher", roles.has_role(RESEARCHER, study.researcher, r.block), where,
                 f"researcher {study.researcher} did not hold the researcher role when requesting (block {r.block})")
    report.check("duties.separated", study.researcher not in study.hospitals, where,
                 f"the researcher {study.researcher} is also one of the study's hospitals")
    approved: set[str] = set()
    open_round, opened_at = 0, None
    for e in study.events[1:]:
        at = f"{e.name} in block {e.block}"
        if e.name == "StudyApproved":
            h = to_checksum_address(e.args["hospital"])
            report.check("order.decision", study.started is None or e.block <= study.started.block, at,
                         "an approval after the study started")
            report.check("role.hospital", h in study.hospitals and roles.has_role(HOSPITAL, h, e.block), at,
                         f"{h} is not a named hospital holding the hospital role at that block")
            approved.add(h)
        elif e.name == "StudyStarted":
            report.check("order.start", approved == set(study.hospitals), at,
                         f"started with approvals from {sorted(approved)} of {study.hospitals}")
            open_round, opened_at = 1, e.block
        elif e.name == "ContributionRecorded":
            round_, h = int(e.args["round"]), to_checksum_address(e.args["hospital"])
            report.check("order.contribution", round_ == open_round and h in approved, at,
                         f"hospital {h} contributed to round {round_} while round {open_round} was open "
                         f"(approved: {h in approved})")
            cohort_block = int(e.args["cohortBlock"])
            report.check("cohort.block", opened_at is not None and opened_at <= cohort_block <= e.block, at,
                         f"cohort block {cohort_block} is outside [{opened_at}, {e.block}] (round opening, "
                         "contribution)")
        elif e.name == "RoundRecorded":
            round_ = int(e.args["round"])
            report.check("order.round", round_ == open_round, at, f"round {round_} recorded while {open_round} "
                         "was open")
            for h in map(to_checksum_address, e.args["contributors"]):
                report.check("role.contributor", roles.has_role(HOSPITAL, h, e.block), at,
                             f"aggregated {h}, which did not hold the hospital role at that block")
            open_round, opened_at = round_ + 1, e.block
        elif e.name == "StudyCompleted":
            report.check("order.completion", int(e.args["rounds"]) == len(study.rounds) and e is study.events[-1],
                         at, f"completed after {e.args['rounds']} rounds, {len(study.rounds)} RoundRecorded events")


def _check_views(reader: ChainReader, address: str, artifact: Artifact, study: _Study, last: int,
                 report: Report) -> None:
    """The contract's own views agree with what the events say."""
    where = f"study {report.study_id}"
    fn = next(f for f in artifact.abi if f.get("type") == "function" and f["name"] == "cohortRootOf")
    selector = keccak(text=f"cohortRootOf({','.join(i['type'] for i in fn['inputs'])})")[:4]
    for (round_, hospital), e in sorted(study.contributions.items()):
        data = selector + encode(["uint256", "uint16", "address"], [report.study_id, round_, hospital])
        stored = reader.call(address, data, last)
        report.check("view.cohort_root", stored == bytes(e.args["cohortRoot"]), where,
                     f"cohortRootOf(round {round_}, {hospital}) is 0x{stored.hex()}, the event says "
                     f"0x{bytes(e.args['cohortRoot']).hex()}")


def _check_bundle_identity(bundle: Bundle, deployment: Deployment, study: _Study, report: Report) -> None:
    index = bundle.index
    registry = deployment.contract("StudyRegistry").address
    same = (index.get("study_id"), index.get("chain_id"), str(index.get("study_registry", "")).lower()) == (
        report.study_id, deployment.chain_id, registry.lower())
    report.check("bundle.study", same, "bundle.json",
                 f"the bundle is of study {index.get('study_id')} on chain {index.get('chain_id')} at registry "
                 f"{index.get('study_registry')}, not study {report.study_id} on chain {deployment.chain_id} at "
                 f"{registry}")
    if study.completed is None:
        report.fail("bundle.anchored", "bundle.json", "the study is not completed: no lineage hash is anchored")
        return
    anchored = bytes(study.completed.args["lineageHash"])
    report.check("bundle.anchored", bundle.lineage_hash == anchored, "bundle.json",
                 f"keccak256(bundle.json) is 0x{bundle.lineage_hash.hex()}, the chain anchored 0x{anchored.hex()}")


def _check_cohort(reader: ChainReader, consent_address: str, consent_artifact: Artifact, consents: ConsentHistory,
                  datasets: dict[int, Dataset], bundle: Bundle, study: _Study, round_: int, hospital: str,
                  contribution: Event, report: Report) -> None:
    """The cohort manifest against the anchored contribution, the consents, the datasets and the enrolments."""
    where = f"round {round_}, hospital {hospital}"
    name = f"rounds/{round_}/cohorts/{hospital}.json"
    if not report.check("cohort.manifest", bundle.has(name), where, f"{name} missing or altered"):
        return
    manifest: dict[str, Any] = bundle.json(name)
    args = contribution.args
    cohort_block = int(args["cohortBlock"])
    anchored = {"study_id": report.study_id, "round": round_, "hospital": hospital, "cohort_block": cohort_block,
                "cohort_root": "0x" + bytes(args["cohortRoot"]).hex(),
                "dataset_ids": [int(d) for d in args["datasetIds"]]}
    for key, value in anchored.items():
        claimed = manifest.get(key)
        if isinstance(claimed, str) and isinstance(value, str):
            claimed, value = claimed.lower(), value.lower()
        report.check("cohort.anchored", claimed == value, where, f"the manifest's {key} is {manifest.get(key)!r}, "
                     f"the chain anchored {anchored[key]!r}")
    members = manifest.get("members", [])
    report.check("cohort.count", len(members) == int(args["cohortCount"]), where,
                 f"{len(members)} members listed, {args['cohortCount']} anchored")
    ids = [m.get("record_id") for m in members]
    report.check("cohort.order", ids == sorted(ids) and len(set(ids)) == len(ids), where,
                 "members are not in strictly increasing record-id order (or a record is listed twice)")
    try:
        leaves = [cohort_leaf(m["record_id"], int(m["kind"]), m["patient"]) for m in members]
        root = merkle_root(leaves) if leaves else bytes(32)
    except (KeyError, ValueError, TypeError) as exc:
        report.fail("cohort.root", where, f"the members cannot be hashed: {exc}")
        return
    report.check("cohort.root", root == bytes(args["cohortRoot"]), where,
                 f"the members rebuild root 0x{root.hex()}, the chain anchored 0x{bytes(args['cohortRoot']).hex()}")
    named = {int(d) for d in args["datasetIds"]}
    for m in members:
        record_where = f"{where}, record {m['record_id'][:12]}…"
        dataset = datasets.get(int(m.get("dataset_id", 0)))
        if not report.check("dataset.registered", dataset is not None and dataset.hospital == hospital,
                            record_where, f"dataset {m.get('dataset_id')} is not registered by {hospital}"):
            continue
        assert dataset is not None
        report.check("dataset.named", dataset.dataset_id in named, record_where,
                     f"dataset {dataset.dataset_id} is not among the contribution's datasets {sorted(named)}")
        proof = [bytes.fromhex(p.removeprefix("0x")) for p in m.get("dataset_proof", [])]
        report.check("dataset.member", verify_proof(dataset.root, record_leaf(m["record_id"], int(m["kind"])), proof),
                     record_where, f"the proof does not lead to dataset {dataset.dataset_id}'s root "
                     f"0x{dataset.root.hex()}: the record is outside that registered dataset")
        report.check("cohort.kind", int(m["kind"]) & study.kinds == int(m["kind"]) and
                     int(m["kind"]) & dataset.kinds == int(m["kind"]), record_where,
                     f"kind {m['kind']} is not among the study's kinds {study.kinds} or the dataset's {dataset.kinds}")
    _check_consents(reader, consent_address, consent_artifact, consents, study, round_, hospital, cohort_block,
                    members, report)
    _check_enrolments(manifest, members, hospital, where, report)


def _check_consents(reader: ChainReader, consent_address: str, artifact: Artifact, consents: ConsentHistory,
                    study: _Study, round_: int, hospital: str, cohort_block: int, members: list[dict[str, Any]],
                    report: Report) -> None:
    """Every member permitted at the cohort block: by replay, and by the contract's own view at that block."""
    where = f"round {round_}, hospital {hospital}"
    at = reader.instant(cohort_block)
    by_kind: dict[int, list[str]] = {}
    for m in members:
        use = Use(hospital=hospital, kinds=int(m["kind"]), purpose=study.purpose, disease=study.disease,
                  study_id=report.study_id)
        verdict = consents.explain(m["patient"], use, at)
        report.check("cohort.consent", verdict.permitted, f"{where}, record {m['record_id'][:12]}…",
                     f"patient {m['patient']} did not permit this use at cohort block {cohort_block}: "
                     f"{verdict.describe(use)}")
        by_kind.setdefault(int(m["kind"]), []).append(m["patient"])
    fn = next(f for f in artifact.abi if f.get("type") == "function" and f["name"] == "permitsBatch")
    use_type = "(" + ",".join(c["type"] for c in fn["inputs"][1]["components"]) + ")"
    selector = keccak(text=f"permitsBatch(address[],{use_type})")[:4]
    for kind, patients in sorted(by_kind.items()):
        use_tuple = _use_tuple(fn["inputs"][1]["components"], hospital, kind, study.purpose, study.disease,
                               report.study_id)
        data = selector + encode(["address[]", use_type], [patients, use_tuple])
        try:
            answers = decode(["bool[]"], reader.call(consent_address, data, cohort_block))[0]
        except (RpcError, CallReverted) as exc:
            report.note(f"the contract's permitsBatch could not be asked at block {cohort_block} ({exc}); the "
                        "consents were checked by the event replay alone")
            continue
        replayed = [consents.permits(p, Use(hospital=hospital, kinds=kind, purpose=study.purpose,
                                            disease=study.disease, study_id=report.study_id), at) for p in patients]
        report.check("cohort.consent_view", list(answers) == replayed, where,
                     f"at block {cohort_block} the contract answers {list(answers)}, the replay {replayed}")


def _use_tuple(components: list[dict[str, Any]], hospital: str, kind: int, purpose: int, disease: int,
               study_id: int) -> tuple[Any, ...]:
    values = {"hospital": hospital, "kinds": kind, "purpose": purpose, "disease": disease, "studyId": study_id}
    return tuple(values[c["name"]] for c in components)


def _check_enrolments(manifest: dict[str, Any], members: list[dict[str, Any]], hospital: str, where: str,
                      report: Report) -> None:
    """Each member's patient linked to this hospital by a challenge the patient's own key signed."""
    signed: dict[str, dict[str, Any]] = {}
    for entry in manifest.get("enrolments", []):
        signed[to_checksum_address(entry.get("patient", "0x" + "00" * 20))] = entry
    for patient in sorted({to_checksum_address(m["patient"]) for m in members}):
        entry = signed.get(patient)
        if not report.check("enrolment.present", entry is not None, where, f"no signed enrolment of {patient}"):
            continue
        assert entry is not None
        try:
            signer = Account.recover_message(encode_defunct(text=entry["challenge"]),
                                             signature=bytes.fromhex(entry["signature"].removeprefix("0x")))
        except (ValueError, TypeError, KeyError, AuditError) as exc:
            report.fail("enrolment.signature", where, f"the enrolment of {patient} does not verify: {exc}")
            continue
        except Exception as exc:  # eth-keys raises its own BadSignature for out-of-range values
            report.fail("enrolment.signature", where, f"the enrolment of {patient} does not verify: {exc}")
            continue
        report.check("enrolment.signature", signer == patient, where,
                     f"the enrolment of {patient} was signed by {signer}")
        named = _HOSPITAL_LINE.search(entry["challenge"])
        report.check("enrolment.hospital", named is not None and to_checksum_address(named.group(1)) == hospital,
                     where, f"the enrolment of {patient} names hospital "
                     f"{named.group(1) if named else 'none'}, not {hospital}")


def _check_final(bundle: Bundle, study: _Study, report: Report) -> None:
    if study.completed is None:
        return
    anchored = bytes(study.completed.args["finalModelHash"])
    if report.check("model.final_present", bundle.has("final.npz"), "final.npz", "missing or altered"):
        found = weights_hash(bundle.arrays("final.npz"))
        report.check("model.final", found == anchored, "final.npz",
                     f"hashes to 0x{found.hex()}, the chain anchored 0x{anchored.hex()}")
