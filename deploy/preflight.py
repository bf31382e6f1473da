"""What ``python -m deploy`` checks before it starts a federation or a run.

A run that cannot succeed should fail in seconds with the reason, not after the SuperLink,
the SuperNodes and a ServerApp have started (38-56 s on two cores) with a ServerApp traceback.
Everything here is read-only: it unlocks keys to see that the passphrases are right, reads
the chain and hashes the task's code, and starts nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from contracts.endpoint import check_rpc_url
from contracts.errors import ContractRevert, InvalidRpcUrl
from coordinator.core.config import CoordinatorSettings
from coordinator.errors import CoordinatorConfigError
from deploy.errors import DeployError, SettingsError
from deploy.federation import NodeSpec, NodeSpecError
from node.config import MIN_PASSPHRASE, NodeInfo, NodeSettings
from node.errors import KeyStoreError, NodeConfigError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from contracts.exchange import Exchange
    from contracts.studies import StudyRecord

__all__ = ["Coordinator", "PreflightError", "check_coordinator", "check_min_nodes", "check_nodes", "check_study",
           "check_task"]


class PreflightError(DeployError, ValueError):
    """A study, node or setting would make the run fail; the message says which and what to do."""


@dataclass(frozen=True)
class Coordinator:
    """The coordinator as its settings describe it: unlocked key and contracts on its chain."""

    settings: CoordinatorSettings
    account: LocalAccount
    exchange: Exchange


def check_min_nodes(min_nodes: int, nodes: int) -> None:
    """Refuse a run whose ``min-nodes`` exceeds the nodes given: its ServerApp would wait for them, then fail.

    Raises:
        PreflightError: naming both numbers and the two ways out.
    """
    if min_nodes > nodes:
        given = f"{nodes} node is" if nodes == 1 else f"{nodes} nodes are"
        raise PreflightError(
            f"the run config asks for min-nodes={min_nodes} but {given} given, so the run could never start; "
            f"give more --node, or --set min-nodes={nodes}"
        )


def check_coordinator(settings: CoordinatorSettings | None = None) -> Coordinator:
    """Unlock the coordinator's key with its passphrase and reach its chain and contracts.

    Raises:
        SettingsError: a setting is unset or malformed, the key file is missing or unreadable,
            or the passphrase does not unlock it.
        PreflightError: the key does not hold the COORDINATOR role on that chain.
        ChainError: the chain cannot be reached or does not hold the manifest's contracts.
    """
    from eth_account import Account

    from contracts.exchange import Exchange
    from contracts.roles import Role

    settings = settings or CoordinatorSettings()
    try:
        rpc_url, passphrase = settings.require()
        check_rpc_url(rpc_url)
    except InvalidRpcUrl as exc:
        raise SettingsError(f"METAI_COORDINATOR_RPC_URL: {exc}") from None
    except CoordinatorConfigError as exc:
        what = "the chain's JSON-RPC URL" if "RPC_URL" in str(exc) else "the passphrase of the coordinator's keystore"
        raise SettingsError(f"{exc}; set it to {what}") from None
    key_file = settings.key_file
    try:
        keystore = json.loads(key_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"METAI_COORDINATOR_KEY_FILE is {key_file}, which does not exist; point it at the "
                            "coordinator's keystore") from None
    except (OSError, ValueError) as exc:
        raise SettingsError(f"METAI_COORDINATOR_KEY_FILE {key_file} is not a readable keystore ({exc})") from None
    try:
        account: LocalAccount = Account.from_key(Account.decrypt(keystore, passphrase))
    except (ValueError, KeyError, TypeError):
        raise SettingsError(
            f"METAI_COORDINATOR_PASSPHRASE does not unlock the coordinator's key {key_file}; set it to that "
            "keystore's passphrase"
        ) from None
    exchange = Exchange.connect(rpc_url, settings.manifest)
    if not exchange.roles.has(Role.COORDINATOR, account.address):
        raise PreflightError(
            f"the coordinator's key {account.address} does not hold the COORDINATOR role on {rpc_url}; ask the "
            "consortium admin to grant it, or point METAI_COORDINATOR_KEY_FILE at the coordinator's key"
        )
    return Coordinator(settings, account, exchange)


def check_study(exchange: Exchange, study_id: int) -> StudyRecord:
    """Return study ``study_id`` if it exists and is RUNNING.

    Raises:
        PreflightError: no such study, or it is in another state (the message says what to do).
    """
    from contracts.studies import StudyStatus

    try:
        study = exchange.studies.study(study_id)
    except ContractRevert as exc:
        if exc.error != "StudyRegistryUnknownStudy":
            raise
        raise PreflightError(
            f"there is no study {study_id} on the chain at {exchange.chain.rpc_url} "
            f"({exchange.studies.count()} studies there); check --study-id"
        ) from None
    if study.status == StudyStatus.RUNNING:
        return study
    hospitals = len(exchange.studies.hospitals_of(study_id))
    advice = {
        StudyStatus.REQUESTED: f"{study.approvals} of its {hospitals} hospitals approved it; each must approve it "
                               f"(`metai-node approve {study_id}`) and the coordinator then starts it",
        StudyStatus.DECLINED: "a hospital declined it, so it can never run; the researcher may request a new study",
        StudyStatus.COMPLETED: f"it has finished ({study.rounds_completed} rounds); its models are already made",
    }.get(study.status, "only a RUNNING study can be trained")
    raise PreflightError(f"study {study_id} is {study.status.name}, not RUNNING: {advice}")


def _node_passphrase(spec: NodeSpec, settings: NodeSettings) -> str:
    if spec.passphrase_file is None:
        try:
            return settings.require_passphrase()
        except NodeConfigError as exc:
            raise NodeSpecError(f"node {spec.node_dir} has no passphrase file and {exc}") from None
    passphrase = spec.passphrase_file.read_text(encoding="utf-8").strip()
    if len(passphrase) < MIN_PASSPHRASE:
        raise NodeSpecError(
            f"passphrase file {spec.passphrase_file} of node {spec.node_dir} holds fewer than {MIN_PASSPHRASE} "
            "characters; write the node's passphrase there (the one given to `metai-node init`)"
        )
    return passphrase


def check_nodes(nodes: Sequence[NodeSpec], study: StudyRecord | None = None,
                coordinator: Coordinator | None = None) -> None:
    """Check that each node is a hospital node its passphrase unlocks, on the coordinator's chain, in the study.

    The passphrase comes from the node's passphrase file, else ``METAI_NODE_PASSPHRASE`` (what
    its ClientApps will read); the chain URL from ``node.json`` or ``METAI_NODE_RPC_URL``.

    Raises:
        NodeSpecError: no nodes, a directory or passphrase file is missing, a directory is not a
            node, or a passphrase does not unlock its node.
        PreflightError: a node is on another chain than the coordinator, or not named in ``study``.
        ChainError: a node's chain cannot be reached.
    """
    from contracts.studies import Decision
    from node.node import Node

    if not nodes:
        raise NodeSpecError("no hospital nodes given; give each with --node DIR=PASSPHRASE_FILE")
    settings = NodeSettings()
    for spec in nodes:
        spec.check()
        try:
            NodeInfo.load(spec.node_dir)
        except NodeConfigError:
            raise NodeSpecError(
                f"{spec.node_dir} is not a hospital node (no node.json); give a directory `metai-node init` made"
            ) from None
        node = Node(spec.node_dir, _node_passphrase(spec, settings), rpc_url=settings.rpc_url)
        try:
            _ = node.secrets  # the cheap unlock (the key has the same passphrase)
        except KeyStoreError:
            source = spec.passphrase_file or "METAI_NODE_PASSPHRASE"
            raise NodeSpecError(
                f"the passphrase in {source} does not unlock node {spec.node_dir}; give the passphrase "
                "`metai-node init` was given for it"
            ) from None
        if coordinator is None:
            continue
        chain_id = node.exchange.chain.chain_id
        if chain_id != coordinator.exchange.chain.chain_id:
            raise PreflightError(
                f"node {spec.node_dir} is on chain {chain_id} ({node.rpc_url}), the coordinator on chain "
                f"{coordinator.exchange.chain.chain_id}; set the node's METAI_NODE_RPC_URL to the study's chain"
            )
        if study is not None:
            decision = node.exchange.studies.decision_of(study.study_id, node.address)
            if decision != Decision.APPROVED:
                raise PreflightError(
                    f"node {spec.node_dir} (hospital {node.address}) is not a participant of study {study.study_id} "
                    f"(its decision: {decision.name}); run the study with the nodes of the hospitals it names"
                )


def check_task(study: StudyRecord, task: str) -> None:
    """Check that the run config's ``task`` hashes, here, to the task code hash the study was approved for.

    Raises:
        PreflightError: an unknown task, or one whose code differs from the approved code.
    """
    from tasks import task_code_hash
    from tasks.errors import UnknownTaskError

    try:
        local = task_code_hash(task)
    except UnknownTaskError as exc:
        raise PreflightError(f"the run config's task: {exc}") from None
    if local != study.task_code_hash:
        raise PreflightError(
            f"task {task!r} here hashes to 0x{local.hex()}, but study {study.study_id} was approved for "
            f"0x{study.task_code_hash.hex()}: the nodes would refuse every round; run the task code the "
            "hospitals approved (or --set task=... to the study's task)"
        )
