"""Consent scenarios as data, played on the test chain with the project's client, and the check that
the auditor's replay answers as the chain did at every block.

Shared by the scripted scenario and the randomized one (tests/audit/test_consent_replay.py).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

import audit
from contracts.datause import ANY_HOSPITAL, NO_EXPIRY, Kind, Scope
from contracts.errors import ContractRevert
from contracts.exchange import Exchange
from deploy.anvil import advance_time, mine, rpc
from tests.audit.conftest import chain_explanations, chain_permits
from tests.conftest import Actors

FAR = 2**40  # a signature deadline far beyond the chain's clock
#: What a refused revocation of a script may say (it asked for a consent not in force).
REVOCATION_REFUSALS = {"ConsentRegistryNotGranted", "ConsentRegistryConsentRevoked"}


@dataclass(frozen=True)
class Grant:
    """``patient`` grants ``kinds`` under ``scope`` (hospital "H1"/"H2"/"H3" or any) for ``lifetime`` s."""

    patient: int
    scope: Scope
    kinds: Kind
    lifetime: int | None = None  # seconds after the latest block's time; None: no expiry
    relayed: bool = False  # signed by the patient, sent by the coordinator


@dataclass(frozen=True)
class RelayBatch:
    """The coordinator relays signed grants in one ``grantBySigBatch``; ``late`` ones are signed with a
    deadline already passed, so the contract refuses them and the others go through."""

    grants: tuple[Grant, ...]
    late: frozenset[int] = frozenset()  # indexes into grants


@dataclass(frozen=True)
class Revoke:
    """``patient`` revokes their consent under ``scope`` (refused, and skipped, if none is in force)."""

    patient: int
    scope: Scope
    relayed: bool = False


@dataclass(frozen=True)
class Wait:
    """The chain's clock moves ``seconds`` ahead and a block is mined."""

    seconds: int


@dataclass(frozen=True)
class ExpiryEdge:
    """Mine one block one second before ``patient``'s consent under ``scope`` expires and one at that second
    (skipped if it has no expiry ahead)."""

    patient: int
    scope: Scope


Step = Grant | RelayBatch | Revoke | Wait | ExpiryEdge


class Player:
    """Plays steps on the chain for the patients ``actors.patients`` and the hospitals H1, H2, H3."""

    def __init__(self, exchange: Exchange, actors: Actors, rpc_url: str) -> None:
        self.exchange = exchange
        self.consent = exchange.consent
        self.actors = actors
        self.rpc_url = rpc_url
        self.hospitals = {"H1": actors.hospital.address, "H2": actors.hospital2.address,
                          "H3": actors.outsider_hospital.address, ANY_HOSPITAL: ANY_HOSPITAL}
        self.refused: list[str] = []  # what the contract refused, for the test to look at

    def patient(self, index: int) -> LocalAccount:
        return self.actors.patients[index]

    def scope(self, scope: Scope) -> Scope:
        return dataclasses.replace(scope, hospital=self.hospitals[scope.hospital])

    def now(self) -> int:
        return int(self.exchange.chain.w3.eth.get_block("latest")["timestamp"])

    def expiry(self, grant: Grant) -> int:
        return NO_EXPIRY if grant.lifetime is None else self.now() + grant.lifetime

    def play(self, step: Step) -> None:
        if isinstance(step, Grant):
            scope, patient = self.scope(step.scope), self.patient(step.patient)
            if step.relayed:
                signed = self.consent.sign_grant(patient, scope, step.kinds, self.expiry(step), deadline=FAR)
                self.consent.relay(self.actors.coordinator, signed)
            else:
                self.consent.grant(patient, scope, step.kinds, self.expiry(step))
        elif isinstance(step, RelayBatch):
            nonces = {g.patient: self.consent.nonce(self.patient(g.patient).address) for g in step.grants}
            batch = []
            for i, g in enumerate(step.grants):
                deadline = self.now() - 1 if i in step.late else FAR
                batch.append(self.consent.sign_grant(self.patient(g.patient), self.scope(g.scope), g.kinds,
                                                      self.expiry(g), deadline=deadline, nonce=nonces[g.patient]))
                if i not in step.late:
                    nonces[g.patient] += 1
            result = self.consent.relay_batch(self.actors.coordinator, batch)
            self.refused += [str(o.error) for o in result.failed]
        elif isinstance(step, Revoke):
            scope, patient = self.scope(step.scope), self.patient(step.patient)
            try:
                if step.relayed:
                    self.consent.relay(self.actors.coordinator, self.consent.sign_revoke(patient, scope, deadline=FAR))
                else:
                    self.consent.revoke(patient, scope)
            except ContractRevert as refused:
                if refused.error not in REVOCATION_REFUSALS:
                    raise
                self.refused.append(refused.error)
        elif isinstance(step, Wait):
            advance_time(self.rpc_url, step.seconds)
        else:
            expires = self.consent.consent_of(self.patient(step.patient).address, self.scope(step.scope)).expires_at
            if not self.now() < expires - 1 < NO_EXPIRY - 1:
                self.refused.append("ExpiryEdge")  # no consent, no expiry, or a clock past it: nothing to mine
                return
            for second in (expires - 1, expires):
                rpc(self.rpc_url, "evm_setNextBlockTimestamp", [second])
                mine(self.rpc_url)


