"""A patient's consents: typed data to sign, signed consents to relay, the relay's outcome, my consents."""

from __future__ import annotations

import time
from typing import Any

from eth_utils.address import is_address, to_checksum_address
from fastapi import APIRouter, Response
from pydantic import TypeAdapter
from sqlalchemy import select

from contracts import eip712
from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from coordinator.api.deps import DbDep, IndexDep, ServicesDep, SignedIn, SignedInDep, within_limit
from coordinator.api.problems import PROBLEM_RESPONSES, Problem
from coordinator.models.consents import (
    CancelPublic,
    ConsentAction,
    ConsentPublic,
    RelayPublic,
    RelayState,
    SignedConsentCreate,
    TypedDataCreate,
    TypedDataPublic,
    kind_names,
    kinds_of,
)
from coordinator.models.tables import RelayItem
from coordinator.patients import consents_of, scope_of, scope_public
from coordinator.relay import item_of, outstanding_nonces
from coordinator.relay.intake import NonceUsed
from coordinator.service import Services

router = APIRouter(prefix="/consents", tags=["consents"], responses=PROBLEM_RESPONSES)
#: A signature must leave the relay at least this long before its deadline.
MIN_DEADLINE_MARGIN = 30


def _next_nonce(services: Services, db: DbDep, patient: str) -> int:
    chain_nonce = services.exchange.consent.nonce(patient)
    waiting = [n for n in outstanding_nonces(db, patient) if n >= chain_nonce]
    return max([chain_nonce, *(n + 1 for n in waiting)])


@router.post("/typed-data")
def typed_data(body: TypedDataCreate, account: SignedInDep, services: ServicesDep, db: DbDep) -> TypedDataPublic:
    """The EIP-712 message of a grant or revocation for the signed-in patient, as eth_signTypedData_v4 takes it."""
    consent = services.exchange.consent
    scope = scope_of(body.scope.hospital, body.scope.purpose, body.scope.disease, body.scope.study_id)
    nonce = _next_nonce(services, db, account.address)
    deadline = int(time.time()) + body.valid_for
    words = scope_public(scope.hospital, scope.purpose, scope.disease, scope.study_id).words
    if body.action == ConsentAction.GRANT:
        expires = NO_EXPIRY if body.expires_at is None else body.expires_at
        typed = eip712.grant_typed_data(consent.chain.chain_id, consent.address, account.address, scope,
                                        kinds_of(body.kinds), expires, nonce, deadline)
        summary = f"Allow the use of your {', '.join(body.kinds)} data {words}"
    else:
        typed = eip712.revoke_typed_data(consent.chain.chain_id, consent.address, account.address, scope, nonce,
                                         deadline)
        summary = f"Withdraw your consent {words}"
    return TypedDataPublic(typed_data=typed, nonce=nonce, deadline=deadline, summary=summary)


#: The largest value the service takes for each numeric field of a consent message: the field's
#: Solidity type, or what the database and JavaScript hold exactly where the type is wider.
_LIMITS = {"purpose": 2**8 - 1, "kinds": 2**8 - 1, "disease": 2**32 - 1, "expiresAt": 2**64 - 1,
           "studyId": 2**53 - 1, "nonce": 2**53 - 1, "deadline": 2**53 - 1}


def _int(message: dict[str, Any], key: str) -> int:
    value = message.get(key)
    try:
        if isinstance(value, (bool, float)):
            raise TypeError
        number = int(value, 0) if isinstance(value, str) else int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise Problem(422, "typed-data-invalid", "The typed data is not a consent message",
                      f"message.{key} is {value!r}; expected an unsigned integer") from None
    if not 0 <= number <= _LIMITS[key]:
        raise Problem(422, "typed-data-invalid", "The typed data is not a consent message",
                      f"message.{key} is {number}; expected 0 to {_LIMITS[key]}")
    return number


def _address(message: dict[str, Any], key: str) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not is_address(value):
        raise Problem(422, "typed-data-invalid", "The typed data is not a consent message",
                      f"message.{key} is {value!r}; expected an address")
    return to_checksum_address(value)


def _signed(services: Services, body: SignedConsentCreate) -> eip712.SignedConsent:
    """The signed consent in ``body``, after checking its typed data is exactly one this service issues."""
    given = body.typed_data
    primary = given.get("primaryType")
    message = given.get("message")
    if primary not in ("ConsentGrant", "ConsentRevoke") or not isinstance(message, dict):
        raise Problem(422, "typed-data-invalid", "The typed data is not a consent message",
                      f"primaryType is {primary!r}; expected ConsentGrant or ConsentRevoke, with a message object")
    consent = services.exchange.consent
    patient = _address(message, "patient")
    try:
        scope = Scope(hospital=_address(message, "hospital"), purpose=Purpose(_int(message, "purpose")),
                      disease=_int(message, "disease"), study_id=_int(message, "studyId"))
    except ValueError as exc:
        raise Problem(422, "typed-data-invalid", "The typed data is not a consent message", str(exc)) from None
    nonce, deadline = _int(message, "nonce"), _int(message, "deadline")
    if primary == "ConsentGrant":
        kinds, expires = Kind(_int(message, "kinds")), _int(message, "expiresAt")
        expected = eip712.grant_typed_data(consent.chain.chain_id, consent.address, patient, scope, kinds, expires,
                                           nonce, deadline)
    else:
        kinds, expires = None, None
        expected = eip712.revoke_typed_data(consent.chain.chain_id, consent.address, patient, scope, nonce, deadline)
    if _normal(given) != _normal(expected):
        raise Problem(422, "typed-data-mismatch", "The typed data is not one this service issues",
                      "its domain, types or fields differ from the ConsentRegistry's on this chain; "
                      "sign the typed data POST /v1/consents/typed-data returns, unchanged")
    raw = bytes.fromhex(body.signature.removeprefix("0x"))
    v = raw[64] + 27 if raw[64] < 27 else raw[64]
    signed = eip712.SignedConsent(patient, scope, nonce, deadline, v, raw[:32], raw[32:64], kinds, expires)
    try:
        signer = eip712.signer_of(consent.chain.chain_id, consent.address, signed)
    except ValueError as exc:
        raise Problem(422, "signature-invalid", "The signature is malformed", str(exc)) from None
    if signer != patient:
        raise Problem(403, "signer-mismatch", "The signature is not the patient's",
                      f"the typed data was signed by {signer}, not by the patient {patient} it names")
    return signed


