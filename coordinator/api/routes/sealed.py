"""Sealed cohort proofs: hospitals publish envelopes; anyone lists the rounds and looks up tags without signing in."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from coordinator.api.deps import DbDep, IndexDep, ServicesDep, SignedInDep, client_key, require_hospital, within_limit
from coordinator.api.problems import PROBLEM_RESPONSES, Problem
from coordinator.chain_index import ChainIndex
from coordinator.models.proofs import PublishedPublic
from coordinator.models.sealed import SealedLookup, SealedLookupPublic, SealedProofsCreate, SealedRoundsPublic
from coordinator.proofs import ProofRefused
from coordinator.sealed import lookup, publish_sealed, sealed_rounds
from coordinator.service import Services

router = APIRouter(prefix="/sealed-proofs", tags=["sealed proofs"], responses=PROBLEM_RESPONSES)


def require_mode(services: Services, mode: str) -> None:
    """Refuse (409) a request of the proof mode this deployment does not run."""
    running = services.settings.proof_mode
    if running == mode:
        return
    if running == "sealed":
        raise Problem(409, "proofs-sealed", "This deployment publishes sealed proofs only",
                      "METAI_COORDINATOR_PROOF_MODE is sealed: hospitals publish with POST /v1/sealed-proofs "
                      "(metai-node publish-proofs --sealed) and patients find their proofs through "
                      "GET /v1/sealed-proofs/rounds and POST /v1/sealed-proofs/lookup")
    raise Problem(409, "proofs-plain", "This deployment publishes plain proofs only",
                  "METAI_COORDINATOR_PROOF_MODE is plain: hospitals publish with POST /v1/cohort-proofs and "
                  "patients see their proofs, signed in, at GET /v1/me/data-uses")


@router.post("", status_code=201)
def publish(body: SealedProofsCreate, account: SignedInDep, services: ServicesDep, db: DbDep) -> PublishedPublic:
    """Publish (part of) a round's sealed envelopes as the hospital that anchored the cohort: one per patient,
    encrypted to the patient's key under a tag only the patient and the hospital can derive."""
    require_mode(services, "sealed")
    require_hospital(account)
    try:
        return publish_sealed(db, services.exchange, account.address, body)
    except ProofRefused as exc:
        raise Problem(exc.status, "proof-refused", "The sealed proofs do not match the chain", str(exc)) from None


def _rounds(services: Services, index: ChainIndex) -> SealedRoundsPublic:
    with services.db.reading() as db:
        return sealed_rounds(db, index)


@router.get("/rounds")
async def rounds(services: ServicesDep, index: IndexDep) -> SealedRoundsPublic:
    """Every round published sealed, with the hospital's public key a patient derives their tag with; no sign-in."""
    require_mode(services, "sealed")
    return await run_in_threadpool(_rounds, services, index)


def _lookup(services: Services, tags: list[str]) -> SealedLookupPublic:
    with services.db.reading() as db:
        return lookup(db, tags)


@router.post("/lookup")
async def find(body: SealedLookup, request: Request, services: ServicesDep) -> SealedLookupPublic:
    """The envelopes stored under the tags given; no sign-in, and nothing in the request names a patient."""
    require_mode(services, "sealed")
    within_limit(services.lookup_limit, client_key(request), "Too many lookups")
    return await run_in_threadpool(_lookup, services, body.tags)
