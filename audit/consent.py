"""Replay ``ConsentRegistry``'s events to answer whether a patient permitted a use at any block.

The rules, from ``ConsentRegistry.sol``: a consent is keyed by (patient, scope); a grant stores
kinds and expiry and clears any revocation, so granting again overwrites an earlier consent, a
revoked one included; a revocation takes effect from its block. A use is permitted at block B
if one of its candidate scopes (:func:`audit.datause.candidate_scopes`) holds a consent that
is not revoked, whose expiry is after B's timestamp, and whose kinds include every kind asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from eth_utils.address import to_checksum_address

from audit.artifacts import Artifact, artifact_named
from audit.datause import Scope, Use, candidate_scopes, consent_id
from audit.errors import InvalidUse, ReplayError
from audit.events import Event, read_events
from audit.manifest import Deployment
from audit.rpc import ChainReader, Instant
from audit.timeline import Timeline

#: The events of ConsentRegistry that change a consent.
EVENTS = ("ConsentGranted", "ConsentRevoked")


def _address_key(address: str) -> bytes:
    """The 20 bytes of a 0x address, in any letter case (cheaper than checksumming it per question).

    Raises:
        InvalidUse: ``address`` is not 40 hex digits after 0x.
    """
    try:
        raw = bytes.fromhex(address.removeprefix("0x"))
    except ValueError:
        raw = b""
    if len(raw) != 20 or not address.startswith("0x"):
        raise InvalidUse(f"patient {address!r} is not a 0x address of 40 hex digits")
    return raw


@dataclass(frozen=True)
class ConsentState:
    """A stored consent as the contract holds it after some block (``Consent`` in the contract)."""

    patient: str
    scope: Scope
    kinds: int
    expires_at: int  # unix seconds, exclusive
    granted_at_block: int
    revoked_at_block: int = 0  # 0 while in force

    def in_force(self, kinds: int, timestamp: int) -> bool:
        """Return whether it permits a use of ``kinds`` in a block with timestamp ``timestamp``."""
        return not self.revoked_at_block and self.expires_at > timestamp and kinds & self.kinds == kinds


class Reason(StrEnum):
    """Why a use is or is not permitted, as the contract's ``explain`` tells it."""

    PERMITTED = "permitted"
    NO_CONSENT = "no matching consent"
    REVOKED = "revoked"
    EXPIRED = "expired"
    KINDS_NOT_COVERED = "kinds not covered"


@dataclass(frozen=True)
class Verdict:
    """The answer for one (patient, use) at one instant, with the consent it is about.

    ``consent`` is the consent that permits the use, or, when none does, the most specific
    matching one (whose fault the reason is); None for :attr:`Reason.NO_CONSENT`.
    """

    reason: Reason
    consent: ConsentState | None = None

    @property
    def permitted(self) -> bool:
        """Whether the use is permitted."""
        return self.reason is Reason.PERMITTED

    def describe(self, use: Use) -> str:
        """Return one line for people, e.g. ``revoked in block 12``."""
        c = self.consent
        if c is None:
            return str(self.reason)
        return {
            Reason.PERMITTED: f"permitted by the consent granted in block {c.granted_at_block}",
            Reason.REVOKED: f"revoked in block {c.revoked_at_block}",
            Reason.EXPIRED: f"expired at {c.expires_at} (unix seconds)",
            Reason.KINDS_NOT_COVERED: f"the consent covers kinds {c.kinds}, the use asks for {use.kinds}",
        }.get(self.reason, str(self.reason))