def _normal(value: Any) -> Any:
    """Typed data compared as a wallet may echo it: numbers as numbers, addresses in any case."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, str) and value.startswith("0x"):
        return value.lower()
    return value


def relay_public(item: RelayItem) -> RelayPublic:
    """The API's view of an outbox item."""
    return RelayPublic(
        id=item.id, action=ConsentAction(item.kind), state=RelayState(item.state),
        scope=scope_public(item.hospital, Purpose(item.purpose), item.disease, item.study_id),
        kinds=None if item.kinds is None else kind_names(item.kinds),
        expires_at=None if item.expires_at is None else int(item.expires_at), nonce=item.nonce,
        deadline=item.deadline, tx_hash=item.tx_hash,
        block=item.block_number, event=item.event, consent_id=item.consent_id, error=item.error,
        error_detail=item.error_detail, created_at=item.created_at, updated_at=item.updated_at)


@router.post("/signed", status_code=202)
async def submit(body: SignedConsentCreate, account: SignedInDep, services: ServicesDep) -> RelayPublic:
    """Accept the signed-in patient's signed grant or revocation; it is stored, then relayed in a batch."""
    within_limit(services.relay_limit, account.address, "Too many signed consents")
    signed = _signed(services, body)
    _own(account, signed.patient)
    now = int(time.time())
    if signed.deadline < now + MIN_DEADLINE_MARGIN:
        raise Problem(422, "deadline-too-close", "The signature's deadline is too close",
                      f"deadline {signed.deadline} is less than {MIN_DEADLINE_MARGIN} s away (now {now}); sign anew")
    # Stored with the others arriving meanwhile (one nonce query, one transaction); answered once committed.
    outcome = await services.intake.take(signed)
    if isinstance(outcome, NonceUsed):
        raise Problem(409, "nonce-used", "The signature's nonce is already used",
                      f"nonce {outcome.nonce} is used (the next is {outcome.next_nonce}): it was relayed or "
                      "cancelled; ask for new typed data")
    services.notify_relay()
    return relay_public(outcome)


def _own(account: SignedIn, patient: str) -> None:
    if patient != account.address:
        raise Problem(403, "not-your-consent", "Not your consent",
                      f"the consent names patient {patient}; you are signed in as {account.address}")


@router.get("/relay/{item_id}")
def relay_item(item_id: str, account: SignedInDep, db: DbDep) -> RelayPublic:
    """Where one of my signed consents is: pending, sent, mined (block, transaction, event, consent id) or failed."""
    item = item_of(db, item_id)
    if item is None or item.patient != account.address:  # another patient's item is as good as absent
        raise Problem(404, "not-found", "No such signed consent", f"you have no signed consent {item_id}")
    return relay_public(item)


@router.get("/relay")
def relay_items(account: SignedInDep, db: DbDep) -> list[RelayPublic]:
    """All my signed consents, newest first."""
    rows = db.scalars(select(RelayItem).where(RelayItem.patient == account.address)
                      .order_by(RelayItem.created_at.desc()).limit(500))
    return [relay_public(item) for item in rows]


_CONSENT_LIST = TypeAdapter(list[ConsentPublic])


@router.get("", response_model=list[ConsentPublic])
async def my_consents(account: SignedInDep, index: IndexDep, services: ServicesDep) -> Response:
    """Every consent I granted, with its scope in plain words and its state now."""
    async def build() -> bytes:
        return _CONSENT_LIST.dump_json(consents_of(index, account.address))

    body = await services.answers.answer(("consents", account.address, index.block), build)
    return Response(body, media_type="application/json")


@router.post("/cancel")
def cancel(account: SignedInDep, services: ServicesDep, db: DbDep) -> CancelPublic:
    """The transaction that voids every signature I made and nobody relayed yet (I send it from my address)."""
    consent = services.exchange.consent
    chain_nonce = consent.nonce(account.address)
    waiting = sorted(n for n in outstanding_nonces(db, account.address) if n >= chain_nonce)
    up_to = max([chain_nonce + 1, *(n + 1 for n in waiting)])
    ids = list(db.scalars(select(RelayItem.id).where(
        RelayItem.patient == account.address, RelayItem.state.in_([RelayState.PENDING, RelayState.SENT]))))
    data = consent.contract.encode_abi("cancelSignatures", [up_to])
    return CancelPublic(to=consent.address, data=data, up_to=up_to, outstanding=ids)
