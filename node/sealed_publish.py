"""Publish each round's cohort proofs sealed to each patient's own key (``metai-node publish-proofs --sealed``).

For a deployment whose coordinator must not learn which addresses were in which rounds: per
kept round, the node groups the members by patient and seals each patient's records and
proofs in one envelope to the public key recovered when the patient enrolled
(:mod:`contracts.sealing`), under a tag only that patient and this hospital can derive. The
coordinator stores tags and envelopes, nothing else of the patient. A round is marked
published (``round-<r>.sealed`` beside its kept cohort) once the coordinator holds every
envelope; the plain mode's marker is another file, so each mode publishes a round once.

A patient enrolled before the node kept public keys has none: publication then stops before
anything is sent, naming how many patients must re-enrol. It never falls back to plain proofs.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy import select

from contracts.leaves import cohort_leaf
from contracts.manifest import read_manifest
from contracts.merkle import MerkleTree
from contracts.sealing import (
    SealedContent,
    SealedRecord,
    SealingError,
    address_of,
    public_key_of,
    seal,
    sealed_tag,
)
from node.catalog import Patient, PatientKey
from node.errors import NodeConfigError
from node.kept_cohort import KeptCohort, kept_cohort_path, read_kept_cohort
from node.node import Node
from node.proof_publish import CoordinatorClient, PublishedRound, PublishError, kept_rounds

MARKER = ".sealed"
ProofMode = Literal["plain", "sealed"]


def proof_mode(configured: ProofMode, sealed_flag: bool | None) -> ProofMode:
    """The mode to publish in: the flag (``--sealed`` / ``--plain``) if given, else the node's setting.

    Raises:
        NodeConfigError: ``--plain`` on a node set to sealed proofs.
    """
    if sealed_flag is False and configured == "sealed":
        raise NodeConfigError("this node is set to publish sealed proofs only (METAI_NODE_PROOF_MODE=sealed) and never "
                              "publishes plain ones; drop --plain")
    if sealed_flag is None:
        return configured
    return "sealed" if sealed_flag else "plain"


@dataclass(frozen=True)
class Sealer:
    """What sealing a round needs: the hospital's key, the chain's id and StudyRegistry, the patients' keys."""

    hospital_key: bytes = field(repr=False)
    chain_id: int
    study_registry: str
    #: Patient address -> 64-byte public key.
    keys: Mapping[str, bytes]

    @property
    def hospital_public_key(self) -> str:
        """The hospital's public key as the coordinator takes it (0x + 128 hex digits, x || y)."""
        return "0x" + public_key_of(self.hospital_key).hex()

    def items(self, kept: KeptCohort) -> list[dict[str, str]]:
        """One ``{tag, ciphertext}`` per patient of the round, in order of tag.

        Raises:
            PublishError: the members do not make the anchored root, or a patient has no key.
        """
        leaves = {m: cohort_leaf(m.record_id, m.kind, m.patient) for m in kept.members}
        tree = MerkleTree(leaves.values())
        if "0x" + tree.root.hex() != kept.root:
            raise PublishError(f"round {kept.round} of study {kept.study_id}: the kept cohort's members make root "
                               f"0x{tree.root.hex()}, not the anchored {kept.root}; the kept file was altered")
        by_patient: defaultdict[str, list[SealedRecord]] = defaultdict(list)
        for member, leaf in leaves.items():
            by_patient[member.patient].append(SealedRecord(member.record_id, member.kind,
                                                           tuple("0x" + p.hex() for p in tree.proof(leaf))))
        hospital = address_of(public_key_of(self.hospital_key))
        items = []
        for patient, records in by_patient.items():
            key = self.keys.get(patient)
            if key is None:
                raise PublishError(f"patient {patient} has no public key on this node; re-enrol them")
            tag = sealed_tag(self.hospital_key, key, chain_id=self.chain_id, study_registry=self.study_registry,
                             study_id=kept.study_id, round_=kept.round)
            content = SealedContent(kept.study_id, kept.round, hospital, kept.root, tuple(records))
            try:
                envelope = seal(key, tag, content)
            except SealingError as exc:
                raise PublishError(f"round {kept.round} of study {kept.study_id}: the {len(records)} records of "
                                   f"patient {patient} do not fit one envelope ({exc})") from None
            items.append({"tag": "0x" + tag.hex(), "ciphertext": base64.b64encode(envelope).decode("ascii")})
        return sorted(items, key=lambda item: item["tag"])


def is_published_sealed(node_dir: Path, study_id: int, round_: int) -> bool:
    """Whether the coordinator confirmed it holds every sealed envelope of the round."""
    return kept_cohort_path(node_dir, study_id, round_).with_suffix(MARKER).exists()


def _pending(node_dir: Path, study_id: int | None) -> list[KeptCohort]:
    out = []
    for study, round_ in kept_rounds(node_dir, study_id):
        if not is_published_sealed(node_dir, study, round_):
            kept = read_kept_cohort(node_dir, study, round_)
            if kept.members:
                out.append(kept)
    return out


def _unkeyed_refusal(node: Node, missing: set[str]) -> PublishError:
    with node.sessions() as session:
        known = {address: pseudonym for address, pseudonym in session.execute(
            select(Patient.address, Patient.pseudonym).where(Patient.address.in_(missing)))}
    names = sorted(known.get(a) or f"{a} (not enrolled on this node now)" for a in missing)
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return PublishError(
        f"{len(missing)} patient(s) in the rounds to publish have no public key on this node: they were enrolled "
        "before the node kept the keys sealed proofs are encrypted to. Re-enrol each (`metai-node challenge "
        f"LOCAL_ID`, the patient signs, `metai-node enrol`), then publish again: {shown}. Nothing was published; "
        "a node set to sealed proofs never publishes them plain")


def sealer_for(node: Node, kept: list[KeptCohort]) -> Sealer:
    """The node's sealer, with the keys of every patient in ``kept``.

    Raises:
        PublishError: some of those patients have no public key (enrolled before keys were kept).
    """
    addresses = {m.patient for k in kept for m in k.members}
    with node.sessions() as session:
        keys = {row.address: row.public_key for row in
                session.scalars(select(PatientKey).where(PatientKey.address.in_(addresses)))}
    missing = addresses - set(keys)
    if missing:
        raise _unkeyed_refusal(node, missing)
    deployment = read_manifest(node.dir / node.info.manifest)
    return Sealer(bytes(node.account.key), deployment.chain_id, deployment.address("StudyRegistry"), keys)


def publish_sealed(node: Node, client: CoordinatorClient, study_id: int | None = None) -> list[PublishedRound]:
    """Publish every kept round not yet published sealed (of ``study_id`` only, if given); return what was published.

    Every patient's key is looked up before anything is sent.

    Raises:
        PublishError: a patient has no key (nothing is sent), or the coordinator refused a round (rounds
            before it stay published).
    """
    pending = _pending(node.dir, study_id)
    if not pending:
        return []
    sealer = sealer_for(node, pending)
    done = []
    for kept in pending:
        items = sealer.items(kept)
        answer = client.publish_sealed(kept, sealer.hospital_public_key, items)
        if not answer.get("complete"):
            raise PublishError(f"round {kept.round} of study {kept.study_id}: the coordinator holds "
                               f"{answer.get('published')} of {len(items)} sealed envelopes after the last part")
        kept_cohort_path(node.dir, kept.study_id, kept.round).with_suffix(MARKER).write_text(
            json.dumps(answer) + "\n", encoding="utf-8")
        done.append(PublishedRound(kept.study_id, kept.round, kept.count, len(items)))
    return done
