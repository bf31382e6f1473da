"""A patient's consents as the chain records them, in plain words."""

from __future__ import annotations

import datetime as _dt
import time

from contracts.datause import NO_EXPIRY, ZERO_ADDRESS, Purpose, Scope
from contracts.events import ConsentGranted, ConsentRevoked
from coordinator.chain_index import ChainIndex
from coordinator.models.consents import PURPOSE_WORDS, ConsentPublic, ConsentState, ScopePublic, kind_names


def scope_public(hospital: str, purpose: Purpose, disease: int, study_id: int) -> ScopePublic:
    """A scope in codes and in words."""
    where = "at any hospital" if hospital == ZERO_ADDRESS else f"at hospital {hospital}"
    study = "in any study with this purpose" if study_id == 0 else f"in study {study_id} only"
    what = PURPOSE_WORDS[purpose] + (f" (disease code {disease})" if purpose == Purpose.DS else "")
    return ScopePublic(hospital=None if hospital == ZERO_ADDRESS else hospital, purpose=purpose.name,
                       disease=disease, study_id=study_id, words=f"for {what}, {where}, {study}")


def _until(expires_at: int) -> str:
    if expires_at == NO_EXPIRY:
        return "with no expiry"
    return "until " + _dt.datetime.fromtimestamp(expires_at, _dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def consents_of(index: ChainIndex, patient: str) -> list[ConsentPublic]:
    """Every consent ``patient`` ever granted, newest grant first, with its state now."""
    events = index.consent_events(patient)
    latest: dict[bytes, ConsentGranted] = {}
    revoked: dict[bytes, ConsentRevoked] = {}
    for event in events:
        if isinstance(event, ConsentGranted):
            latest[event.consent_id] = event
            revoked.pop(event.consent_id, None)  # granting again puts it back in force
        elif isinstance(event, ConsentRevoked):
            revoked[event.consent_id] = event
    now = int(time.time())
    out = []
    for consent_id, granted in sorted(latest.items(), key=lambda kv: -kv[1].block_number):
        scope = scope_public(granted.hospital, granted.purpose, granted.disease, granted.study_id)
        kinds = kind_names(int(granted.kinds))
        revocation = revoked.get(consent_id)
        revoked_at = revocation.block_number if revocation else None
        if revoked_at is not None:
            state = ConsentState.REVOKED
        elif granted.expires_at != NO_EXPIRY and granted.expires_at <= now:
            state = ConsentState.EXPIRED
        else:
            state = ConsentState.IN_FORCE
        words = (f"You allow the use of your {', '.join(kinds)} data {scope.words}, {_until(granted.expires_at)}"
                 f": {state.value}" + (f" since block {revoked_at}." if revoked_at else "."))
        out.append(ConsentPublic(
            consent_id="0x" + consent_id.hex(), scope=scope, kinds=kinds,
            expires_at=None if granted.expires_at == NO_EXPIRY else granted.expires_at,
            granted_at_block=granted.block_number, granted_tx=granted.tx_hash, revoked_at_block=revoked_at,
            revoked_tx=revocation.tx_hash if revocation else None, state=state, words=words))
    return out


def scope_of(hospital: str | None, purpose: str, disease: int, study_id: int) -> Scope:
    """The chain's scope for API fields (a null hospital is any hospital)."""
    return Scope(hospital=hospital or ZERO_ADDRESS, purpose=Purpose[purpose], disease=disease, study_id=study_id)