class ConsentHistory:
    """Every consent's state at every block, replayed from the registry's events.

    Parameters:
        events: the ``ConsentGranted`` and ``ConsentRevoked`` events, in chain order.
        to_block: the last block the events were read up to; later blocks cannot be answered.

    Raises:
        ReplayError: the events cannot have come from the contract: a consent id that is not the
            hash of its patient and scope, a revocation of a consent never granted or already
            revoked, or events out of chain order.
    """

    def __init__(self, events: Iterable[Event], *, to_block: int) -> None:
        self.to_block = to_block
        # Keyed by (patient, scope), not by consent id: a question then costs dictionary lookups
        # only, no hashing. Each grant's consent id is checked once, as its event is replayed.
        self._consents: dict[tuple[bytes, Scope], Timeline[ConsentState]] = {}
        self._keys: dict[bytes, tuple[bytes, Scope]] = {}  # consent id -> its key above
        for event in events:
            if event.block > to_block:
                raise ReplayError(f"{event.name} in block {event.block}, after block {to_block} the history ends at")
            if event.name == "ConsentGranted":
                self._granted(event)
            elif event.name == "ConsentRevoked":
                self._revoked(event)
            else:
                raise ReplayError(f"{event.name} in block {event.block} is not a consent event {EVENTS}")

    def _granted(self, event: Event) -> None:
        a = event.args
        patient = to_checksum_address(a["patient"])
        scope = Scope(to_checksum_address(a["hospital"]), a["purpose"], a["disease"], a["studyId"])
        given, expected = bytes(a["consentId"]), consent_id(patient, scope)
        if given != expected:
            raise ReplayError(f"ConsentGranted in block {event.block} ({event.tx_hash}) names consent "
                              f"0x{given.hex()}, but its patient and scope hash to 0x{expected.hex()}")
        key = self._keys.setdefault(given, (_address_key(patient), scope))
        state = ConsentState(patient, scope, a["kinds"], a["expiresAt"], granted_at_block=event.block)
        self._consents.setdefault(key, Timeline()).set(event.block, state)

    def _revoked(self, event: Event) -> None:
        given = bytes(event.args["consentId"])
        key = self._keys.get(given)
        before = self._consents[key].last if key else None
        where = f"ConsentRevoked of 0x{given.hex()} in block {event.block} ({event.tx_hash})"
        if key is None or before is None:
            raise ReplayError(f"{where}: that consent was never granted")
        if before.patient != to_checksum_address(event.args["patient"]):
            raise ReplayError(f"{where}: revoked by {event.args['patient']}, granted by {before.patient}")
        if before.revoked_at_block:
            raise ReplayError(f"{where}: already revoked in block {before.revoked_at_block}")
        self._consents[key].set(event.block, replace(before, revoked_at_block=event.block))

    @property
    def patients(self) -> frozenset[str]:
        """Every patient who ever granted a consent (checksummed addresses)."""
        return frozenset(t.last.patient for t in self._consents.values() if t.last is not None)

    @property
    def consent_ids(self) -> frozenset[bytes]:
        """The id of every consent ever granted."""
        return frozenset(self._keys)

    def consent(self, patient: str, scope: Scope, block: int) -> ConsentState | None:
        """Return ``patient``'s consent under ``scope`` in the state after ``block``, or None if never granted.

        Raises:
            ReplayError: ``block`` is after the last block the history was read up to.
        """
        self._check(block)
        scope = replace(scope, hospital=to_checksum_address(scope.hospital))
        timeline = self._consents.get((_address_key(patient), scope))
        return timeline.at(block) if timeline else None

    def explain(self, patient: str, use: Use, at: Instant) -> Verdict:
        """Return whether and why ``patient`` permits ``use`` at ``at`` (a block and its timestamp).

        Raises:
            ReplayError: ``at.block`` is after the last block the history was read up to.
        """
        self._check(at.block)
        who = _address_key(patient)
        timelines = (self._consents.get((who, scope)) for scope in candidate_scopes(use))
        found = [c for c in (t.at(at.block) for t in timelines if t is not None) if c is not None]
        for c in found:
            if c.in_force(use.kinds, at.timestamp):
                return Verdict(Reason.PERMITTED, c)
        if not found:
            return Verdict(Reason.NO_CONSENT)
        first = found[0]  # the contract reports on the most specific consent that exists
        if first.revoked_at_block:
            return Verdict(Reason.REVOKED, first)
        if first.expires_at <= at.timestamp:
            return Verdict(Reason.EXPIRED, first)
        return Verdict(Reason.KINDS_NOT_COVERED, first)

    def permits(self, patient: str, use: Use, at: Instant) -> bool:
        """Return whether ``patient`` permits ``use`` at ``at``, as ``ConsentRegistry.permits`` then answered.

        Raises:
            ReplayError: ``at.block`` is after the last block the history was read up to.
        """
        return self.explain(patient, use, at).permitted

    def _check(self, block: int) -> None:
        if block > self.to_block:
            raise ReplayError(f"the consent history was read up to block {self.to_block}; it cannot answer for "
                              f"block {block} (read it again)")


def read_consent_history(reader: ChainReader, deployment: Deployment, artifacts: Mapping[str, Artifact],
                         *, to_block: int | None = None) -> ConsentHistory:
    """Read ConsentRegistry's consent events from its deployment block and replay them.

    Parameters:
        to_block: the last block read (default: the latest).

    Raises:
        ReplayError, ArtifactError, ManifestError, RpcError: as :class:`ConsentHistory`,
            :func:`audit.events.read_events` and :meth:`Deployment.contract`.
    """
    registry = deployment.contract("ConsentRegistry")
    last = reader.block_number if to_block is None else to_block
    events = read_events(reader, artifact_named(artifacts, "ConsentRegistry"), registry.address, EVENTS,
                         registry.block, last)
    return ConsentHistory(events, to_block=last)
