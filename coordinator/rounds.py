"""A round's replies, checked against their weights and the chain, and aggregated.

A reply is kept only if its update hash matches both the returned weights and the contribution
its hospital anchored on chain (cohort root and count from the registry's storage, the update
hash from the contribution's event, the only place the contract keeps it), and, when it carries
its cohort manifest, if the manifest names the same study, round, hospital, root and count (a
node in sealed mode sends only the manifest's SHA-256, which the bundle then lists). The kept
replies are aggregated with FedAvg weighted by cohort size, or, in a study with differential
privacy, with the noisy equal-weight mean of :mod:`coordinator.privacy`, in the arithmetic of
:mod:`coordinator.aggregation`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

import numpy as np
from eth_utils.address import to_checksum_address
from flwr.app import Message

from contracts.errors import ChainError
from contracts.events import ContributionRecorded
from contracts.exchange import Exchange
from coordinator.aggregation import delta_norm, fedavg, fedavg_weights
from coordinator.errors import CoordinatorError, StudyAborted
from coordinator.privacy import CLIP_SLACK, private_mean
from coordinator.run_config import FederationConfig
from tasks.errors import ProtocolError
from tasks.protocol import ARRAYS, COMMITMENT, METRICS, Commitment, layout_of, read_timings, unpack_weights


@dataclass(frozen=True)
class Contribution:
    """A node's reply that passed every check."""

    hospital: str
    weights: list[np.ndarray]
    cohort_count: int
    seconds: dict[str, float]
    #: Synthetic records in the cohort as the node reports them (None: the node did not say).
    synthetic_count: int | None = None
    #: The round's cohort manifest as the node sent it (JSON text); None: the reply carried none.
    manifest: str | None = None
    #: The manifest's SHA-256 (lowercase hex) when a node in sealed mode sent only that: the hospital
    #: holds the manifest, the bundle lists it by this hash.
    manifest_sha256: str | None = None


@dataclass(frozen=True)
class RoundOutcome:
    """A round's replies after the checks: the aggregate, who is in it, and why the others are not."""

    weights: list[np.ndarray]
    #: In the order they were aggregated (the order of the sum, docs/formats/lineage-bundle.md).
    accepted: list[Contribution]
    refused: list[str]
    #: Seconds the checks took (reading the chain included), for the study log.
    check_seconds: float
    #: The weight each accepted update had in the aggregate, in the order of ``accepted``.
    update_weights: list[float]
    #: The Gaussian noise added to each layer (float64), under differential privacy; else None.
    noise: list[np.ndarray] | None = None
    #: Under differential privacy, the factor each accepted update's difference was scaled by to lie
    #: within the clipping norm (1.0: it did already), in the order of ``accepted``; else None.
    clip_factors: list[float] | None = None


def combine_round(exchange: Exchange, cfg: FederationConfig, round_: int, sent: list[np.ndarray],
                  replies: list[Message], *, rng: np.random.Generator | None = None) -> RoundOutcome:
    """Check a round's replies against their weights and the chain, then aggregate those accepted.

    Without DP the aggregate is FedAvg, the mean of the accepted models weighted by the cohort
    size each hospital anchored (FedProx changes only the nodes' training, not this mean). With
    DP (``cfg.dp_noise_multiplier > 0``) it is the model sent plus the equal-weight mean of the
    accepted updates plus Gaussian noise of standard deviation ``z * C / m``, ``m`` the number
    accepted, each difference scaled to lie within the clipping norm first.

    Parameters:
        exchange: the deployment whose StudyRegistry holds the round's contributions.
        cfg: the run's settings (study, DP, anchoring, ``min_nodes``).
        round_: the round the replies answer.
        sent: the global model sent to the nodes this round.
        replies: the nodes' replies as Flower delivered them.
        rng: the noise generator of the DP path; None draws a fresh seed from the operating
            system's secure source, as a study must (a fixed generator is for tests only).

    Returns:
        The aggregated weights, the accepted contributions and a reason for each refusal.

    Raises:
        StudyAborted: fewer than ``cfg.min_nodes`` replies passed the checks.
    """
    started = time.monotonic()
    accepted, refused = check_replies(exchange, cfg, round_, sent, replies)
    check_seconds = time.monotonic() - started
    if len(accepted) < max(cfg.min_nodes, 1):  # no aggregate of nothing, whatever min-nodes says
        raise StudyAborted(f"round {round_}: {len(accepted)} of {cfg.min_nodes} required nodes contributed; "
                           f"refusals: {refused}")
    if cfg.dp_noise_multiplier > 0:
        noisy = private_mean(sent, [c.weights for c in accepted], cfg, rng)
        return RoundOutcome(noisy.weights, accepted, refused, check_seconds, noisy.update_weights, noisy.noise,
                            noisy.clip_factors)
    counts = [c.cohort_count for c in accepted]
    weights = fedavg([c.weights for c in accepted], counts)
    return RoundOutcome(weights, accepted, refused, check_seconds, fedavg_weights(counts))


