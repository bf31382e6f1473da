"""Hospitals publish each round's cohort proofs for their patients."""

from __future__ import annotations

from fastapi import APIRouter

from contracts.enums import Role
from coordinator.api.deps import DbDep, ServicesDep, SignedInDep
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
    if not account.has(Role.HOSPITAL):
        raise Problem(403, "role-required", "Only a hospital publishes cohort proofs",
                      f"{account.address} does not hold the HOSPITAL role on chain")
    try:
        return publish(db, services.exchange, account.address, body)
    except ProofRefused as exc:
        raise Problem(exc.status, "proof-refused", "The proofs do not match the chain", str(exc)) from None
