"""The coordinator's side of a study: rounds over the Flower grid, checked and anchored.

Each round sends the global model to every connected node, collects the replies, keeps only
those whose update hash matches both the returned weights and the contribution the hospital
anchored on chain (cohort root and count from the registry's storage, the update hash from the
contribution's event, the only place the contract keeps it), aggregates them (FedAvg weighted
by cohort size; FedProx when the nodes are told a proximal term), evaluates the result on
held-out synthetic data, and anchors the round (model hash, contributors, privacy spent). A
node that fails or refuses does not stop the study while at least ``min_nodes`` contribute. At
the end the final model is saved and its hash anchored as the study's completion, and the model
card (coordinator/model_card.py) is written next to it from what the chain then holds.

Differential privacy (a study approved with a privacy budget) is central DP with client-side
clipping: each round asks the nodes to clip their update to ``dp_clipping_norm`` (Flower's
``fixedclipping_mod`` on the node, see node/client_app.py), averages the clipped updates with
equal weights and adds Gaussian noise of standard deviation ``z * C / m`` for ``m`` averaged
updates. Flower's RDP accountant composes one Gaussian release per round (hospital-level
neighbouring, no sampling amplification: every node takes part); each round records the
epsilon it spent, in milli-epsilon rounded up, and the study stops before a round that would
take the total over the budget.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from contracts.events import ContributionRecorded, read_events
from contracts.exchange import Exchange
from contracts.studies import StudyStatus
from coordinator.errors import CoordinatorError, StudyAborted

log = logging.getLogger("metai.coordinator")


@dataclass(frozen=True)
class FederationConfig:
    """The run's tunables (``[tool.flwr.app.config]``)."""

    study_id: int
    task: str
    min_nodes: int
    local_epochs: int
    lr: float
    batch_size: int
    proximal_mu: float
    poll_interval: float
    round_timeout: float
    wait_nodes: float
    round_delay: float
    eval_examples: int
    eval_seed: int
    #: Gaussian noise multiplier z of central DP; 0 turns DP off.
    dp_noise_multiplier: float = 0.0
    #: L2 norm the nodes clip their update to, C.
    dp_clipping_norm: float = 1.0
    #: The delta at which epsilon is accounted.
    dp_delta: float = 1e-5
    #: Anchor on chain (the coordinator's own setting, never the run config); off only to
    #: measure what anchoring costs.
    anchor: bool = True
    #: Virtual patients per cell of the model card's robustness table; 0 takes the evaluation's default.
    robustness_patients: int = 0


@dataclass
class StudyLog:
    """What happened, round by round (written next to the models)."""

    study_id: int
    rounds: list[dict[str, object]] = field(default_factory=list)
    final_model_hash: str = ""
    stopped: str = ""
    privacy: dict[str, object] = field(default_factory=dict)
    task: str = ""
    #: The held-out set each round's model is evaluated on: ``examples`` and ``seed``.
    held_out: dict[str, object] = field(default_factory=dict)


class PrivacyLedger:
    """Epsilon spent by the study's rounds, accounted with Flower's RDP accountant."""

    def __init__(self, cfg: FederationConfig, budget_milli: int, hospitals: int, rounds_done: int) -> None:
        from flwr.serverapp import GaussianPrivacyEvent
        from flwr.supercore.privacy_accounting import NeighboringRelation, PrivacyConfig, SamplingMethod
        from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

        self.budget_milli = budget_milli
        self.accountant = RdpAccountant(PrivacyConfig(
            target_delta=cfg.dp_delta, population_size=hospitals,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION, max_epsilon=budget_milli / 1000))
        self.event = GaussianPrivacyEvent(noise_multiplier=cfg.dp_noise_multiplier, sample_size=hospitals,
                                          population_size=hospitals)
        if rounds_done:  # a resumed study: its earlier rounds were released with the same noise
            self.accountant.compose(self.event, rounds_done)

    def epsilon(self) -> float:
        """Total epsilon spent so far (0 before any round)."""
        if self.accountant.num_releases == 0:
            return 0.0
        return self.accountant.get_epsilon(self.accountant.config.target_delta)

    def next_round_fits(self) -> bool:
        """Whether one more round keeps the total within the budget (as recorded on chain)."""
        if self.accountant.would_exceed(self.event):
            return False
        after = self._projected()
        return math.ceil(after * 1000) <= self.budget_milli

    def _projected(self) -> float:
        from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

        probe = RdpAccountant(self.accountant.config)
        probe.compose(self.event, self.accountant.num_releases + 1)
        return probe.get_epsilon(self.accountant.config.target_delta)

    def spend_round(self, recorded_milli: int) -> tuple[int, float]:
        """Compose one round; return its milli-epsilon (so the chain total covers the total) and the total."""
        self.accountant.compose(self.event)
        total = self.epsilon()
        return max(0, math.ceil(total * 1000) - recorded_milli), total