def use_grid(hospitals: list[str], studies: list[int], purposes: list[tuple[int, int]],
             kinds: list[int]) -> list[audit.Use]:
    """Every use combining one of each."""
    return [audit.Use(h, k, p, d, s)
            for h, s, (p, d), k in itertools.product(hospitals, studies, purposes, kinds)]


def compare_permits(reader: audit.ChainReader, history: audit.ConsentHistory, registry: str,
                    patients: list[str], uses: list[audit.Use], blocks: range) -> Counter[audit.Reason]:
    """Assert the replay answers ``permitsBatch`` at every block of ``blocks``; count the reasons seen."""
    reasons: Counter[audit.Reason] = Counter()
    wrong = []
    for block in blocks:
        at = reader.instant(block)
        for use, row in zip(uses, chain_permits(reader.rpc_url, registry, patients, uses, block), strict=True):
            for patient, chain_says in zip(patients, row, strict=True):
                verdict = history.explain(patient, use, at)
                reasons[verdict.reason] += 1
                if verdict.permitted != chain_says:
                    wrong.append(f"block {block}: {patient} {use}: chain {chain_says}, replay {verdict.reason}")
    assert not wrong, f"{len(wrong)} answers differ, e.g.\n" + "\n".join(wrong[:10])
    return reasons


#: The custom error of ``explain`` for each reason, and the argument it carries besides the consent id.
EXPLAIN_ERRORS = {
    "ConsentRegistryNoMatchingConsent": (audit.Reason.NO_CONSENT, None),
    "ConsentRegistryConsentRevoked": (audit.Reason.REVOKED, "revokedAtBlock"),
    "ConsentRegistryConsentExpired": (audit.Reason.EXPIRED, "expiresAt"),
    "ConsentRegistryKindsNotCovered": (audit.Reason.KINDS_NOT_COVERED, "granted"),
}


def _replay_says(verdict: audit.Verdict) -> tuple[audit.Reason, bytes | None, int | None]:
    c = verdict.consent
    if verdict.permitted or c is None:
        return verdict.reason, None, None
    value = {audit.Reason.REVOKED: c.revoked_at_block, audit.Reason.EXPIRED: c.expires_at,
             audit.Reason.KINDS_NOT_COVERED: c.kinds}[verdict.reason]
    return verdict.reason, audit.consent_id(c.patient, c.scope), value


def _chain_says(refusal: ContractRevert | None) -> tuple[audit.Reason, bytes | None, int | None]:
    if refusal is None:
        return audit.Reason.PERMITTED, None, None
    reason, field = EXPLAIN_ERRORS[refusal.error]
    if field is None:
        return reason, None, None
    return reason, bytes(refusal.values["consentId"]), int(refusal.values[field])


def compare_explanations(reader: audit.ChainReader, history: audit.ConsentHistory, registry: str,
                         patients: list[str], uses: list[audit.Use], blocks: range) -> list[str]:
    """Where the replay does not give ``explain``'s reason, consent id and value, over every block of ``blocks``
    (one line each; empty when they all agree)."""
    pairs = [(p, u) for p in patients for u in uses]
    wrong = []
    for block in blocks:
        at = reader.instant(block)
        for (patient, use), refusal in zip(pairs, chain_explanations(reader.rpc_url, registry, pairs, block),
                                           strict=True):
            chain, replay = _chain_says(refusal), _replay_says(history.explain(patient, use, at))
            if chain != replay:
                wrong.append(f"block {block}: {patient} {use}: chain {chain}, replay {replay}")
    return wrong