class _Refused(CoordinatorError):
    """A reply fails a check; the message is the reason recorded for the round (it never leaves check_replies)."""


def check_replies(exchange: Exchange, cfg: FederationConfig, round_: int, sent: list[np.ndarray],
           replies: list[Message]) -> tuple[list[Contribution], list[str]]:
    """Keep replies whose update hash matches the weights and the chain; say why others are out.

    With anchoring on, the cohort root, cohort count and update hash a reply claims must equal
    the contribution its hospital anchored for this study and round: root and count are read
    from the contract's storage, the update hash from the contribution's event (the contract
    keeps it nowhere else). With DP on, an update farther than the clipping norm from the model
    sent is refused too. A hospital counts once per round: a second reply naming it is refused.
    """
    accepted: list[Contribution] = []
    refused: list[str] = []
    for reply in replies:
        if reply.has_error():
            refused.append(f"node {reply.metadata.src_node_id}: {reply.error.reason}")
            continue
        try:
            contribution = _checked(exchange, cfg, round_, sent, reply)
            if any(c.hospital == contribution.hospital for c in accepted):
                raise _Refused(f"{contribution.hospital}: a second reply for round {round_}; "
                               "a hospital's update is counted once")
        except _Refused as exc:
            refused.append(str(exc))
            continue
        accepted.append(contribution)
    return accepted, refused


def _checked(exchange: Exchange, cfg: FederationConfig, round_: int, sent: list[np.ndarray],
             reply: Message) -> Contribution:
    """The contribution ``reply`` makes; raises _Refused with the reason if a check fails."""
    from tasks import weights_hash

    try:
        commitment = Commitment.from_config(reply.content.config_records[COMMITMENT])
        hospital = commitment.hospital
        arrays = reply.content.array_records[ARRAYS].to_numpy_ndarrays()
        if commitment.update_hash is None:
            raise ProtocolError("the commitment lacks 'update-hash'")
        claimed = commitment.update_hash
        claimed_root = commitment.cohort_root
        claimed_count = commitment.cohort_count
        seconds = read_timings(reply.content.metric_records[METRICS])
    except (KeyError, ValueError) as exc:
        raise _Refused(f"node {reply.metadata.src_node_id}: malformed reply ({exc!r}); expected the arrays, "
                       "metrics and commitment (hospital, cohort-root, cohort-count, update-hash) a node "
                       "sends") from None
    # A hospital may anchor whatever it likes; a model of another shape must not break the round.
    try:
        weights = unpack_weights(arrays, layout_of(sent))
    except ProtocolError as exc:
        model = [(s.shape, str(s.dtype)) for s in sent]
        raise _Refused(f"{hospital}: returned weights do not fit the model sent {model} ({exc}); a node returns "
                       "the model it was sent, trained") from None
    if "0x" + weights_hash(weights).hex() != claimed:
        raise _Refused(f"{hospital}: returned weights do not hash to its claimed update {claimed}")
    if [(w.shape, w.dtype) for w in weights] != [(s.shape, s.dtype) for s in sent]:
        raise _Refused(f"{hospital}: returned arrays {[(w.shape, str(w.dtype)) for w in weights]} differ from the "
                       f"model sent {[(s.shape, str(s.dtype)) for s in sent]}; a node returns the model it was sent, "
                       "trained")
    if cfg.dp_noise_multiplier > 0:
        norm = delta_norm(sent, weights)
        if norm > cfg.dp_clipping_norm * (1 + CLIP_SLACK):
            raise _Refused(f"{hospital}: update norm {norm:.6g} exceeds the clipping norm {cfg.dp_clipping_norm:g} "
                           f"by more than the {CLIP_SLACK:g} allowed for float32 arithmetic: the node did not clip")
    synthetic, manifest, sealed = commitment.synthetic_count, commitment.manifest, commitment.manifest_sha256
    if manifest is not None and sealed is not None:
        raise _Refused(f"{hospital}: the reply carries both a cohort manifest and a sealed manifest's hash; a node "
                       "sends one or the other")
    if manifest is not None:
        _check_manifest(manifest, cfg.study_id, round_, hospital, claimed_root, claimed_count)
    if sealed is not None and not _SHA256.fullmatch(sealed):
        raise _Refused(f"{hospital}: cohort-manifest-sha256 {sealed[:80]!r} is not 64 lowercase hex digits")
    if not cfg.anchor:
        return Contribution(_address(hospital), weights, claimed_count, seconds, synthetic, manifest, sealed)
    anchored = _anchored(exchange, cfg.study_id, round_, hospital)
    mismatches = [f"{what} {mine} differs from the {theirs} anchored on chain"
                  for what, mine, theirs in (("cohort root", claimed_root, "0x" + anchored.cohort_root.hex()),
                                             ("cohort count", str(claimed_count), str(anchored.cohort_count)),
                                             ("update hash", claimed, "0x" + anchored.update_hash.hex()))
                  if mine.lower() != theirs.lower()]
    if mismatches:
        raise _Refused(f"{hospital}: round {round_} of study {cfg.study_id}: {'; '.join(mismatches)}")
    return Contribution(anchored.hospital, weights, anchored.cohort_count, seconds, synthetic, manifest, sealed)