def run_study(grid: Grid, cfg: FederationConfig, exchange: Exchange, coordinator: LocalAccount,
              model_dir: Path) -> StudyLog:
    """Run every remaining round of ``cfg.study_id`` and complete it."""
    from tasks import evaluate, get_task, get_weights, set_weights, task_code_hash, weights_hash

    study = exchange.studies.study(cfg.study_id)
    if study.status != StudyStatus.RUNNING:
        raise StudyAborted(f"study {cfg.study_id} is {study.status.name}; start it before launching the run")
    if study.task_code_hash != task_code_hash(cfg.task):
        raise StudyAborted(f"task {cfg.task!r} is not the task study {cfg.study_id} was approved for")
    ledger = _privacy_ledger(cfg, study.privacy_budget, len(exchange.studies.hospitals_of(cfg.study_id)),
                             study.rounds_completed)
    task = get_task(cfg.task)
    model = task.build_model()
    weights = get_weights(model)
    eval_inputs, eval_labels = task.synthetic_examples(cfg.eval_examples, cfg.eval_seed)
    out_dir = model_dir / f"study-{cfg.study_id}"
    out_dir.mkdir(parents=True, exist_ok=True)
    record = StudyLog(cfg.study_id, task=cfg.task, held_out={"examples": cfg.eval_examples, "seed": cfg.eval_seed})
    recorded_milli = study.privacy_spent
    node_ids = _wait_for_nodes(grid, cfg.min_nodes, cfg.wait_nodes)
    for round_ in range(study.rounds_completed + 1, study.rounds + 1):
        if ledger is not None and not ledger.next_round_fits():
            record.stopped = (f"privacy budget: round {round_} would take epsilon from {ledger.epsilon():.3f} "
                              f"over the budget of {study.privacy_budget / 1000:g}")
            log.warning("study %s stops before round %s: %s", cfg.study_id, round_, record.stopped)
            break
        if round_ > 1 and cfg.round_delay > 0:
            time.sleep(cfg.round_delay)
        started = time.monotonic()
        node_ids = sorted(set(node_ids) | set(grid.get_node_ids()))
        replies = _send_and_receive(grid, [_train_message(cfg, round_, weights, n) for n in node_ids],
                                    cfg.poll_interval, cfg.round_timeout)
        received = time.monotonic()
        outcome = combine_round(exchange, cfg, round_, weights, replies)
        weights, accepted, refused = outcome.weights, outcome.accepted, outcome.refused
        set_weights(model, weights)
        metrics = evaluate(model, eval_inputs, eval_labels)
        model_hash = weights_hash(weights)
        _save(out_dir / f"round-{round_}.npz", weights)
        aggregated = time.monotonic()
        spent_milli, epsilon = ledger.spend_round(recorded_milli) if ledger is not None else (0, 0.0)
        block = None
        if cfg.anchor:
            tx = exchange.studies.record_round(coordinator, cfg.study_id, round_, model_hash,
                                               [c.hospital for c in accepted], spent_milli)
            block = tx.block_number
        recorded_milli += spent_milli
        ended = time.monotonic()
        record.rounds.append({
            "round": round_, "contributors": [c.hospital for c in accepted],
            "cohort_counts": [c.cohort_count for c in accepted], "refused": refused,
            "synthetic_counts": {c.hospital: c.synthetic_count for c in accepted},
            "model_hash": "0x" + model_hash.hex(), "eval": metrics, "block": block,
            "privacy": {"milli_epsilon": spent_milli, "epsilon_total": epsilon} if ledger is not None else None,
            "seconds": round(ended - started, 4),
            "server_seconds": {"send_receive": round(received - started, 4),
                               "check": round(outcome.check_seconds, 4),
                               "aggregate_evaluate_save": round(aggregated - received - outcome.check_seconds, 4),
                               "record": round(ended - aggregated, 4)},
            "node_seconds": {c.hospital: c.seconds for c in accepted},
        })
        log.info("study %s round %s: %s contributors, eval %s%s", cfg.study_id, round_, len(accepted), metrics,
                 f", epsilon {epsilon:.3f}" if ledger is not None else "")
    if not record.rounds and study.rounds_completed == 0:
        raise StudyAborted(f"study {cfg.study_id}: no round could run ({record.stopped})")
    final_hash = weights_hash(weights)
    _save(out_dir / "final.npz", weights)
    if cfg.anchor:
        exchange.studies.complete(coordinator, cfg.study_id, final_hash)
    record.final_model_hash = "0x" + final_hash.hex()
    if ledger is not None:
        record.privacy = {"epsilon": ledger.epsilon(), "delta": cfg.dp_delta, "milli_epsilon_recorded": recorded_milli,
                          "budget_milli_epsilon": study.privacy_budget, "noise_multiplier": cfg.dp_noise_multiplier,
                          "clipping_norm": cfg.dp_clipping_norm}
    (out_dir / "study.json").write_text(json.dumps(record.__dict__, indent=1, default=str), encoding="utf-8")
    if cfg.anchor:  # without anchoring (a benchmark) there is no chain record for the card to state
        _write_card(exchange, cfg, record, out_dir, weights)
    return record


