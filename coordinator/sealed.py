"""Sealed cohort proofs: storing the envelopes hospitals publish, and serving them to anyone who knows a tag.

In sealed mode (``METAI_COORDINATOR_PROOF_MODE=sealed``) a hospital publishes, per round, one
envelope per patient, encrypted to the patient's key under a tag that only the patient and the
hospital can derive (:mod:`contracts.sealing`). The coordinator checks what it can (the round
is the hospital's anchored contribution, the public key is the signed-in hospital's, no more
envelopes than records) and stores tags and envelopes; it cannot open them or link a tag to an
address. Patients list the rounds and look up their tags without signing in.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts.exchange import Exchange
from contracts.sealing import SealingError, address_of
from coordinator.chain_index import ChainIndex
from coordinator.models.proofs import PublishedPublic
from coordinator.models.sealed import (
    SealedFound,
    SealedLookupPublic,
    SealedProofsCreate,
    SealedRoundPublic,
    SealedRoundsPublic,
)
from coordinator.models.tables import SealedProof, SealedRound, utcnow
from coordinator.proofs import IN_COHORT, ProofRefused, anchored, upsert
from coordinator.study_view import purpose_words


def _check_key(hospital: str, public_key: str) -> None:
    try:
        owner = address_of(bytes.fromhex(public_key[2:]))
    except SealingError as exc:
        raise ProofRefused(f"hospital_public_key is not a secp256k1 public key ({exc})") from None
    if owner != hospital:
        raise ProofRefused(f"hospital_public_key is the key of {owner}, not of the signed-in hospital {hospital}; "
                           "send the public key of the key you signed in with")


def publish_sealed(db: Session, exchange: Exchange, hospital: str, body: SealedProofsCreate) -> PublishedPublic:
    """Check ``body`` against ``hospital``'s anchored contribution and store its envelopes (idempotent per tag).

    Raises:
        ProofRefused: a public key not the hospital's, no such contribution, another root or count, a tag
            twice in the request, or more envelopes for the round than it has records.
    """
    _check_key(hospital, body.hospital_public_key)
    tags = [item.tag for item in body.items]
    if len(set(tags)) != len(tags):
        twice = sorted({t for t in tags if tags.count(t) > 1})
        raise ProofRefused(f"tag {twice[0]} comes {tags.count(twice[0])} times in one request; a round has one "
                           "envelope per patient")
    # Everything the chain must say is asked before the database is written: no write waits on the chain.
    _, contribution = anchored(exchange, hospital, body.study_id, body.round, body.cohort_root, body.cohort_count)
    now = utcnow()
    if body.items:
        db.execute(upsert(db)(SealedProof).values([
            {"tag": item.tag, "study_id": body.study_id, "round": body.round, "hospital": hospital,
             "ciphertext": base64.b64decode(item.ciphertext), "created_at": now} for item in body.items
        ]).on_conflict_do_nothing(index_elements=["study_id", "round", "hospital", "tag"]))
    published = int(db.scalar(select(func.count()).select_from(SealedProof).where(
        SealedProof.study_id == body.study_id, SealedProof.round == body.round,
        SealedProof.hospital == hospital)) or 0)
    if published > body.cohort_count:  # the request's rows are rolled back with the refusal
        raise ProofRefused(f"round {body.round} of study {body.study_id} would hold {published} sealed envelopes, "
                           f"more than its {body.cohort_count} anchored records (one envelope per patient); "
                           "nothing of this request was stored")
    row = db.get(SealedRound, (body.study_id, body.round, hospital))
    if row is None:
        row = SealedRound(study_id=body.study_id, round=body.round, hospital=hospital,
                          hospital_public_key=body.hospital_public_key.lower(), cohort_root=body.cohort_root,
                          cohort_count=body.cohort_count, published=published, complete=False,
                          block=contribution.block_number, tx_hash=contribution.tx_hash, updated_at=now)
        db.add(row)
    row.published, row.complete, row.updated_at = published, row.complete or body.complete, now
    return PublishedPublic(study_id=body.study_id, round=body.round, hospital=hospital, published=published,
                           cohort_count=body.cohort_count, complete=row.complete)


def sealed_rounds(db: Session, index: ChainIndex) -> SealedRoundsPublic:
    """Every round published sealed, in order of study, round and hospital, with the chain context of the tags."""
    rounds = []
    for row in db.scalars(select(SealedRound).order_by(SealedRound.study_id, SealedRound.round, SealedRound.hospital)):
        study = index.study(row.study_id)
        if study is None:  # publications are checked against the chain: only a chain reset gets here
            continue
        rounds.append(SealedRoundPublic(
            study_id=row.study_id, round=row.round, hospital=row.hospital, hospital_public_key=row.hospital_public_key,
            cohort_root=row.cohort_root, cohort_count=row.cohort_count, block=row.block, contribution_tx=row.tx_hash,
            complete=row.complete, purpose_words=purpose_words(study.purpose, study.disease),
            researcher=study.researcher))
    exchange = index.exchange
    return SealedRoundsPublic(chain_id=exchange.chain.chain_id, study_registry=exchange.studies.address,
                              check=IN_COHORT, rounds=rounds)


def lookup(db: Session, tags: Sequence[str]) -> SealedLookupPublic:
    """The envelopes stored under ``tags`` (a tag without one is left out)."""
    found = db.execute(select(SealedProof.tag, SealedProof.ciphertext).where(SealedProof.tag.in_(set(tags)))
                       .order_by(SealedProof.tag)).all()
    return SealedLookupPublic(found=[SealedFound(tag=tag, ciphertext=base64.b64encode(ciphertext).decode("ascii"))
                                     for tag, ciphertext in found])