def _address(hospital: str) -> str:
    """``hospital`` checksummed; raises _Refused if it is not an address."""
    try:
        return str(to_checksum_address(hospital))
    except ValueError:
        raise _Refused(f"{hospital!r}: not a hospital address (0x and 40 hex digits); the reply names no "
                       "hospital whose contribution could be read") from None


_SHA256 = re.compile(r"[0-9a-f]{64}")
#: The format name of a cohort manifest (docs/formats/lineage-bundle.md).
COHORT_MANIFEST_FORMAT = "metai-cohort/1"


def _check_manifest(text: str, study_id: int, round_: int, hospital: str, root: str, count: int) -> None:
    """Raise _Refused unless ``text`` is a cohort manifest of this study, round, hospital, root and count.

    Only what names the contribution is checked here; the members' proofs and enrolments are the
    auditor's to verify (``metai-audit verify``), from the bundle that keeps the manifest as sent.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Refused(f"{hospital}: the cohort manifest is not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != COHORT_MANIFEST_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise _Refused(f"{hospital}: the cohort manifest has format {found!r}, expected {COHORT_MANIFEST_FORMAT!r}")
    members = data.get("members")
    said = {"study_id": data.get("study_id"), "round": data.get("round"),
            "hospital": str(data.get("hospital", "")).lower(), "cohort_root": str(data.get("cohort_root", "")).lower(),
            "members": len(members) if isinstance(members, list) else None}
    expected = {"study_id": study_id, "round": round_, "hospital": hospital.lower(), "cohort_root": root.lower(),
                "members": count}
    wrong = [f"{key} {said[key]!r} (expected {expected[key]!r})" for key in expected if said[key] != expected[key]]
    if wrong:
        raise _Refused(f"{hospital}: the cohort manifest does not describe this contribution: {'; '.join(wrong)}")


def _anchored(exchange: Exchange, study_id: int, round_: int, hospital: str) -> ContributionRecorded:
    """The contribution ``hospital`` anchored for (study, round), as its event records it."""
    address = _address(hospital)
    try:
        stored = exchange.studies.contribution_of(study_id, round_, address)
    except ChainError as exc:  # a root on chain without its event: an endpoint that lost logs
        raise _Refused(f"{address}: {exc}") from None
    if stored is None:
        raise _Refused(f"{address}: no contribution anchored on chain for round {round_} of study {study_id}; "
                       "a node anchors its update before it replies")
    return stored
