"""Cohort proofs: checking and storing what hospitals publish, and a patient's view of the use of their data.

A hospital publishes, for each round it contributed to, each cohort member's leaf values
(record id, kind, patient address) with its Merkle proof. Each proof is checked against the
root the hospital anchored on chain before it is stored, so the coordinator never serves a
patient a proof the chain would reject. What the coordinator thereby learns is which
pseudonymous addresses took part in which rounds (the chain itself shows only roots and
counts); docs/coordinator.md says so. A deployment that must not tell the coordinator this runs
in sealed mode instead (:mod:`coordinator.sealed`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from contracts.events import ContributionRecorded, address_topic, event_topic, read_events
from contracts.exchange import Exchange
from contracts.leaves import cohort_leaf
from contracts.merkle import verify
from coordinator.chain_index import ChainIndex
from coordinator.errors import CoordinatorError
from coordinator.models.proofs import CohortProofsCreate, DataUsePublic, PublishedPublic, RecordUse, RoundUse
from coordinator.models.tables import CohortProof, PublishedRound, utcnow
from coordinator.study_view import id_topic, purpose_words

IN_COHORT = "inCohort(uint256,uint16,address,bytes32,bytes32[])"


class ProofRefused(CoordinatorError, ValueError):
    """A published proof does not match what the hospital anchored on chain."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _contribution_tx(exchange: Exchange, study_id: int, round_: int, hospital: str) -> ContributionRecorded:
    topics = [event_topic("StudyRegistry", "ContributionRecorded"), id_topic(study_id), id_topic(round_),
              address_topic(hospital)]
    found = [e for e in read_events(exchange.chain, [exchange.studies.address],
                                    from_block=exchange.deployment.deploy_block, topics=topics)
             if isinstance(e, ContributionRecorded)]
    if not found:
        raise ProofRefused(f"hospital {hospital} has no contribution to round {round_} of study {study_id} on chain",
                           status=409)
    return found[-1]


def anchored(exchange: Exchange, hospital: str, study_id: int, round_: int, cohort_root: str,
             cohort_count: int) -> tuple[bytes, ContributionRecorded]:
    """The root ``hospital`` anchored for the round and its contribution event, if they are the ones claimed.

    Raises:
        ProofRefused: no such contribution, or another root or count (409).
    """
    found = exchange.studies.contribution_of(study_id, round_, hospital)
    if found is None:
        raise ProofRefused(f"hospital {hospital} has no contribution to round {round_} of study {study_id}",
                           status=409)
    root = "0x" + found.cohort_root.hex()
    if (root, found.cohort_count) != (cohort_root, cohort_count):
        raise ProofRefused(f"round {round_} of study {study_id}: the hospital anchored root {root} with "
                           f"{found.cohort_count} records, not {cohort_root} with {cohort_count}", status=409)
    return found.cohort_root, _contribution_tx(exchange, study_id, round_, hospital)


def upsert(db: Session) -> Any:
    """The dialect's INSERT that can skip rows already stored (ON CONFLICT DO NOTHING)."""
    return pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert


def publish(db: Session, exchange: Exchange, hospital: str, body: CohortProofsCreate) -> PublishedPublic:
    """Check ``body`` against ``hospital``'s anchored contribution and store its proofs (idempotent).

    Raises:
        ProofRefused: no such contribution, another root or count, a proof that does not lead to the
            root, or ``complete`` while proofs are missing.
    """
    # Everything the chain must say is asked before the database is written: no write waits on the chain.
    cohort_root, contribution = anchored(exchange, hospital, body.study_id, body.round, body.cohort_root,
                                         body.cohort_count)
    root, count = body.cohort_root, body.cohort_count
    rows = []
    for item in body.proofs:
        leaf = cohort_leaf(item.record_id, item.kind, item.patient)
        if not verify(cohort_root, leaf, [bytes.fromhex(p[2:]) for p in item.proof]):
            raise ProofRefused(f"the proof of record {item.record_id} (kind {item.kind}) of patient {item.patient} "
                               f"does not lead to the anchored root {root}; nothing of this request was stored")
        rows.append({"patient": item.patient, "study_id": body.study_id, "round": body.round, "hospital": hospital,
                     "record_id": item.record_id, "kind": item.kind, "proof": json.dumps(item.proof),
                     "created_at": utcnow()})
    if rows:
        db.execute(upsert(db)(CohortProof).values(rows).on_conflict_do_nothing(
            index_elements=["study_id", "round", "hospital", "record_id"]))
    published = int(db.scalar(select(func.count()).select_from(CohortProof).where(
        CohortProof.study_id == body.study_id, CohortProof.round == body.round,
        CohortProof.hospital == hospital)) or 0)
    if body.complete and published != count:
        raise ProofRefused(f"round {body.round} of study {body.study_id} is marked complete with {published} of its "
                           f"{count} records published; send the rest first")
    row = db.get(PublishedRound, (body.study_id, body.round, hospital))
    if row is None:
        row = PublishedRound(study_id=body.study_id, round=body.round, hospital=hospital, cohort_root=root,
                             cohort_count=count, published=published, complete=False,
                             block=contribution.block_number, tx_hash=contribution.tx_hash, updated_at=utcnow())
        db.add(row)
    row.published, row.complete, row.updated_at = published, row.complete or body.complete, utcnow()
    return PublishedPublic(study_id=body.study_id, round=body.round, hospital=hospital, published=published,
                           cohort_count=count, complete=row.complete)


def data_uses(db: Session, index: ChainIndex, patient: str) -> list[DataUsePublic]:
    """Every study and hospital whose anchored cohorts held one of ``patient``'s records, round by round.

    Each round the hospital published is listed, with the patient's records in it (each with its
    leaf and proof) or none: a patient who revoked sees the later rounds without them.
    """
    mine = list(db.scalars(select(CohortProof).where(CohortProof.patient == patient)
                           .order_by(CohortProof.study_id, CohortProof.round)))
    by_pair: defaultdict[tuple[int, str], defaultdict[int, list[CohortProof]]] = defaultdict(lambda: defaultdict(list))
    for proof in mine:
        by_pair[(proof.study_id, proof.hospital)][proof.round].append(proof)
    out = []
    for (study_id, hospital), rounds in sorted(by_pair.items()):
        study = index.study(study_id)
        if study is None:  # published proofs are checked against the chain: only a chain reset gets here
            continue
        published = db.scalars(select(PublishedRound).where(PublishedRound.study_id == study_id,
                                                            PublishedRound.hospital == hospital)
                               .order_by(PublishedRound.round))
        round_uses = []
        for pub in published:
            records = [RecordUse(record_id=p.record_id, kind=p.kind,
                                 leaf="0x" + cohort_leaf(p.record_id, p.kind, patient).hex(), proof=json.loads(p.proof))
                       for p in rounds.get(pub.round, [])]
            included = True if records else (False if pub.complete else None)
            round_uses.append(RoundUse(round=pub.round, included=included, block=pub.block,
                                       contribution_tx=pub.tx_hash, cohort_root=pub.cohort_root,
                                       cohort_count=pub.cohort_count, records=records))
        out.append(DataUsePublic(study_id=study_id, purpose_words=purpose_words(study.purpose, study.disease),
                                 researcher=study.researcher, hospital=hospital, rounds=round_uses,
                                 check=IN_COHORT, study_registry=index.exchange.studies.address))
    return out
