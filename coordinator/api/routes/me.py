"""A patient's own view: who used my data, and a receipt of everything, verifiable without the coordinator."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import TypeAdapter

from coordinator.api.deps import DbDep, IndexDep, ServicesDep, SignedInDep
from coordinator.api.problems import PROBLEM_RESPONSES
from coordinator.models.proofs import DataUsePublic, ReceiptPublic
from coordinator.patients import consents_of
from coordinator.proofs import data_uses
from coordinator.service import Services

router = APIRouter(prefix="/me", tags=["my data"], responses=PROBLEM_RESPONSES)
templates = Jinja2Templates(directory=Path(__file__).parents[2] / "portal" / "templates")


#: Where a patient finds their proofs when the deployment seals them (GET /v1/me/data-uses then has none).
SEALED_HEADERS = {"X-MeTAI-Proof-Mode": "sealed", "Link": '</v1/sealed-proofs/rounds>; rel="alternate"'}
SEALED_NOTE = ("This deployment seals cohort proofs: each hospital encrypts your proofs to your own key, and this "
               "service cannot read them or tell they are yours, so none is listed here. Find and open them with your "
               "key: GET /v1/sealed-proofs/rounds, derive your tag for each round, POST /v1/sealed-proofs/lookup "
               "(coordinator.sealed_client.sealed_data_uses does all of it), or the portal's 'Who used my data' page "
               "with a key kept in the browser.")


def _receipt(services: Services, db: DbDep, patient: str) -> ReceiptPublic:
    services.index.sync()  # before the database: no transaction waits on the chain
    exchange = services.exchange
    registry = exchange.studies.address
    rpc = "<your chain's JSON-RPC URL>"
    sealed = services.settings.proof_mode == "sealed"
    return ReceiptPublic(
        proof_mode=services.settings.proof_mode,
        patient=patient, generated_at=_dt.datetime.now(_dt.UTC).replace(microsecond=0),
        chain_id=exchange.chain.chain_id,
        contracts={name: c.address for name, c in exchange.deployment.contracts.items()},
        consents=consents_of(services.index, patient), data_uses=data_uses(db, services.index, patient),
        how_to_verify=[
            *([SEALED_NOTE] if sealed else []),
            "Each consent's granted_tx and revoked_tx is a transaction on the chain above: look it up in any "
            "client (e.g. `cast receipt <tx> --rpc-url " + rpc + "`) and read its ConsentGranted / ConsentRevoked "
            "event from the ConsentRegistry.",
            "Each record of a data use is in that round's cohort if the chain answers true to "
            f"`cast call {registry} 'inCohort(uint256,uint16,address,bytes32,bytes32[])(bool)' "
            "<study_id> <round> <hospital> <leaf> '[<proof, comma-separated>]' --rpc-url " + rpc + "`.",
            "The leaf is keccak256(keccak256(abi.encode(bytes32 record_id, uint8 kind, address patient))): "
            "recompute it from the record id, kind and your address rather than trusting the one given.",
            "A round listed with included=false was published in full by the hospital without any of your records.",
        ])


_DATA_USES = TypeAdapter(list[DataUsePublic])


def _data_uses_json(services: Services, patient: str) -> bytes:
    with services.db.reading() as db:
        return _DATA_USES.dump_json(data_uses(db, services.index, patient))


@router.get("/data-uses", response_model=list[DataUsePublic])
async def my_data_uses(account: SignedInDep, services: ServicesDep, index: IndexDep) -> Response:
    """Every study round at every hospital whose anchored cohort held one of my records, each with a Merkle
    proof anyone can check with StudyRegistry.inCohort; later rounds without me show as not included.

    In a deployment that seals proofs this service holds none in plain: the list holds only what was
    published plain before, and the headers ``X-MeTAI-Proof-Mode: sealed`` and ``Link`` point to
    ``/v1/sealed-proofs/rounds``, where the patient finds them with their own key."""
    async def build() -> bytes:  # the index was synced first: no transaction waits on the chain
        return await run_in_threadpool(_data_uses_json, services, account.address)

    body = await services.answers.answer(("data-uses", account.address, index.block), build)
    headers = SEALED_HEADERS if services.settings.proof_mode == "sealed" else None
    return Response(body, media_type="application/json", headers=headers)


@router.get("/receipt")
def my_receipt(account: SignedInDep, services: ServicesDep, db: DbDep) -> ReceiptPublic:
    """My receipt (JSON): every consent with its transactions and every use of my data with its proofs."""
    return _receipt(services, db, account.address)


@router.get("/receipt.html", response_class=HTMLResponse)
def my_receipt_page(request: Request, account: SignedInDep, services: ServicesDep, db: DbDep) -> HTMLResponse:
    """My receipt as a page to print."""
    receipt = _receipt(services, db, account.address)
    return templates.TemplateResponse(request, "receipt.html", {"receipt": receipt})