def _write_card(exchange: Exchange, cfg: FederationConfig, record: StudyLog, out_dir: Path,
                weights: list[np.ndarray]) -> None:
    from coordinator.model_card import write_model_card

    # Robustness patients come from another seed than the held-out set and every hospital's data.
    files = write_model_card(exchange, json.loads(json.dumps(record.__dict__, default=str)), out_dir, weights,
                             robustness_seed=cfg.eval_seed + 1, robustness_patients=cfg.robustness_patients)
    log.info("study %s model card: %s (final held-out accuracy %s)", cfg.study_id, files.markdown,
             files.final_accuracy)


def _privacy_ledger(cfg: FederationConfig, budget_milli: int, hospitals: int, rounds_done: int) -> PrivacyLedger | None:
    """The study's privacy ledger, or None without DP; refuse a run that does not match the study."""
    if budget_milli == 0:
        if cfg.dp_noise_multiplier > 0:
            raise StudyAborted(f"study {cfg.study_id} has no privacy budget on chain, so its rounds cannot record "
                               "the epsilon they spend: launch it with dp-noise-multiplier = 0, or request a study "
                               "with a budget")
        return None
    if cfg.dp_noise_multiplier <= 0:
        raise StudyAborted(f"study {cfg.study_id} was approved with differential privacy (budget epsilon "
                           f"{budget_milli / 1000:g}): launch it with dp-noise-multiplier > 0")
    if cfg.dp_clipping_norm <= 0 or not 0 < cfg.dp_delta < 1:
        raise StudyAborted(f"dp-clipping-norm must be > 0 and dp-delta in (0, 1), got {cfg.dp_clipping_norm} "
                           f"and {cfg.dp_delta}")
    return PrivacyLedger(cfg, budget_milli, hospitals, rounds_done)


def _train_message(cfg: FederationConfig, round_: int, weights: list[np.ndarray], node_id: int) -> Message:
    config = ConfigRecord({
        "study-id": cfg.study_id, "round": round_, "task": cfg.task, "local-epochs": cfg.local_epochs,
        "lr": cfg.lr, "batch-size": cfg.batch_size, "proximal-mu": cfg.proximal_mu,
    })
    if cfg.dp_noise_multiplier > 0:
        config["clipping_norm"] = cfg.dp_clipping_norm  # read by Flower's fixedclipping_mod on the node
    arrays = ArrayRecord({str(i): Array(w) for i, w in enumerate(weights)})
    return Message(content=RecordDict({"arrays": arrays, "config": config}), dst_node_id=node_id,
                   message_type=MessageType.TRAIN, group_id=str(round_))


