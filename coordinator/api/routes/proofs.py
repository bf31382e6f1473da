"""Hospitals publish each round's cohort proofs for their patients."""

from __future__ import annotations

from fastapi import APIRouter

from coordinator.api.deps import DbDep, ServicesDep, SignedInDep, require_hospital
from coordinator.api.problems import PROBLEM_RESPONSES, Problem
from coordinator.api.routes.sealed import require_mode
from coordinator.models.proofs import CohortProofsCreate, PublishedPublic
from coordinator.proofs import ProofRefused, publish

router = APIRouter(prefix="/cohort-proofs", tags=["cohort proofs"], responses=PROBLEM_RESPONSES)


@router.post("", status_code=201)
def publish_proofs(body: CohortProofsCreate, account: SignedInDep, services: ServicesDep,
                   db: DbDep) -> PublishedPublic:
    """Publish (part of) a round's cohort proofs as the hospital that anchored the cohort; each is checked
    against the anchored root, and each is shown only to its patient."""
    require_mode(services, "plain")
    require_hospital(account)
    try:
        return publish(db, services.exchange, account.address, body)
    except ProofRefused as exc:
        raise Problem(exc.status, "proof-refused", "The proofs do not match the chain", str(exc)) from None