@dataclass(frozen=True)
class Contribution:
    """A node's reply that passed every check."""

    hospital: str
    weights: list[np.ndarray]
    cohort_count: int
    seconds: dict[str, float]
    #: Synthetic records in the cohort as the node reports them (None: the node did not say).
    synthetic_count: int | None = None


@dataclass(frozen=True)
class RoundOutcome:
    """A round's replies after the checks: the aggregate, who is in it, and why the others are not."""

    weights: list[np.ndarray]
    accepted: list[Contribution]
    refused: list[str]
    #: Seconds the checks took (reading the chain included), for the study log.
    check_seconds: float


def combine_round(exchange: Exchange, cfg: FederationConfig, round_: int, sent: list[np.ndarray],
                  replies: list[Message], *, rng: np.random.Generator | None = None) -> RoundOutcome:
    """Check a round's replies against their weights and the chain, then aggregate those accepted.

    Without DP the aggregate is FedAvg, the mean of the accepted models weighted by the cohort
    size each hospital anchored (FedProx changes only the nodes' training, not this mean). With
    DP (``cfg.dp_noise_multiplier > 0``) it is the model sent plus the equal-weight mean of the
    accepted updates plus Gaussian noise of standard deviation ``z * C / m``, ``m`` the number
    accepted.

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
    accepted, refused = _check(exchange, cfg, round_, sent, replies)
    check_seconds = time.monotonic() - started
    if len(accepted) < cfg.min_nodes:
        raise StudyAborted(f"round {round_}: {len(accepted)} of {cfg.min_nodes} required nodes contributed; "
                           f"refusals: {refused}")
    if cfg.dp_noise_multiplier > 0:
        weights = _private_mean(sent, [c.weights for c in accepted], cfg, rng)
    else:
        weights = _aggregate([c.weights for c in accepted], [c.cohort_count for c in accepted])
    return RoundOutcome(weights, accepted, refused, check_seconds)


class _Refused(CoordinatorError):
    """A reply fails a check; the message is the reason recorded for the round (it never leaves _check)."""


def _check(exchange: Exchange, cfg: FederationConfig, round_: int, sent: list[np.ndarray],
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
        commitment = reply.content.config_records["commitment"]
        hospital = str(commitment["hospital"])
        arrays = reply.content.array_records["arrays"]
        weights = [arrays[k].numpy() for k in sorted(arrays.keys(), key=int)]
        claimed = str(commitment["update-hash"])
        claimed_root = str(commitment["cohort-root"])
        claimed_count = int(str(commitment["cohort-count"]))
        metrics = reply.content.metric_records["metrics"]
    except (KeyError, ValueError) as exc:
        raise _Refused(f"node {reply.metadata.src_node_id}: malformed reply ({exc!r}); expected the arrays, "
                       "metrics and commitment (hospital, cohort-root, cohort-count, update-hash) a node "
                       "sends") from None
    seconds = {k.removesuffix("-seconds"): float(v) for k, v in metrics.items()  # type: ignore[arg-type]
               if k.endswith("-seconds")}
    if "0x" + weights_hash(weights).hex() != claimed:
        raise _Refused(f"{hospital}: returned weights do not hash to its claimed update {claimed}")
    # A hospital may anchor whatever it likes; a model of another shape must not break the round.
    if [(w.shape, w.dtype) for w in weights] != [(s.shape, s.dtype) for s in sent]:
        raise _Refused(f"{hospital}: returned arrays {[(w.shape, str(w.dtype)) for w in weights]} differ from the "
                       f"model sent {[(s.shape, str(s.dtype)) for s in sent]}; a node returns the model it was sent, "
                       "trained")
    if cfg.dp_noise_multiplier > 0:
        norm = math.sqrt(sum(float(np.sum((w.astype(np.float64) - s) ** 2)) for w, s in zip(weights, sent,
                                                                                          strict=True)))
        if norm > cfg.dp_clipping_norm * (1 + 1e-4):
            raise _Refused(f"{hospital}: update norm {norm:.4g} exceeds the clipping norm {cfg.dp_clipping_norm:g}")
    synthetic = int(str(commitment["synthetic-count"])) if "synthetic-count" in commitment else None
    if not cfg.anchor:
        return Contribution(hospital, weights, claimed_count, seconds, synthetic)
    anchored = _anchored(exchange, cfg.study_id, round_, hospital)
    mismatches = [f"{what} {mine} differs from the {theirs} anchored on chain"
                  for what, mine, theirs in (("cohort root", claimed_root, "0x" + anchored.cohort_root.hex()),
                                             ("cohort count", str(claimed_count), str(anchored.cohort_count)),
                                             ("update hash", claimed, "0x" + anchored.update_hash.hex()))
                  if mine.lower() != theirs.lower()]
    if mismatches:
        raise _Refused(f"{hospital}: round {round_} of study {cfg.study_id}: {'; '.join(mismatches)}")
    return Contribution(anchored.hospital, weights, anchored.cohort_count, seconds, synthetic)


def _anchored(exchange: Exchange, study_id: int, round_: int, hospital: str) -> ContributionRecorded:
    """The contribution ``hospital`` anchored for (study, round), as its event records it."""
    try:
        address = to_checksum_address(hospital)
    except ValueError:
        raise _Refused(f"{hospital!r}: not a hospital address (0x and 40 hex digits); the reply names no "
                       "hospital whose contribution could be read") from None
    stored = exchange.studies.contribution_of(study_id, round_, address)
    if stored.cohort_count == 0:
        raise _Refused(f"{address}: no contribution anchored on chain for round {round_} of study {study_id}; "
                       "a node anchors its update before it replies")
    # The contract keeps the update hash only in the event, emitted in the block it stores.
    events = read_events(exchange.chain, [exchange.studies.address], from_block=stored.at_block,
                         to_block=stored.at_block)
    found = [e for e in events if isinstance(e, ContributionRecorded)
             and (e.study_id, e.round, e.hospital) == (study_id, round_, address)]
    if len(found) != 1:
        raise _Refused(f"{address}: {len(found)} ContributionRecorded events for round {round_} of study "
                       f"{study_id} in block {stored.at_block}, where the contract says it was anchored; "
                       "expected exactly one (is the RPC endpoint serving that block's logs?)")
    return found[0]


def _private_mean(sent: list[np.ndarray], updates: list[list[np.ndarray]], cfg: FederationConfig,
                  rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Equal-weight mean of clipped updates plus Gaussian noise of std ``z * C / m``.

    ``rng`` None seeds a generator from the operating system's secure source.
    """
    if rng is None:
        rng = np.random.default_rng(secrets.randbits(128))
    std = cfg.dp_noise_multiplier * cfg.dp_clipping_norm / len(updates)
    out = []
    for i, base in enumerate(sent):
        delta = np.mean([u[i].astype(np.float64) - base for u in updates], axis=0)
        out.append((base + delta + rng.normal(0.0, std, base.shape)).astype(base.dtype))
    return out


def _aggregate(updates: list[list[np.ndarray]], counts: list[int]) -> list[np.ndarray]:
    total = float(sum(counts))
    return [
        np.sum([u[i] * (c / total) for u, c in zip(updates, counts, strict=True)], axis=0).astype(updates[0][i].dtype)
        for i in range(len(updates[0]))
    ]


def _save(path: Path, weights: list[np.ndarray]) -> None:
    from tasks import save_weights

    save_weights(path, weights)


def _wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(node_ids := sorted(grid.get_node_ids())) < count:
        if time.monotonic() > deadline:
            raise StudyAborted(f"only {len(node_ids)} of {count} SuperNodes connected within {timeout} s")
        time.sleep(0.2)
    return node_ids


def _send_and_receive(grid: Grid, messages: list[Message], poll: float, timeout: float) -> list[Message]:
    # Grid.send_and_receive polls every 3 s; a shorter poll takes seconds off every round.
    pending = set(grid.push_messages(messages))
    replies: list[Message] = []
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        got: Iterable[Message] = grid.pull_messages(pending)
        for reply in got:
            replies.append(reply)
            pending.discard(reply.metadata.reply_to_message_id)
        if pending:
            time.sleep(poll)
    return replies
